// End-to-end: two broker processes (replicas) on different ports share one
// PostgreSQL database, one master key and one issuer, as behind a load
// balancer. Anything one replica starts, the other can finish: tokens
// verify through either JWKS, an approval asked on one is decided on the
// other, introspection and revocation cross over, a key rotated by the CLI
// reaches both, and the audit chain they write together stays whole.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as jose from 'jose';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const ISSUER = 'https://auth.example.test';
const CIBA = 'urn:openid:params:grant-type:ciba';
const KEY_REFRESH = 2;
let a;
let b;
let agent;
let svc;
let approverKey;

before(async () => {
  a = await Broker.start({
    env: {
      COUNTERSIGN_ISSUER: ISSUER,
      COUNTERSIGN_POLL_INTERVAL: '1',
      COUNTERSIGN_KEY_REFRESH: String(KEY_REFRESH),
      COUNTERSIGN_AUDIT_GAP_GRACE: '1',
    },
  });
  b = await a.sibling();
  a.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  a.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  agent = a.agent('replicated');
  a.cliOk('grant', 'add', 'replicated', 'forum:read', '--audience', AUD);
  a.cliOk('grant', 'add', 'replicated', 'forum:post', '--audience', AUD);
  const s = a.cliOk('service', 'add', 'forum', '--audience', AUD, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
  approverKey = a.cliOk('approver', 'add', 'olga', '--groups', 'ops', '--json').json.api_key;
});

after(async () => {
  // The sibling uses the first broker's master key file: stop it first.
  if (b) await b.stop();
  if (a) await a.stop();
});

const readToken = (br) => br.post('/oauth2/token',
  { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: agent });

async function jwks(br) {
  const r = await br.get('/.well-known/jwks.json');
  assert.equal(r.status, 200);
  return r.json;
}

async function verifyBoth(token) {
  for (const br of [a, b]) {
    const set = jose.createLocalJWKSet(await jwks(br));
    const { payload } = await jose.jwtVerify(token, set, { issuer: ISSUER, audience: AUD, typ: 'at+jwt' });
    assert.equal(payload.client_id, agent.id);
  }
}

test('both replicas issue concurrently; every token verifies through either JWKS', async () => {
  assert.notEqual(a.port, b.port);
  const jobs = [];
  for (let i = 0; i < 60; i++) jobs.push(readToken(i % 2 ? a : b));
  const results = await Promise.all(jobs);
  for (const r of results) assert.equal(r.status, 200, r.text);
  const tokens = results.map((r) => r.json.access_token);
  const jtis = new Set(tokens.map((t) => decodeJwt(t).payload.jti));
  assert.equal(jtis.size, tokens.length, 'jti values are unique across replicas');
  assert.deepEqual((await jwks(a)).keys.map((k) => k.kid).sort(), (await jwks(b)).keys.map((k) => k.kid).sort());
  await verifyBoth(tokens[0]);
  await verifyBoth(tokens[1]);
  const [[n]] = a.sql("SELECT count(*) FROM tokens");
  assert.ok(Number(n) >= 60);
});

test('introspection and revocation work across replicas', async () => {
  const t = (await readToken(a)).json.access_token;
  let r = await b.post('/oauth2/introspect', { token: t }, { auth: svc });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.active, true);
  assert.equal(r.json.iss, ISSUER);
  assert.equal((await b.post('/oauth2/revoke', { token: t }, { auth: agent })).status, 200);
  r = await a.post('/oauth2/introspect', { token: t }, { auth: svc });
  assert.deepEqual(r.json, { active: false });
});

test('an approval asked on one replica is decided on the other and collected on the first, once', async () => {
  const ask = await a.post('/oauth2/bc-authorize',
    { scope: 'forum:post', resource: AUD, binding_message: 'post the weekly summary' }, { auth: agent });
  assert.equal(ask.status, 200, ask.text);
  const id = ask.json.auth_req_id;
  const pending = await a.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: agent });
  assert.equal(pending.json.error, 'authorization_pending');

  const list = await fetch(`${b.url}/v1/approvals`, { headers: { authorization: `Bearer ${approverKey}` } });
  assert.ok((await list.json()).approvals.some((x) => x.id === id), 'the other replica lists the request');
  const ok = await fetch(`${b.url}/v1/approvals/${id}/approve`, {
    method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'approved on replica b' }),
  });
  assert.equal(ok.status, 200, await ok.text());

  await sleep(1100); // the polling interval
  const t = await a.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: agent });
  assert.equal(t.status, 200, t.text);
  const { payload } = decodeJwt(t.json.access_token);
  assert.equal(payload.scope, 'forum:post');
  assert.equal(payload.approval.id, id);
  await verifyBoth(t.json.access_token);
  // The approval is consumed for every replica, not just the one that collected it.
  await sleep(1100);
  const again = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: agent });
  assert.equal(again.status, 400);
  assert.equal(again.json.error, 'invalid_grant');
});

test('a key rotated by the CLI is used and published by both replicas within key_refresh', async () => {
  const before = decodeJwt((await readToken(a)).json.access_token).header.kid;
  const rot = a.cliOk('keys', 'rotate', '--json').json;
  assert.notEqual(rot.kid, before);
  const start = Date.now();
  const seen = new Map();
  while (seen.size < 2 && Date.now() - start < (KEY_REFRESH + 3) * 1000) {
    for (const br of [a, b]) {
      if (seen.has(br)) continue;
      const t = (await readToken(br)).json.access_token;
      if (decodeJwt(t).header.kid === rot.kid) seen.set(br, t);
    }
    await sleep(100);
  }
  assert.equal(seen.size, 2, 'both replicas sign with the rotated key');
  for (const t of seen.values()) await verifyBoth(t);
  for (const br of [a, b]) {
    const kids = (await jwks(br)).keys.map((k) => k.kid);
    assert.ok(kids.includes(rot.kid) && kids.includes(before), `${br.url} publishes the new and previous key`);
  }
});

test('the audit chain both replicas wrote is whole', async () => {
  for (let i = 0; i < 50; i++) {
    const [[unsealed]] = a.sql('SELECT count(*) FROM audit_events e LEFT JOIN audit_chain c ON c.seq = e.seq WHERE c.seq IS NULL');
    if (unsealed === '0') break;
    await sleep(100);
  }
  const r = a.cli('audit', 'verify', '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.ok, true, r.json.problem);
  const [[issued]] = a.sql("SELECT count(*) FROM audit_events WHERE type = 'token.issued'");
  const [[tokens]] = a.sql('SELECT count(*) FROM tokens');
  assert.equal(issued, tokens, 'one token.issued event per token, from either replica');
  const [[links, minSeq, maxSeq]] = a.sql('SELECT count(*), min(seq), max(seq) FROM audit_chain');
  assert.equal(Number(links), Number(maxSeq) - Number(minSeq) + 1, 'no forks or holes in the chain');
});
