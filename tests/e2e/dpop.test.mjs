// End-to-end: DPoP (RFC 9449). A proof on /oauth2/token binds the token to
// the client's key (cnf.jkt, token_type DPoP); write scopes require it by
// default; an approval request made with a key is collected with that key
// only; introspection returns cnf and checks a forwarded proof's ath.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import * as jose from 'jose';
import { Broker, decodeJwt } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
let b;
let agent;
let svc;
let approver;
let key;      // ES256 key pair of the agent
let edKey;    // an Ed25519 key pair
let other;    // another ES256 key pair

const now = () => Math.floor(Date.now() / 1000);
const sha256b64 = (s) => createHash('sha256').update(s).digest('base64url');

// A DPoP proof; every field can be overridden (null: left out) to forge one.
async function proof(kp, opts = {}) {
  const o = { htm: 'POST', htu: `${b.url}/oauth2/token`, iat: now(), jti: randomUUID(), typ: 'dpop+jwt', alg: 'ES256', ...opts };
  const pub = o.jwk ?? await jose.exportJWK(kp.publicKey);
  const payload = { htm: o.htm, htu: o.htu, iat: o.iat, jti: o.jti, ath: o.ath };
  for (const k of Object.keys(payload)) if (payload[k] === undefined || payload[k] === null) delete payload[k];
  const header = { alg: o.alg, typ: o.typ, jwk: pub };
  if (o.typ === null) delete header.typ;
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(o.signer ?? kp.privateKey);
}

const thumb = async (kp) => jose.calculateJwkThumbprint(await jose.exportJWK(kp.publicKey), 'sha256');
const cc = (extra = {}) => ({ grant_type: 'client_credentials', scope: 'forum:read', resource: AUD, ...extra });
const token = (p, form = cc()) => b.post('/oauth2/token', form, { auth: agent, headers: p ? { dpop: p } : {} });

async function refusedProof(p, re, form = cc()) {
  const r = await token(p, form);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error, 'invalid_dpop_proof');
  if (re) assert.match(r.json.error_description, re);
  return r;
}

async function approverCall(method, path, body) {
  const r = await fetch(`${b.url}${path}`, {
    method, headers: { authorization: `Bearer ${approver}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json().catch(() => undefined) };
}

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:secret', '--kind', 'read', '--require-dpop');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write');
  b.cliOk('scope', 'add', 'forum:vote', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('dpop-agent');
  for (const s of ['forum:read', 'forum:secret', 'forum:post', 'forum:vote']) {
    b.cliOk('grant', 'add', 'dpop-agent', s, '--audience', AUD);
  }
  const s = b.cliOk('service', 'add', 'forum', '--audience', AUD, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
  approver = b.cliOk('approver', 'add', 'alice', '--groups', 'mods', '--json').json.api_key;
  key = await jose.generateKeyPair('ES256', { extractable: true });
  edKey = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  other = await jose.generateKeyPair('ES256', { extractable: true });
});

after(async () => {
  await b.stop();
});

test('scope policy: write scopes require DPoP by default, switchable per scope', () => {
  const list = Object.fromEntries(b.cliOk('scope', 'list', '--json').json.map((x) => [x.name, x.require_dpop]));
  assert.deepEqual(list, { 'forum:read': false, 'forum:secret': true, 'forum:post': true, 'forum:vote': false });
  const r = b.cli('scope', 'add', 'x:y', '--kind', 'write', '--require-dpop', '--no-require-dpop');
  assert.notEqual(r.code, 0);
});

test('a proof binds the token: token_type DPoP and cnf.jkt is the RFC 7638 thumbprint', async () => {
  const r = await token(await proof(key));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.token_type, 'DPoP');
  const { payload } = decodeJwt(r.json.access_token);
  assert.deepEqual(payload.cnf, { jkt: await thumb(key) });
  // Introspection tells the service it must demand a proof by that key.
  const i = await b.post('/oauth2/introspect', { token: r.json.access_token }, { auth: svc });
  assert.equal(i.json.active, true);
  assert.equal(i.json.token_type, 'DPoP');
  assert.deepEqual(i.json.cnf, { jkt: await thumb(key) });
});

test('an Ed25519 proof works too, and a query in htu is ignored', async () => {
  const r = await token(await proof(edKey, { alg: 'EdDSA', htu: `${b.url}/oauth2/token?x=1#f` }));
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(decodeJwt(r.json.access_token).payload.cnf, { jkt: await thumb(edKey) });
});

test('without a proof a read token stays a bearer token without cnf', async () => {
  const r = await token(undefined);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(decodeJwt(r.json.access_token).payload.cnf, undefined);
  const i = await b.post('/oauth2/introspect', { token: r.json.access_token }, { auth: svc });
  assert.equal(i.json.token_type, 'Bearer');
  assert.equal(i.json.cnf, undefined);
});

test('a scope that requires DPoP is refused without a proof', async () => {
  await refusedProof(undefined, /requires a DPoP proof/, cc({ scope: 'forum:secret' }));
  const r = await token(await proof(key), cc({ scope: 'forum:secret' }));
  assert.equal(r.status, 200, r.text);
  // A write scope on client_credentials is still invalid_scope (step-up).
  const w = await token(undefined, cc({ scope: 'forum:post' }));
  assert.equal(w.json.error, 'invalid_scope');
});

test('a replayed proof is refused', async () => {
  const p = await proof(key);
  assert.equal((await token(p)).status, 200);
  await refusedProof(p, /jti already used/);
});

test('wrong htm, wrong htu and stale or future iat are refused', async () => {
  await refusedProof(await proof(key, { htm: 'GET' }), /htm/);
  await refusedProof(await proof(key, { htu: `${b.url}/oauth2/introspect` }), /htu/);
  await refusedProof(await proof(key, { htu: 'https://evil.example/oauth2/token' }), /htu/);
  await refusedProof(await proof(key, { iat: now() - 300 }), /iat/);
  await refusedProof(await proof(key, { iat: now() + 300 }), /iat/);
  await refusedProof(await proof(key, { iat: null }), /iat/);
  await refusedProof(await proof(key, { jti: null }), /jti/);
});

test('a private key in jwk, a wrong typ, a symmetric alg and a foreign signature are refused', async () => {
  await refusedProof(await proof(key, { jwk: await jose.exportJWK(key.privateKey) }), /public key/);
  await refusedProof(await proof(key, { typ: 'JWT' }), /typ/);
  await refusedProof(await proof(key, { typ: null }), /typ/);
  await refusedProof(await proof(key, { alg: 'HS256', signer: new Uint8Array(32) }), /alg/);
  // Signed by another key than the one in the header.
  await refusedProof(await proof(key, { signer: other.privateKey }), /signature/);
  // An EdDSA header on an EC key.
  await refusedProof(await proof(key, { alg: 'EdDSA', signer: edKey.privateKey }), /signature|header/);
  await refusedProof('not-a-jwt', /compact JWS/);
});

test('two DPoP headers are refused', async () => {
  const p1 = await proof(key);
  const p2 = await proof(key);
  const body = new URLSearchParams(cc()).toString();
  const r = await new Promise((resolve, reject) => {
    const rq = httpRequest(`${b.url}/oauth2/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: 'Basic ' + Buffer.from(`${agent.id}:${agent.secret}`).toString('base64'),
        DPoP: [p1, p2],
      },
    }, (res) => {
      let t = '';
      res.on('data', (d) => { t += d; });
      res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(t) }));
    });
    rq.on('error', reject);
    rq.end(body);
  });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_dpop_proof');
});

test('a write scope needs a proof at bc-authorize, and the approval is collected only with that key', async () => {
  const ask = (headers = {}) => b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'post the release notes',
  }, { auth: agent, headers });
  const none = await ask();
  assert.equal(none.status, 400);
  assert.equal(none.json.error, 'invalid_dpop_proof');
  // A proof made for the token endpoint is not valid at bc-authorize.
  const wrongHtu = await ask({ dpop: await proof(key) });
  assert.equal(wrongHtu.json.error, 'invalid_dpop_proof');

  const r = await ask({ dpop: await proof(key, { htu: `${b.url}/oauth2/bc-authorize` }) });
  assert.equal(r.status, 200, r.text);
  const id = r.json.auth_req_id;
  assert.equal(b.sql(`SELECT dpop_jkt FROM approval_requests WHERE id = '${id}'`)[0][0], await thumb(key));
  const a = await approverCall('POST', `/v1/approvals/${id}/approve`, {});
  assert.equal(a.status, 200, JSON.stringify(a.json));

  const collect = (headers = {}) => b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: agent, headers });
  let c = await collect();
  assert.equal(c.status, 400);
  assert.equal(c.json.error, 'invalid_dpop_proof');
  c = await collect({ dpop: await proof(other) });
  assert.equal(c.status, 400);
  assert.equal(c.json.error, 'invalid_grant');
  // Neither refusal consumed the approval.
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'approved');
  c = await collect({ dpop: await proof(key) });
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.token_type, 'DPoP');
  const { payload } = decodeJwt(c.json.access_token);
  assert.equal(payload.scope, 'forum:post');
  assert.deepEqual(payload.cnf, { jkt: await thumb(key) });
});

test('a write scope switched off with --no-require-dpop works without proofs', async () => {
  const r = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:vote', resource: AUD, binding_message: 'vote on the poll',
  }, { auth: agent });
  assert.equal(r.status, 200, r.text);
  const a = await approverCall('POST', `/v1/approvals/${r.json.auth_req_id}/approve`, {});
  assert.equal(a.status, 200);
  const c = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: r.json.auth_req_id }, { auth: agent });
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.token_type, 'Bearer');
});

test('introspection checks a forwarded proof: ath, key and replay', async () => {
  const t = (await token(await proof(key))).json.access_token;
  const RS = 'https://forum.example/api/posts';
  const intro = async (p, extra = {}) => (await b.post('/oauth2/introspect',
    { token: t, dpop_proof: p, htm: 'POST', htu: RS, ...extra }, { auth: svc })).json;
  const good = await proof(key, { htu: RS, ath: sha256b64(t) });
  assert.equal((await intro(good)).active, true);
  // The same proof again is a replay.
  assert.equal((await intro(good)).active, false);
  // ath of another token.
  assert.equal((await intro(await proof(key, { htu: RS, ath: sha256b64(t + 'x') }))).active, false);
  assert.equal((await intro(await proof(key, { htu: RS }))).active, false);
  // The right ath, signed by another key than cnf.jkt.
  assert.equal((await intro(await proof(other, { htu: RS, ath: sha256b64(t) }))).active, false);
  // Wrong htu for the service's request.
  assert.equal((await intro(await proof(key, { htu: 'https://forum.example/other', ath: sha256b64(t) }))).active, false);
  const refused = b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.dpop_refused' AND jti = '${decodeJwt(t).payload.jti}'`)[0][0];
  assert.equal(refused, '5');
  // A proof never reaches the audit log.
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE details::text LIKE '%${good.split('.')[2]}%'`)[0][0], '0');
});

test('a refused forwarded proof does not spend a use of a single-use write token', async () => {
  // A copy of a bound token without the key must not be enough to burn
  // it: the proof is checked before the use is counted.
  const r = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'post once',
  }, { auth: agent, headers: { dpop: await proof(key, { htu: `${b.url}/oauth2/bc-authorize` }) } });
  assert.equal(r.status, 200, r.text);
  const a = await approverCall('POST', `/v1/approvals/${r.json.auth_req_id}/approve`, {});
  assert.equal(a.status, 200, JSON.stringify(a.json));
  const c = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: r.json.auth_req_id },
    { auth: agent, headers: { dpop: await proof(key) } });
  assert.equal(c.status, 200, c.text);
  const t = c.json.access_token;
  const { jti } = decodeJwt(t).payload;
  const RS = 'https://forum.example/api/posts';
  const intro = async (p, extra = {}) => (await b.post('/oauth2/introspect',
    { token: t, dpop_proof: p, htm: 'POST', htu: RS, ...extra }, { auth: svc })).json;

  // Signed by another key, then no htu: refused, and the use is not counted.
  assert.deepEqual(await intro(await proof(other, { htu: RS, ath: sha256b64(t) })), { active: false });
  assert.deepEqual(await intro(await proof(key, { htu: RS, ath: sha256b64(t) }), { htu: undefined }), { active: false });
  assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0], '0');
  // The right proof still gets the one use.
  const ok = await intro(await proof(key, { htu: RS, ath: sha256b64(t) }));
  assert.equal(ok.active, true, JSON.stringify(ok));
  assert.equal(ok.uses_left, 0);
  // And then it is spent, proof or not.
  assert.deepEqual(await intro(await proof(key, { htu: RS, ath: sha256b64(t) })), { active: false });

  const rows = b.sql(`SELECT details->>'result', details->>'active', coalesce(details->>'reason', ''), subject
    FROM audit_events WHERE type = 'token.used' AND jti = '${jti}' ORDER BY seq`);
  assert.deepEqual(rows.map((x) => x.slice(0, 2)), [
    ['dpop_refused', 'false'], ['dpop_refused', 'false'], ['active', 'true'], ['used_up', 'false']]);
  assert.match(rows[0][2], /cnf\.jkt/);
  assert.match(rows[1][2], /htm and htu are required/);
  assert.equal(rows[0][3], 'agent:dpop-agent');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.dpop_refused' AND jti = '${jti}'`)[0][0], '2');
});

test('discovery advertises DPoP algorithms', async () => {
  const m = (await b.get('/.well-known/oauth-authorization-server')).json;
  assert.deepEqual(m.dpop_signing_alg_values_supported, ['ES256', 'EdDSA']);
});

test('a read scope switched to require DPoP refuses bearer tokens at once, whatever a cache remembers', async () => {
  // A long cache: the broker's quick pre-check keeps saying "no proof
  // needed"; the statement that inserts the token must refuse regardless.
  const c = await Broker.start({ env: { COUNTERSIGN_CACHE_TTL_MS: '60000' } });
  try {
    c.cliOk('scope', 'add', 'flip:read', '--kind', 'read');
    const a = c.agent('flipper');
    c.cliOk('grant', 'add', 'flipper', 'flip:read', '--audience', AUD);
    const form = { grant_type: 'client_credentials', scope: 'flip:read', resource: AUD };
    const first = await c.post('/oauth2/token', form, { auth: a });
    assert.equal(first.status, 200, first.text);
    c.sql("UPDATE scopes SET require_dpop = true WHERE name = 'flip:read'");
    const before = c.sql('SELECT count(*) FROM tokens')[0][0];
    const bearer = await c.post('/oauth2/token', form, { auth: a });
    assert.equal(bearer.status, 400, bearer.text);
    assert.equal(bearer.json.error, 'invalid_dpop_proof', bearer.text);
    assert.ok(Number(c.sql("SELECT count(*) FROM audit_events WHERE type = 'token.denied' " +
      "AND details->>'reason' = 'dpop_required'")[0][0]) >= 1);
    assert.equal(c.sql('SELECT count(*) FROM tokens')[0][0], before, 'no token row for the refused request');
    // With a proof the same request succeeds, bound to the key.
    const kp = await jose.generateKeyPair('ES256', { extractable: true });
    const p = await new jose.CompactSign(new TextEncoder().encode(JSON.stringify({
      htm: 'POST', htu: `${c.url}/oauth2/token`, iat: now(), jti: randomUUID(),
    }))).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await jose.exportJWK(kp.publicKey) })
      .sign(kp.privateKey);
    const bound = await c.post('/oauth2/token', form, { auth: a, headers: { dpop: p } });
    assert.equal(bound.status, 200, bound.text);
    assert.equal(bound.json.token_type, 'DPoP');
    assert.equal(decodeJwt(bound.json.access_token).payload.cnf.jkt, await thumb(kp));
  } finally {
    await c.stop();
  }
});
