// End-to-end: the broker fails closed while PostgreSQL is unreachable and
// recovers by itself when it returns, and refuses to start without a sound
// master key. Uses a private PostgreSQL cluster, since it stops it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Broker, Cluster, BIN, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
let cluster;
let b;
let agent;

before(async () => {
  cluster = await Cluster.private();
  b = await Broker.start({ cluster, env: { COUNTERSIGN_DB_CONNECT_TIMEOUT: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  agent = b.agent('fault-agent');
  b.cliOk('grant', 'add', 'fault-agent', 'forum:read', '--audience', AUD);
});

after(async () => {
  await b.stop();
  cluster.destroy();
});

const cc = { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD };

test('PostgreSQL stopped: 503 with an OAuth body and no token; recovery without restart', async () => {
  let r = await b.post('/oauth2/token', cc, { auth: agent });
  assert.equal(r.status, 200);
  const tokensBefore = Number(b.sql('SELECT count(*) FROM tokens')[0][0]);

  cluster.stop('fast');
  for (let i = 0; i < 6; i++) {
    r = await b.post('/oauth2/token', cc, { auth: agent });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.error, 'temporarily_unavailable');
    assert.equal(r.json.access_token, undefined);
    assert.equal(r.headers.get('retry-after'), '1');
  }
  const ready = await b.get('/readyz');
  assert.equal(ready.status, 503);
  assert.equal(ready.json.database, false);
  // JWKS is still served from memory: verifiers keep working.
  assert.equal((await b.get('/.well-known/jwks.json')).status, 200);

  cluster.start();
  let ok = null;
  for (let i = 0; i < 50 && !ok; i++) {
    r = await b.post('/oauth2/token', cc, { auth: agent });
    if (r.status === 200) ok = r;
    else await sleep(100);
  }
  assert.ok(ok, 'the broker did not recover');
  assert.equal((await b.get('/readyz')).status, 200);
  // Exactly one more token row: nothing was written while the server was down.
  const tokensAfter = Number(b.sql('SELECT count(*) FROM tokens')[0][0]);
  assert.equal(tokensAfter, tokensBefore + 1);
  const jti = decodeJwt(ok.json.access_token).payload.jti;
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE jti = '${jti}' AND type = 'token.issued'`)[0][0], '1');
});

test('the broker starts while PostgreSQL is down and serves once it is up', async () => {
  const c2 = await Cluster.private();
  const db = c2.createDb();
  const b2 = new Broker({});
  try {
    // Set up schema and data, then take the server away before start-up.
    const dir = mkdtempSync(join(tmpdir(), 'cs-broker-'));
    const keyFile = join(dir, 'master.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const { freePort } = await import('./lib.mjs');
    const port = await freePort();
    Object.assign(b2, {
      dir, url: `http://127.0.0.1:${port}`, dbUrl: c2.url(db),
      env: {
        COUNTERSIGN_DATABASE_URL: c2.urlAs(db, 'countersign_broker'),
        COUNTERSIGN_MIGRATE_DATABASE_URL: c2.url(db), COUNTERSIGN_MASTER_KEY_FILE: keyFile,
        COUNTERSIGN_LISTEN: `127.0.0.1:${port}`, COUNTERSIGN_DB_CONNECT_TIMEOUT: '1',
      },
    });
    b2.cliOk('migrate');
    b2.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
    const a = b2.agent('early');
    b2.cliOk('grant', 'add', 'early', 'forum:read', '--audience', AUD);
    c2.stop('fast');
    await b2.spawn();
    assert.equal((await b2.get('/readyz')).status, 503);
    const r = await b2.post('/oauth2/token', cc, { auth: a });
    assert.equal(r.status, 503);
    assert.equal((await b2.get('/.well-known/jwks.json')).status, 503);
    c2.start();
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      ok = (await b2.post('/oauth2/token', cc, { auth: a })).status === 200;
      if (!ok) await sleep(100);
    }
    assert.ok(ok, 'no recovery');
    assert.equal((await b2.get('/readyz')).status, 200);
  } finally {
    await b2.stop();
    c2.destroy();
  }
});

function serveWith(env) {
  return spawnSync(BIN, ['serve'], {
    env: { ...process.env, COUNTERSIGN_DATABASE_URL: b.dbUrl, COUNTERSIGN_LISTEN: '127.0.0.1:1', ...env },
    encoding: 'utf8', timeout: 10000,
  });
}

test('the broker refuses to start without a sound master key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cs-key-'));
  try {
    let r = serveWith({ COUNTERSIGN_MASTER_KEY_FILE: '' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /master key/i);
    r = serveWith({ COUNTERSIGN_MASTER_KEY_FILE: join(dir, 'missing.key') });
    assert.notEqual(r.status, 0);
    const loose = join(dir, 'loose.key');
    writeFileSync(loose, randomBytes(32).toString('base64'));
    chmodSync(loose, 0o644);
    r = serveWith({ COUNTERSIGN_MASTER_KEY_FILE: loose });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /readable by group or others/);
    const short = join(dir, 'short.key');
    writeFileSync(short, randomBytes(16).toString('base64'), { mode: 0o600 });
    r = serveWith({ COUNTERSIGN_MASTER_KEY_FILE: short });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /32/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a broker with the wrong master key cannot use the stored signing key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cs-key-'));
  const other = join(dir, 'other.key');
  writeFileSync(other, randomBytes(32).toString('base64'), { mode: 0o600 });
  const { freePort } = await import('./lib.mjs');
  const port = await freePort();
  const b3 = new Broker({
    dir, url: `http://127.0.0.1:${port}`, dbUrl: b.dbUrl,
    env: { ...b.env, COUNTERSIGN_MASTER_KEY_FILE: other, COUNTERSIGN_LISTEN: `127.0.0.1:${port}` },
  });
  try {
    await b3.spawn();
    assert.equal((await b3.get('/readyz')).status, 503);
    const r = await b3.post('/oauth2/token', cc, { auth: agent });
    // The pepper differs too, so the client cannot even authenticate.
    assert.ok([401, 503].includes(r.status), r.text);
    assert.equal(r.json.access_token, undefined);
    assert.match(b3.logs, /cannot decrypt signing key/);
  } finally {
    await b3.stop();
  }
});

test('configuration errors stop the binary with a clear message', () => {
  for (const [env, re] of [
    [{ COUNTERSIGN_MAX_TTL: 'forever' }, /MAX_TTL/],
    [{ COUNTERSIGN_LISTEN: 'nowhere' }, /LISTEN/],
    [{ COUNTERSIGN_ISSUER: 'ftp://x' }, /issuer/],
    [{ COUNTERSIGN_DEFAULT_TTL: '2h', COUNTERSIGN_MAX_TTL: '1h' }, /default_ttl/],
  ]) {
    const r = serveWith(env);
    assert.equal(r.status, 2, JSON.stringify(env));
    assert.match(r.stderr, re);
  }
});

test('PostgreSQL restarted (immediate) under load: only 503s, no hang, recovery, every token audited', async () => {
  const received = [];
  const statuses = new Map();
  let slowest = 0;
  let running = true;
  const client = async () => {
    while (running) {
      const t0 = Date.now();
      const r = await b.post('/oauth2/token', cc, { auth: agent });
      slowest = Math.max(slowest, Date.now() - t0);
      statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
      if (r.status === 200) received.push(decodeJwt(r.json.access_token).payload.jti);
      else await new Promise((res) => setTimeout(res, 20));
    }
  };
  const clients = Array.from({ length: 6 }, client);
  await sleep(500);
  cluster.stop('immediate');
  await sleep(500);
  cluster.start();
  // Recovery: a fresh request succeeds within 5 s of the server being back.
  const t0 = Date.now();
  let ok = false;
  while (!ok && Date.now() - t0 < 5000) {
    ok = (await b.post('/oauth2/token', cc, { auth: agent })).status === 200;
    if (!ok) await sleep(100);
  }
  await sleep(500);
  running = false;
  await Promise.all(clients);
  assert.ok(ok, 'no recovery within 5 s');
  for (const s of statuses.keys()) assert.ok(s === 200 || s === 503, `status ${s}`);
  assert.ok((statuses.get(503) || 0) > 0, 'the restart was noticed');
  assert.ok(slowest < 6000, `a request took ${slowest} ms`);
  const issued = new Set(b.sql("SELECT jti FROM audit_events WHERE type = 'token.issued'").map((r) => r[0]));
  assert.deepEqual(received.filter((j) => !issued.has(j)), []);
});
