// End-to-end: native HTTPS. A throwaway CA and two server certificates are
// made with openssl at test time; the broker serves the first, curl trusts
// only that CA, and SIGHUP swaps in the second without closing the
// listener, while a broken file at SIGHUP keeps the one being served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, copyFileSync, renameSync, writeFileSync, unlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker, httpsGet, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://files.example';
let dir;
let b;
let agent;
const f = (n) => join(dir, n);

function openssl(...args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

// A P-256 key and a certificate for 127.0.0.1 signed by the test CA.
function serverCert(name, serial) {
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f(`${name}.key`));
  openssl('req', '-new', '-key', f(`${name}.key`), '-subj', '/CN=127.0.0.1', '-out', f(`${name}.csr`));
  writeFileSync(f(`${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n'
    + 'extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n');
  openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-set_serial', serial, '-days', '2', '-sha256', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
}

function curl(...args) {
  return spawnSync('curl', ['-sS', '--max-time', '10', ...args], { encoding: 'utf8' });
}

// Install name's cert and key at the paths the broker was configured with,
// each by rename so the broker never reads a half-written file.
function install(name) {
  copyFileSync(f(`${name}.pem`), f('live.pem.tmp'));
  renameSync(f('live.pem.tmp'), f('live.pem'));
  copyFileSync(f(`${name}.key`), f('live.key.tmp'));
  renameSync(f('live.key.tmp'), f('live.key'));
}

async function servedSerial() {
  const r = await httpsGet(`${b.url}/healthz`, { ca: readFileSync(f('ca.pem')) });
  assert.equal(r.status, 200);
  return r.cert.serialNumber.toUpperCase();
}

async function waitForLog(re, ms = 5000) {
  for (let t = 0; t < ms; t += 50) {
    if (re.test(b.logs)) return;
    await sleep(50);
  }
  assert.fail(`no log line matching ${re}:\n${b.logs.slice(-2000)}`);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-tls-'));
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', f('ca.key'));
  openssl('req', '-new', '-x509', '-key', f('ca.key'), '-subj', '/CN=Countersign test CA',
    '-days', '2', '-sha256', '-out', f('ca.pem'));
  serverCert('one', '0x1001');
  serverCert('two', '0x2002');
  serverCert('three', '0x3003');
  install('one');
  b = await Broker.start({ tls: { cert: f('live.pem'), key: f('live.key'), ca: f('ca.pem') } });
  b.cliOk('scope', 'add', 'files:read', '--kind', 'read');
  agent = b.agent('tls-agent');
  b.cliOk('grant', 'add', 'tls-agent', 'files:read', '--audience', AUD);
});

after(async () => {
  if (b) await b.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('curl trusting the test CA gets a token and the JWKS over HTTPS; the issuer is https', async () => {
  const r = curl('--cacert', f('ca.pem'), '-u', `${agent.id}:${agent.secret}`,
    '-d', 'grant_type=client_credentials', '-d', 'scope=files:read', '--data-urlencode', `resource=${AUD}`,
    `${b.url}/oauth2/token`);
  assert.equal(r.status, 0, r.stderr);
  const tok = JSON.parse(r.stdout);
  assert.ok(tok.access_token, r.stdout);
  const { payload } = decodeJwt(tok.access_token);
  assert.equal(payload.iss, b.url);
  assert.match(payload.iss, /^https:\/\/127\.0\.0\.1:\d+$/);

  const j = curl('--cacert', f('ca.pem'), `${b.url}/.well-known/jwks.json`);
  assert.equal(j.status, 0, j.stderr);
  const jwks = JSON.parse(j.stdout);
  assert.ok(jwks.keys.some((k) => k.kid === decodeJwt(tok.access_token).header.kid));

  const m = curl('--cacert', f('ca.pem'), `${b.url}/.well-known/oauth-authorization-server`);
  assert.equal(JSON.parse(m.stdout).token_endpoint, `${b.url}/oauth2/token`);
});

test('the approver CLI reaches the HTTPS broker when the CA is trusted, and refuses it otherwise', () => {
  const key = b.cliOk('approver', 'add', 'tina', '--groups', 'ops', '--json').json.api_key;
  const trusted = spawnSync(b.proc.spawnfile, ['approvals', 'list', '--json'], {
    env: { ...process.env, ...b.env, COUNTERSIGN_APPROVER_KEY: key, CURL_CA_BUNDLE: f('ca.pem') }, encoding: 'utf8',
  });
  assert.equal(trusted.status, 0, trusted.stderr);
  assert.deepEqual(JSON.parse(trusted.stdout), []);
  const untrusted = spawnSync(b.proc.spawnfile, ['approvals', 'list', '--json'], {
    env: { ...process.env, ...b.env, COUNTERSIGN_APPROVER_KEY: key }, encoding: 'utf8',
  });
  assert.notEqual(untrusted.status, 0);
  assert.ok(!untrusted.stderr.includes(key));
});

test('without the CA curl refuses the certificate, and plain HTTP to the TLS port gets no answer', async () => {
  const r = curl(`${b.url}/healthz`);
  assert.equal(r.status, 60, `curl exit ${r.status}: ${r.stderr}`); // CURLE_PEER_FAILED_VERIFICATION
  const p = curl('-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${b.port}/healthz`);
  assert.notEqual(p.status, 0, 'plain HTTP must fail on the TLS port');
  assert.notEqual(p.stdout, '200');
  // And the broker is still serving HTTPS afterwards.
  assert.equal(await servedSerial(), '1001');
});

test('SIGHUP serves a new certificate without dropping the listener; a broken one keeps the old', async () => {
  assert.equal(await servedSerial(), '1001');
  install('two');
  b.proc.kill('SIGHUP');
  await waitForLog(/"msg":"TLS certificate reloaded"[^\n]*"serial":"2002"/);
  assert.equal(await servedSerial(), '2002');
  assert.equal(b.proc.exitCode, null);

  // The certificate file is missing: an error is logged, 2002 stays.
  unlinkSync(f('live.pem'));
  b.proc.kill('SIGHUP');
  await waitForLog(/"level":"error"[^\n]*"event":"tls.reload_failed"[^\n]*live\.pem/);
  assert.equal(await servedSerial(), '2002');

  // A certificate whose key is another one: refused too.
  const fails = (b.logs.match(/tls\.reload_failed/g) || []).length;
  copyFileSync(f('three.pem'), f('live.pem'));
  copyFileSync(f('one.key'), f('live.key'));
  b.proc.kill('SIGHUP');
  for (let t = 0; t < 100 && (b.logs.match(/tls\.reload_failed/g) || []).length === fails; t++) await sleep(50);
  assert.match(b.logs.split('\n').filter((l) => l.includes('tls.reload_failed')).pop(), /does not match/);
  assert.equal(await servedSerial(), '2002');

  // Garbage in the key file: refused, and nothing of it reaches the log.
  copyFileSync(f('three.key'), f('live.key'));
  writeFileSync(f('live.key'), '-----BEGIN PRIVATE KEY-----\nTUFSS0VSLWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n');
  b.proc.kill('SIGHUP');
  await sleep(300);
  assert.equal(await servedSerial(), '2002');

  // A good pair again is picked up.
  install('three');
  b.proc.kill('SIGHUP');
  await waitForLog(/"msg":"TLS certificate reloaded"[^\n]*"serial":"3003"/);
  assert.equal(await servedSerial(), '3003');

  // No private key text ever reaches the log.
  for (const k of ['one', 'two', 'three']) {
    const body = readFileSync(f(`${k}.key`), 'utf8').split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    assert.ok(!b.logs.includes(body.slice(0, 24)), `key ${k} leaked into the log`);
  }
  assert.ok(!b.logs.includes('TUFSS0VSLWtleS1ieXRlcw'));
});

test('a broker whose key does not match its certificate refuses to start', () => {
  const r = spawnSync(b.proc.spawnfile, ['serve'], {
    env: { ...process.env, ...b.env, COUNTERSIGN_LISTEN: '127.0.0.1:1', COUNTERSIGN_TLS_CERT_FILE: f('one.pem'), COUNTERSIGN_TLS_KEY_FILE: f('two.key') },
    encoding: 'utf8', timeout: 10000,
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /does not match/);
  const half = spawnSync(b.proc.spawnfile, ['serve'], {
    env: { ...process.env, ...b.env, COUNTERSIGN_TLS_KEY_FILE: '' }, encoding: 'utf8', timeout: 10000,
  });
  assert.equal(half.status, 2);
  assert.match(half.stderr, /tls_cert_file and tls_key_file go together/);
});
