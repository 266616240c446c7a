// End-to-end: the read path of POST /oauth2/token against the real daemon
// and PostgreSQL, with the audit rows each request must leave.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as jose from 'jose';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
let b;
let agent;

before(async () => {
  b = await Broker.start();
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:search', '--kind', 'read', '--max-ttl', '90s');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write');
  agent = b.agent('reader', '--owner', 'alice@example.com');
  b.cliOk('grant', 'add', 'reader', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'reader', 'forum:search', '--audience', AUD);
  b.cliOk('grant', 'add', 'reader', 'forum:post', '--audience', AUD);
});

after(async () => {
  await b.stop();
});

const cc = (extra = {}) => ({ grant_type: 'client_credentials', scope: 'forum:read', resource: AUD, ...extra });

function issuedRows(jti) {
  return b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.issued' AND jti = '${jti}'`)[0][0];
}

test('a granted read scope yields an RFC 6749 token response', async () => {
  const r = await b.post('/oauth2/token', cc(), { auth: agent });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.expires_in, 300);
  assert.equal(r.json.scope, 'forum:read');
  assert.equal(typeof r.json.access_token, 'string');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.headers.get('pragma'), 'no-cache');
});

test('the token carries the RFC 9068 header and claims', async () => {
  const r = await b.post('/oauth2/token', cc(), { auth: agent });
  const { header, payload } = decodeJwt(r.json.access_token);
  assert.deepEqual(Object.keys(header).sort(), ['alg', 'kid', 'typ']);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.typ, 'at+jwt');
  const jwks = (await b.get('/.well-known/jwks.json')).json;
  assert.equal(jwks.keys.length, 1);
  assert.equal(header.kid, jwks.keys[0].kid);
  assert.equal(payload.iss, b.url);
  assert.equal(payload.sub, 'reader');
  assert.equal(payload.client_id, 'reader');
  assert.equal(payload.aud, AUD);
  assert.equal(payload.scope, 'forum:read');
  assert.equal(payload.exp - payload.iat, 300);
  assert.equal(payload.nbf, payload.iat);
  assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 5);
  assert.match(payload.jti, /^[A-Za-z0-9_-]{22}$/);
  // The RFC 7638 thumbprint of the published key is its kid.
  assert.equal(await jose.calculateJwkThumbprint(jwks.keys[0], 'sha256'), header.kid);
});

test('npm jose verifies the token through the live JWKS endpoint', async () => {
  const r = await b.post('/oauth2/token', cc(), { auth: agent });
  const JWKS = jose.createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`));
  const { payload, protectedHeader } = await jose.jwtVerify(r.json.access_token, JWKS, {
    issuer: b.url, audience: AUD, typ: 'at+jwt', algorithms: ['ES256'],
  });
  assert.equal(payload.sub, 'reader');
  assert.equal(protectedHeader.typ, 'at+jwt');
  // And rejects the same token with one claim changed.
  const [h, p, s] = r.json.access_token.split('.');
  const forged = JSON.parse(Buffer.from(p, 'base64url').toString());
  forged.scope = 'forum:post';
  const tampered = `${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`;
  await assert.rejects(jose.jwtVerify(tampered, JWKS, { issuer: b.url, audience: AUD }),
    { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
  await assert.rejects(jose.jwtVerify(r.json.access_token, JWKS, { issuer: b.url, audience: 'https://other.example' }),
    { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
});

test('every issued token has exactly one token.issued audit row and one tokens row', async () => {
  const jtis = [];
  for (let i = 0; i < 5; i++) {
    const r = await b.post('/oauth2/token', cc(), { auth: i % 2 ? agent : { ...agent, method: 'post' } });
    assert.equal(r.status, 200);
    jtis.push(decodeJwt(r.json.access_token).payload.jti);
  }
  for (const jti of jtis) {
    assert.equal(issuedRows(jti), '1');
    assert.equal(b.sql(`SELECT count(*) FROM tokens WHERE jti = '${jti}'`)[0][0], '1');
  }
  // Globally: as many issued events as token rows, and each jti once.
  const [[events, distinct, rows]] = b.sql(`SELECT
      (SELECT count(*) FROM audit_events WHERE type = 'token.issued'),
      (SELECT count(DISTINCT jti) FROM audit_events WHERE type = 'token.issued'),
      (SELECT count(*) FROM tokens)`);
  assert.equal(events, rows);
  assert.equal(distinct, rows);
  const [[details]] = b.sql(`SELECT details::text FROM audit_events WHERE jti = '${jtis[0]}'`);
  const d = JSON.parse(details);
  assert.equal(d.scope, 'forum:read');
  assert.equal(d.audience, AUD);
  assert.equal(d.ttl, 300);
});

test('client_secret_post authenticates too', async () => {
  const r = await b.post('/oauth2/token', cc(), { auth: { ...agent, method: 'post' } });
  assert.equal(r.status, 200, r.text);
});

test('a write scope is refused with invalid_scope pointing at step-up, and nothing is minted', async () => {
  const before = b.sql('SELECT count(*) FROM tokens')[0][0];
  for (const scope of ['forum:post', 'forum:read forum:post']) {
    const r = await b.post('/oauth2/token', cc({ scope }), { auth: agent });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_scope');
    assert.match(r.json.error_description, /forum:post/);
    assert.match(r.json.error_description, /approv/);
    assert.match(r.json.error_description, /bc-authorize/);
    assert.equal(r.json.access_token, undefined);
  }
  assert.equal(b.sql('SELECT count(*) FROM tokens')[0][0], before);
  const rows = b.sql(`SELECT details->>'reason', details->>'scope' FROM audit_events
                      WHERE type = 'token.denied' AND details->>'scope' = 'forum:post'`);
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], ['write_scope_needs_approval', 'forum:post']);
});

test('an unknown scope is refused (never treated as read)', async () => {
  const r = await b.post('/oauth2/token', cc({ scope: 'forum:admin' }), { auth: agent });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.match(r.json.error_description, /forum:admin/);
  const [[reason]] = b.sql(`SELECT details->>'reason' FROM audit_events
                            WHERE type = 'token.denied' AND details->>'scope' = 'forum:admin'`);
  assert.equal(reason, 'unknown_scope');
});

test('a read scope granted for another audience, or not granted, is refused', async () => {
  b.cliOk('scope', 'add', 'wiki:read', '--kind', 'read');
  let r = await b.post('/oauth2/token', cc({ scope: 'wiki:read' }), { auth: agent });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.match(r.json.error_description, /wiki:read/);
  r = await b.post('/oauth2/token', cc({ resource: 'https://wiki.example' }), { auth: agent });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.denied'
                      AND details->>'reason' = 'not_granted'`)[0][0], '2');
});

test('the lifetime is min(requested, grant max, scope max, global max)', async () => {
  let r = await b.post('/oauth2/token', cc({ requested_ttl: '60' }), { auth: agent });
  assert.equal(r.json.expires_in, 60);
  let p = decodeJwt(r.json.access_token).payload;
  assert.equal(p.exp - p.iat, 60);
  // Global max (default 1 h) caps a long request.
  r = await b.post('/oauth2/token', cc({ requested_ttl: '86400' }), { auth: agent });
  assert.equal(r.json.expires_in, 3600);
  // Scope max of forum:search is 90 s.
  r = await b.post('/oauth2/token', cc({ scope: 'forum:read forum:search', requested_ttl: '600' }), { auth: agent });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.expires_in, 90);
  assert.equal(r.json.scope, 'forum:read forum:search');
  // Grant max.
  const g = b.agent('ttl-agent');
  b.cliOk('grant', 'add', 'ttl-agent', 'forum:read', '--audience', AUD, '--max-ttl', '2m');
  r = await b.post('/oauth2/token', cc({ requested_ttl: '600' }), { auth: g });
  assert.equal(r.json.expires_in, 120);
  r = await b.post('/oauth2/token', cc(), { auth: g });
  assert.equal(r.json.expires_in, 120);
  p = decodeJwt(r.json.access_token).payload;
  assert.equal(p.exp - p.iat, 120);
});

test('an expired grant yields no token', async () => {
  const a = b.agent('short-grant');
  const soon = new Date(Date.now() + 2000).toISOString().replace(/\.\d+Z$/, 'Z');
  b.cliOk('grant', 'add', 'short-grant', 'forum:read', '--audience', AUD, '--expires-at', soon);
  let r = await b.post('/oauth2/token', cc(), { auth: a });
  assert.equal(r.status, 200, r.text);
  await sleep(2600);
  r = await b.post('/oauth2/token', cc(), { auth: a });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
});

test('a revoked grant yields no token', async () => {
  const a = b.agent('revokee');
  const g = b.cliOk('grant', 'add', 'revokee', 'forum:read', '--audience', AUD, '--json').json;
  assert.equal((await b.post('/oauth2/token', cc(), { auth: a })).status, 200);
  b.cliOk('grant', 'revoke', String(g.id));
  const r = await b.post('/oauth2/token', cc(), { auth: a });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'grant.revoked'
                      AND details->>'grant_id' = '${g.id}'`)[0][0], '1');
});

test('a disabled agent cannot authenticate', async () => {
  const a = b.agent('doomed');
  b.cliOk('grant', 'add', 'doomed', 'forum:read', '--audience', AUD);
  assert.equal((await b.post('/oauth2/token', cc(), { auth: a })).status, 200);
  b.cliOk('agent', 'disable', 'doomed');
  const r = await b.post('/oauth2/token', cc(), { auth: a });
  assert.equal(r.status, 401);
  assert.equal(r.json.error, 'invalid_client');
  assert.equal(b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'client.auth_failed'
                      AND subject = 'doomed'`)[0][0], 'disabled');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'agent.disabled'
                      AND subject = 'agent:doomed'`)[0][0], '1');
});

test('bad client credentials get 401 invalid_client and an audit row', async () => {
  const cases = [
    [{ id: 'reader', secret: 'wrong' }, 'bad_secret'],
    [{ id: 'reader', secret: agent.secret.slice(0, -1) + (agent.secret.endsWith('A') ? 'B' : 'A') }, 'bad_secret'],
    [{ id: 'nobody', secret: agent.secret }, 'unknown_client'],
    [{ id: 'reader', secret: 'wrong', method: 'post' }, 'bad_secret'],
  ];
  for (const [auth, reason] of cases) {
    const before = b.sql(`SELECT count(*) FROM audit_events WHERE type = 'client.auth_failed'
                          AND details->>'reason' = '${reason}'`)[0][0];
    const r = await b.post('/oauth2/token', cc(), { auth });
    assert.equal(r.status, 401, JSON.stringify(auth));
    assert.equal(r.json.error, 'invalid_client');
    assert.equal(r.json.access_token, undefined);
    const now = b.sql(`SELECT count(*) FROM audit_events WHERE type = 'client.auth_failed'
                       AND details->>'reason' = '${reason}'`)[0][0];
    assert.equal(Number(now), Number(before) + 1);
  }
  // No credentials at all.
  let r = await b.post('/oauth2/token', cc());
  assert.equal(r.status, 401);
  assert.equal(r.json.error, 'invalid_client');
  // Malformed Basic headers.
  for (const h of ['Basic', 'Basic !!!', 'Basic ' + Buffer.from('nocolon').toString('base64'),
    'Bearer abc', 'Basic ' + Buffer.from(':').toString('base64')]) {
    r = await b.post('/oauth2/token', cc(), { headers: { authorization: h } });
    assert.equal(r.status, 401, h);
    assert.equal(r.json.error, 'invalid_client');
  }
});

test('credentials in both the header and the body are refused', async () => {
  const r = await b.post('/oauth2/token', cc({ client_id: agent.id, client_secret: agent.secret }), { auth: agent });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
});

test('missing or malformed parameters get RFC 6749 errors and no token', async () => {
  const cases = [
    [{ scope: 'forum:read', resource: AUD }, 400, 'invalid_request'],
    [cc({ grant_type: 'password' }), 400, 'unsupported_grant_type'],
    [cc({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer' }), 400, 'unsupported_grant_type'],
    [cc({ scope: undefined }), 400, 'invalid_scope'],
    [cc({ scope: '' }), 400, 'invalid_scope'],
    [cc({ scope: 'forum:read  forum:search' }), 400, 'invalid_scope'],
    [cc({ scope: ' forum:read' }), 400, 'invalid_scope'],
    [cc({ scope: 'forum:"read' }), 400, 'invalid_scope'],
    [cc({ scope: Array.from({ length: 40 }, (_, i) => `s${i}`).join(' ') }), 400, 'invalid_scope'],
    [cc({ scope: 'x'.repeat(129) }), 400, 'invalid_scope'],
    [cc({ scope: ['forum:read', 'forum:read'] }), 400, 'invalid_request'],
    [cc({ resource: undefined }), 400, 'invalid_target'],
    [cc({ resource: [AUD, 'https://other.example'] }), 400, 'invalid_target'],
    [cc({ resource: 'has space' }), 400, 'invalid_target'],
    [cc({ resource: 'x'.repeat(300) }), 400, 'invalid_target'],
    [cc({ requested_ttl: '0' }), 400, 'invalid_request'],
    [cc({ requested_ttl: '-5' }), 400, 'invalid_request'],
    [cc({ requested_ttl: 'abc' }), 400, 'invalid_request'],
    [cc({ requested_ttl: '9223372036854775808' }), 400, 'invalid_request'],
    [cc({ requested_ttl: '1e3' }), 400, 'invalid_request'],
    [cc({ grant_type: ['client_credentials', 'client_credentials'] }), 400, 'invalid_request'],
    [cc({ scope: "forum:read' OR '1'='1" }), 400, 'invalid_scope'],
    [cc({ resource: "https://x/';DROP/**/TABLE/**/tokens;--" }), 400, 'invalid_scope'],
    [cc({ resource: "https://x/'; DROP TABLE tokens;--" }), 400, 'invalid_target'],
  ];
  const before = b.sql('SELECT count(*) FROM tokens')[0][0];
  for (const [form, status, error] of cases) {
    const r = await b.post('/oauth2/token', form, { auth: agent });
    assert.equal(r.status, status, `${JSON.stringify(form)} -> ${r.text}`);
    assert.equal(r.json.error, error, JSON.stringify(form));
    assert.equal(typeof r.json.error_description, 'string');
    assert.equal(r.headers.get('content-type'), 'application/json');
  }
  assert.equal(b.sql('SELECT count(*) FROM tokens')[0][0], before);
  assert.equal(b.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'tokens'")[0][0], '1');
});

test('bodies that are not UTF-8 form data are refused', async () => {
  const basic = 'Basic ' + Buffer.from(`${agent.id}:${agent.secret}`).toString('base64');
  const send = (body, ct = 'application/x-www-form-urlencoded') => fetch(`${b.url}/oauth2/token`, {
    method: 'POST', headers: { authorization: basic, 'content-type': ct }, body,
  }).then(async (r) => ({ status: r.status, json: await r.json() }));
  const good = `grant_type=client_credentials&scope=forum:read&resource=${encodeURIComponent(AUD)}`;
  for (const [body, ct] of [
    [good, 'application/json'],
    [good, 'text/plain'],
    [JSON.stringify({ grant_type: 'client_credentials' }), 'application/json'],
    [good + '&x=%ff%fe', undefined],
    [good + '&x=%00', undefined],
    [good + '&x=%zz', undefined],
    [good + '&x=%4', undefined],
    [Buffer.from([0x67, 0x3d, 0xc3, 0x28]), undefined],
    ['&'.repeat(10) + Array.from({ length: 40 }, (_, i) => `p${i}=1`).join('&'), undefined],
  ]) {
    const r = await send(body, ct);
    assert.equal(r.status, 400, String(body));
    assert.equal(r.json.error, 'invalid_request');
  }
  // Content type parameters are fine.
  const r = await send(good, 'application/x-www-form-urlencoded; charset=UTF-8');
  assert.equal(r.status, 200);
});

test('unknown paths, wrong methods and oversized bodies get JSON errors', async () => {
  let r = await b.get('/oauth2/nope');
  assert.equal(r.status, 404);
  assert.equal(r.json.error, 'not_found');
  r = await b.get('/oauth2/token');
  assert.equal(r.status, 405);
  assert.equal(r.json.error, 'method_not_allowed');
  assert.equal(r.headers.get('allow'), 'POST');
  r = await fetch(`${b.url}/.well-known/jwks.json`, { method: 'DELETE' });
  assert.equal(r.status, 405);
  r = await b.post('/oauth2/token', cc({ junk: 'x'.repeat(70000) }), { auth: agent });
  assert.equal(r.status, 413);
  assert.equal(r.json.error, 'request_too_large');
  // The daemon is still fine.
  r = await b.post('/oauth2/token', cc(), { auth: agent });
  assert.equal(r.status, 200);
});

test('metadata (RFC 8414) and JWKS (RFC 7517) describe the broker', async () => {
  const m = await b.get('/.well-known/oauth-authorization-server');
  assert.equal(m.status, 200);
  assert.equal(m.json.issuer, b.url);
  assert.equal(m.json.token_endpoint, `${b.url}/oauth2/token`);
  assert.equal(m.json.jwks_uri, `${b.url}/.well-known/jwks.json`);
  assert.deepEqual(m.json.grant_types_supported, ['client_credentials', 'urn:openid:params:grant-type:ciba',
    'urn:ietf:params:oauth:grant-type:token-exchange']);
  assert.equal(m.json.backchannel_authentication_endpoint, `${b.url}/oauth2/bc-authorize`);
  assert.deepEqual(m.json.backchannel_token_delivery_modes_supported, ['poll']);
  assert.deepEqual(m.json.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'private_key_jwt']);
  const j = await b.get('/.well-known/jwks.json');
  assert.equal(j.status, 200);
  assert.equal(j.headers.get('content-type'), 'application/jwk-set+json');
  assert.match(j.headers.get('cache-control'), /max-age=\d+/);
  const k = j.json.keys[0];
  assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  assert.equal(k.d, undefined);
  const etag = j.headers.get('etag');
  const again = await fetch(`${b.url}/.well-known/jwks.json`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
});

test('health and readiness', async () => {
  const h = await b.get('/healthz');
  assert.equal(h.status, 200);
  const r = await b.get('/readyz');
  assert.equal(r.status, 200);
  const { clock_skew_ms: skew, ...rest } = r.json;
  assert.deepEqual(rest, { status: 'ready', database: true, keys: true });
  // Broker and PostgreSQL share this host's clock (clock.test.mjs skews it).
  assert.ok(Number.isInteger(skew) && Math.abs(skew) < 2000, `clock_skew_ms ${skew}`);
});

test('no secret or token ever reaches the audit log or the broker log', async () => {
  const r = await b.post('/oauth2/token', cc(), { auth: agent });
  assert.equal(r.status, 200);
  await b.post('/oauth2/token', cc(), { auth: { id: 'reader', secret: 'canary-secret-1234' } });
  const dump = b.sql('SELECT string_agg(row_to_json(a)::text, E\'\\n\') FROM audit_events a')[0][0];
  const [, , sig] = r.json.access_token.split('.');
  for (const needle of [agent.secret, 'canary-secret-1234', sig, r.json.access_token]) {
    assert.ok(!dump.includes(needle), 'audit contains a secret');
    assert.ok(!b.logs.includes(needle), 'log contains a secret');
  }
  // The stored hash is not the secret either.
  const [[hash]] = b.sql("SELECT encode(secret_hash, 'hex') FROM agents WHERE name = 'reader'");
  assert.equal(hash.length, 64);
  assert.ok(!hash.includes(Buffer.from(agent.secret).toString('hex')));
});
