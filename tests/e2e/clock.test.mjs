// End-to-end: clock skew between the broker and everyone else. The broker
// runs under libfaketime, ahead of or behind PostgreSQL and the verifiers
// (the CLI's `token verify`, the verify library on the true clock), and
// the behaviour documented in docs/threat-model.md (row 45) holds:
//
// - a token's iat and exp come from the broker's clock (exp = iat + ttl),
//   so its lifetime is never longer than its TTL whatever the skew;
// - verifiers accept it only within their leeway (30 s) on their own clock:
//   a broker ahead beyond the leeway makes tokens "not yet valid", a broker
//   behind makes them expire early; both fail closed;
// - step-up requests expire by PostgreSQL's clock alone;
// - /readyz reports the broker's skew against PostgreSQL, and the broker
//   warns in its log beyond 30 s (the verifiers' default leeway).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Broker, BIN, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
const FAKETIME_LIBS = [
  '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1',
  '/usr/lib/faketime/libfaketimeMT.so.1',
  '/usr/local/lib/faketime/libfaketimeMT.so.1',
];
const LIB = FAKETIME_LIBS.find((p) => existsSync(p));
const brokers = [];

after(async () => {
  for (const b of brokers) await b.stop();
});

// A broker whose clock is off by offset (libfaketime syntax: "+10m",
// "-10m", "+20s"). Only the daemon is skewed; CLI calls keep the true clock.
async function skewed(offset, env = {}) {
  assert.ok(LIB, 'libfaketime is missing: install the faketime package (deploy/deps.sh test)');
  const b = await Broker.start({
    env: {
      COUNTERSIGN_DEFAULT_TTL: '5m',
      COUNTERSIGN_MAX_TTL: '10m',
      COUNTERSIGN_POLL_INTERVAL: '1',
      ...env,
    },
    serveEnv: {
      LD_PRELOAD: LIB,
      FAKETIME: offset,
      // Only the wall clock is off: rate limits and timeouts use the
      // monotonic clock, which a clock step does not move either.
      DONT_FAKE_MONOTONIC: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
      // Under the sanitizer build, libfaketime is preloaded before ASan.
      ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'verify_asan_link_order=0'].filter(Boolean).join(':'),
    },
  });
  brokers.push(b);
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--approver-group', 'mods', '--no-require-dpop');
  const agent = b.agent('skewed-agent');
  b.cliOk('grant', 'add', 'skewed-agent', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'skewed-agent', 'forum:post', '--audience', AUD);
  const approver = b.cliOk('approver', 'add', 'mia', '--groups', 'mods', '--json').json.api_key;
  const svc = b.cliOk('service', 'add', 'forum', '--audience', AUD, '--json').json;
  return { b, agent, approver, svc: { id: svc.client_id, secret: svc.client_secret } };
}

// The verify library on the true clock (default leeway 30 s).
function verify(b, token) {
  const r = spawnSync(BIN, ['token', 'verify', '--jwks', `${b.url}/.well-known/jwks.json`,
    '--audience', AUD, '--', token], { env: { ...process.env, ...b.env }, encoding: 'utf8' });
  return r.status === 0 ? 'ok' : r.stdout.trim();
}

const now = () => Math.floor(Date.now() / 1000);

// GET /readyz's clock_skew_ms; the probe is also what logs the warning.
async function skewMs(b) {
  const r = await b.get('/readyz');
  assert.equal(r.status, 200, 'skew is reported, not a reason to leave the pool');
  return r.json.clock_skew_ms;
}
const WARNING = /this host's clock is \d+ ms (ahead of|behind) PostgreSQL's/;
const cc = { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD };

function rowLifetime(b, jti) {
  return Number(b.sql(`SELECT extract(epoch FROM expires_at - issued_at)::int FROM tokens WHERE jti = '${jti}'`)[0][0]);
}

test('the tokens of a broker 10 min ahead carry its clock, last their TTL, and are not yet valid for verifiers', async () => {
  const { b, agent, svc } = await skewed('+10m');
  const t0 = now();
  const r = await b.post('/oauth2/token', { ...cc, requested_ttl: '120' }, { auth: agent });
  assert.equal(r.status, 200, r.text);
  const { payload } = decodeJwt(r.json.access_token);
  // iat is the broker's clock, 600 s ahead of ours (a few seconds of slack
  // for the run itself), and the lifetime is exactly the TTL asked for.
  assert.ok(Math.abs(payload.iat - (t0 + 600)) <= 5, `iat ${payload.iat - t0} s from now`);
  assert.equal(payload.exp - payload.iat, 120);
  assert.equal(r.json.expires_in, 120);
  assert.equal(rowLifetime(b, payload.jti), 120);
  // A verifier on the true clock refuses it: iat is beyond its leeway.
  assert.equal(verify(b, r.json.access_token), 'invalid: not_yet_valid');
  // Introspection judges iat and exp by the clock that set them.
  const i = await b.post('/oauth2/introspect', { token: r.json.access_token }, { auth: svc });
  assert.equal(i.status, 200);
  assert.equal(i.json.active, true);
  assert.equal(i.json.exp - i.json.iat, 120);
  // No lifetime beyond max_ttl (10 min) is granted, skew or not.
  const big = await b.post('/oauth2/token', { ...cc, requested_ttl: '86400' }, { auth: agent });
  assert.equal(big.status, 200, big.text);
  const p2 = decodeJwt(big.json.access_token).payload;
  assert.ok(p2.exp - p2.iat <= 600, `lifetime ${p2.exp - p2.iat}`);
  // The broker measures and reports its skew, and warns once.
  const skew = await skewMs(b);
  assert.ok(Math.abs(skew - 600000) < 5000, `clock_skew_ms ${skew}`);
  await skewMs(b);
  assert.match(b.logs, WARNING);
  assert.equal(b.logs.match(new RegExp(WARNING, 'g')).length, 1, 'one warning, not one per probe');
  assert.match(b.logs.match(WARNING)[0], /ahead of/);
});

test('within the verifiers\' leeway (broker 20 s ahead) tokens verify', async () => {
  const { b, agent } = await skewed('+20s');
  const r = await b.post('/oauth2/token', cc, { auth: agent });
  assert.equal(r.status, 200, r.text);
  const { payload } = decodeJwt(r.json.access_token);
  assert.ok(payload.iat > now() + 10, 'the broker is ahead');
  assert.equal(verify(b, r.json.access_token), 'ok');
  const skew = await skewMs(b);
  assert.ok(Math.abs(skew - 20000) < 5000, `clock_skew_ms ${skew}`);
  assert.doesNotMatch(b.logs, WARNING);
});

test('the tokens of a broker 10 min behind are expired for verifiers and for its own introspection', async () => {
  const { b, agent, svc } = await skewed('-10m');
  const r = await b.post('/oauth2/token', cc, { auth: agent });
  assert.equal(r.status, 200, r.text);
  const { payload } = decodeJwt(r.json.access_token);
  assert.ok(payload.exp < now(), 'exp (broker clock + 5 min) is already past on the true clock');
  assert.equal(payload.exp - payload.iat, 300);
  assert.equal(verify(b, r.json.access_token), 'invalid: expired');
  // The broker's own signature check passes on its clock, but the token
  // row's expiry is judged by PostgreSQL's now(): not active, no use.
  const i = await b.post('/oauth2/introspect', { token: r.json.access_token }, { auth: svc });
  assert.equal(i.status, 200);
  assert.equal(i.json.active, false);
  const [[uses]] = b.sql(`SELECT use_count FROM tokens WHERE jti = '${payload.jti}'`);
  assert.equal(Number(uses), 0);
  const skew = await skewMs(b);
  assert.ok(Math.abs(skew + 600000) < 5000, `clock_skew_ms ${skew}`);
  assert.match(b.logs.match(WARNING)?.[0] ?? '', /behind/);
});

async function stepUp(s, expiry) {
  const r = await s.b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'post once', requested_expiry: String(expiry),
  }, { auth: s.agent });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

async function decide(s, id) {
  const r = await fetch(`${s.b.url}/v1/approvals/${id}/approve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.approver}`, 'content-type': 'application/json' },
    body: '{}',
  });
  return r.status;
}

const collect = (s, id) => s.b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: s.agent });

test('a broker 10 min ahead does not expire step-up requests early: their clock is PostgreSQL\'s', async () => {
  const s = await skewed('+10m');
  const req = await stepUp(s, 60);
  // Judged by the broker's clock, a 60 s request would be 9 min overdue.
  assert.ok(req.expires_in >= 58 && req.expires_in <= 60, String(req.expires_in));
  assert.equal(await decide(s, req.auth_req_id), 200);
  const t = await collect(s, req.auth_req_id);
  assert.equal(t.status, 200, t.text);
  const { payload } = decodeJwt(t.json.access_token);
  assert.ok(payload.exp - payload.iat <= 600);
  assert.equal(payload.scope, 'forum:post');
});

test('a broker 10 min behind does not keep step-up requests alive late', async () => {
  const s = await skewed('-10m');
  const req = await stepUp(s, 2);
  assert.ok(req.expires_in >= 1 && req.expires_in <= 2, String(req.expires_in));
  await sleep(2500);
  // Judged by the broker's clock, the request would have 10 min to live.
  const t = await collect(s, req.auth_req_id);
  assert.equal(t.status, 400);
  assert.equal(t.json.error, 'expired_token');
  assert.equal(await decide(s, req.auth_req_id), 409);
  const [[state]] = s.b.sql(`SELECT state FROM approval_requests WHERE id = '${req.auth_req_id}'`);
  assert.equal(state, 'expired');
});
