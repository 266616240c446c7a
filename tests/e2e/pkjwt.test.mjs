// End-to-end: private_key_jwt client authentication (RFC 7523 §2.2). An
// agent registered with a public key proves itself with a signed, one-time
// assertion; every forgery, replay and misuse is refused with
// invalid_client and audited with a reason, never with the assertion.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID, createSecretKey } from 'node:crypto';
import * as jose from 'jose';
import { Broker, decodeJwt, freePort } from './lib.mjs';

const AUD = 'https://forum.example';
const TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
let b;
let es;       // { privateKey, publicKey } ES256, registered from PEM
let ed;       // EdDSA, registered from a JWK file
let secretAgent;

const now = () => Math.floor(Date.now() / 1000);

// A client assertion for client id, with claims and header overridable.
// A value given as { raw: 'text' } is written into the JSON as is (for
// numbers JavaScript cannot represent).
async function assertion(key, id, { claims = {}, header = {}, alg = 'ES256', aud } = {}) {
  const body = {
    iss: id, sub: id, aud: aud ?? `${b.url}/oauth2/token`,
    iat: now(), exp: now() + 60, jti: randomUUID(), ...claims,
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  const raws = [];
  const text = JSON.stringify(body, (k, v) => {
    if (v && typeof v === 'object' && 'raw' in v) { raws.push(v.raw); return `@RAW${raws.length - 1}@`; }
    return v;
  }).replace(/"@RAW(\d+)@"/g, (_, i) => raws[Number(i)]);
  return new jose.CompactSign(new TextEncoder().encode(text))
    .setProtectedHeader({ alg, ...header })
    .sign(key);
}

const cc = (a, extra = {}) => ({
  grant_type: 'client_credentials', scope: 'forum:read', resource: AUD,
  client_assertion_type: TYPE, client_assertion: a, ...extra,
});

function failures(reason) {
  return Number(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'client.auth_failed'
    AND details->>'method' = 'private_key_jwt' AND details->>'reason' = '${reason}'`)[0][0]);
}

// Post and expect a 401 invalid_client audited with reason.
async function refused(form, reason, path = '/oauth2/token', opts = {}) {
  const before = failures(reason);
  const r = await b.post(path, form, opts);
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error, 'invalid_client');
  assert.equal(failures(reason), before + 1, `one client.auth_failed with reason ${reason}`);
  return r;
}

before(async () => {
  b = await Broker.start();
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  es = await jose.generateKeyPair('ES256', { extractable: true });
  ed = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const pem = join(b.dir, 'es.pem');
  writeFileSync(pem, await jose.exportSPKI(es.publicKey));
  const jwk = join(b.dir, 'ed.jwk');
  writeFileSync(jwk, JSON.stringify(await jose.exportJWK(ed.publicKey)));
  const r1 = b.cliOk('agent', 'add', 'keyed-es', '--public-key', pem, '--json');
  assert.equal(r1.json.token_endpoint_auth_method, 'private_key_jwt');
  assert.equal(r1.json.key_alg, 'ES256');
  assert.equal(r1.json.key_thumbprint,
    await jose.calculateJwkThumbprint(await jose.exportJWK(es.publicKey), 'sha256'));
  assert.equal(r1.json.client_secret, undefined);
  const r2 = b.cliOk('agent', 'add', 'keyed-ed', '--public-key', jwk, '--json');
  assert.equal(r2.json.key_alg, 'EdDSA');
  secretAgent = b.agent('secret-agent');
  for (const a of ['keyed-es', 'keyed-ed', 'secret-agent']) {
    b.cliOk('grant', 'add', a, 'forum:read', '--audience', AUD);
    b.cliOk('grant', 'add', a, 'forum:post', '--audience', AUD);
  }
  b.cliOk('approver', 'add', 'alice', '--groups', 'mods');
});

after(async () => {
  await b.stop();
});

test('discovery metadata advertises private_key_jwt and its algorithms', async () => {
  const m = (await b.get('/.well-known/oauth-authorization-server')).json;
  assert.ok(m.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
  assert.ok(m.revocation_endpoint_auth_methods_supported.includes('private_key_jwt'));
  assert.deepEqual(m.token_endpoint_auth_signing_alg_values_supported, ['ES256', 'EdDSA']);
  assert.ok(m.introspection_endpoint_auth_methods_supported.includes('private_key_jwt'));
  assert.deepEqual(m.introspection_endpoint_auth_signing_alg_values_supported, ['ES256', 'EdDSA']);
});

test('agent list shows how each agent authenticates; the key row holds no private part', async () => {
  const list = b.cliOk('agent', 'list', '--json').json;
  const by = Object.fromEntries(list.map((a) => [a.name, a]));
  assert.equal(by['keyed-es'].auth_method, 'private_key_jwt');
  assert.equal(by['keyed-ed'].auth_method, 'private_key_jwt');
  assert.equal(by['secret-agent'].auth_method, 'client_secret');
  const [[secretNull, hasD]] = b.sql(`SELECT secret_hash IS NULL, public_jwk ? 'd' FROM agents WHERE name = 'keyed-es'`);
  assert.equal(secretNull, 't');
  assert.equal(hasD, 'f');
  const [[created]] = b.sql(`SELECT details->>'auth_method' FROM audit_events
    WHERE type = 'agent.created' AND subject = 'agent:keyed-ed'`);
  assert.equal(created, 'private_key_jwt');
});

test('the CLI refuses a private key, a non-key file and an unsupported key type', async () => {
  const priv = join(b.dir, 'priv.pem');
  writeFileSync(priv, await jose.exportPKCS8(es.privateKey));
  let r = b.cli('agent', 'add', 'bad1', '--public-key', priv);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /private key/);
  const privJwk = join(b.dir, 'priv.jwk');
  writeFileSync(privJwk, JSON.stringify(await jose.exportJWK(ed.privateKey)));
  r = b.cli('agent', 'add', 'bad2', '--public-key', privJwk);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /private key/);
  const rsa = await jose.generateKeyPair('RS256', { extractable: true });
  const rsaPem = join(b.dir, 'rsa.pem');
  writeFileSync(rsaPem, await jose.exportSPKI(rsa.publicKey));
  r = b.cli('agent', 'add', 'bad3', '--public-key', rsaPem);
  assert.notEqual(r.code, 0);
  const junk = join(b.dir, 'junk');
  writeFileSync(junk, 'hello');
  r = b.cli('agent', 'add', 'bad4', '--public-key', junk);
  assert.notEqual(r.code, 0);
  assert.equal(b.sql(`SELECT count(*) FROM agents WHERE name LIKE 'bad%'`)[0][0], '0');
});

test('an ES256 assertion with client_id in the body yields a token', async () => {
  const a = await assertion(es.privateKey, 'keyed-es');
  const r = await b.post('/oauth2/token', cc(a, { client_id: 'keyed-es' }));
  assert.equal(r.status, 200, r.text);
  const { payload } = decodeJwt(r.json.access_token);
  assert.equal(payload.client_id, 'keyed-es');
  assert.equal(payload.sub, 'keyed-es');
});

test('an EdDSA assertion naming the client only by iss yields a token', async () => {
  const a = await assertion(ed.privateKey, 'keyed-ed', { alg: 'EdDSA', header: { typ: 'JWT' } });
  const r = await b.post('/oauth2/token', cc(a));
  assert.equal(r.status, 200, r.text);
  assert.equal(decodeJwt(r.json.access_token).payload.client_id, 'keyed-ed');
});

test('aud may be the issuer, or an array naming the token endpoint', async () => {
  let r = await b.post('/oauth2/token', cc(await assertion(es.privateKey, 'keyed-es', { aud: b.url })));
  assert.equal(r.status, 200, r.text);
  r = await b.post('/oauth2/token', cc(await assertion(es.privateKey, 'keyed-es',
    { aud: ['https://elsewhere.example', `${b.url}/oauth2/token`] })));
  assert.equal(r.status, 200, r.text);
});

test('bc-authorize and revoke accept assertions too', async () => {
  let r = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'post the weekly summary',
    client_assertion_type: TYPE,
    client_assertion: await assertion(es.privateKey, 'keyed-es', { aud: `${b.url}/oauth2/bc-authorize` }),
  });
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.auth_req_id, /^[A-Za-z0-9_-]+$/);
  const tok = await b.post('/oauth2/token', cc(await assertion(es.privateKey, 'keyed-es')));
  assert.equal(tok.status, 200);
  const jti = decodeJwt(tok.json.access_token).payload.jti;
  r = await b.post('/oauth2/revoke', {
    token: tok.json.access_token, client_assertion_type: TYPE,
    client_assertion: await assertion(es.privateKey, 'keyed-es', { aud: `${b.url}/oauth2/revoke` }),
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(b.sql(`SELECT revoked_at IS NOT NULL FROM tokens WHERE jti = '${jti}'`)[0][0], 't');
});

test('a replayed assertion is refused, and the audit row never holds the assertion', async () => {
  const a = await assertion(es.privateKey, 'keyed-es');
  const r = await b.post('/oauth2/token', cc(a));
  assert.equal(r.status, 200, r.text);
  await refused(cc(a), 'replayed');
  // Even at another endpoint.
  await refused({ token: 'x', client_assertion_type: TYPE, client_assertion: a }, 'replayed', '/oauth2/revoke');
  const sig = a.split('.')[2];
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE details::text LIKE '%${sig}%'`)[0][0], '0');
  assert.ok(!b.logs.includes(sig));
});

test('the replay memory is shared by two broker processes on one database', async () => {
  const port = await freePort();
  const b2 = new Broker({
    ...b, proc: undefined, port, url: `http://127.0.0.1:${port}`,
    env: { ...b.env, COUNTERSIGN_LISTEN: `127.0.0.1:${port}` },
  });
  b2.logs = '';
  await b2.spawn();
  try {
    const a = await assertion(es.privateKey, 'keyed-es',
      { aud: [`${b.url}/oauth2/token`, `${b2.url}/oauth2/token`] });
    const r1 = await b.post('/oauth2/token', cc(a));
    assert.equal(r1.status, 200, r1.text);
    const r2 = await b2.post('/oauth2/token', cc(a));
    assert.equal(r2.status, 401, r2.text);
    assert.equal(r2.json.error, 'invalid_client');
    const [[n]] = b.sql(`SELECT count(*) FROM seen_jtis WHERE realm = 'client:keyed-es'
      AND jti = '${decodeJwt(a).payload.jti}'`);
    assert.equal(n, '1');
  } finally {
    b2.proc.kill('SIGTERM');
    await b2.exited;
  }
});

test('a wrong aud is refused', async () => {
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { aud: 'https://other.example/oauth2/token' })), 'bad_aud');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { aud: [] })), 'bad_aud');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { aud: undefined } })), 'bad_aud');
});

test('expired, far-future, missing exp, future iat and nbf are refused', async () => {
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { exp: now() - 120, iat: now() - 180 } })), 'expired');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { exp: now() + 3600 } })), 'exp_too_far');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { exp: undefined } })), 'missing_exp');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { exp: '9999999999' } })), 'bad_exp');
  // Extreme values cannot overflow the time arithmetic.
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { exp: { raw: '9223372036854775807' } } })), 'exp_too_far');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { exp: { raw: '-9223372036854775808' } } })), 'expired');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { iat: now() + 600 } })), 'bad_iat');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { nbf: now() + 600 } })), 'not_yet_valid');
});

test('a missing jti is refused', async () => {
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { jti: undefined } })), 'missing_jti');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { jti: '' } })), 'missing_jti');
  // jansson refuses \u0000 in JSON strings, so such a payload is malformed.
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { jti: '\u0000x' } })), 'malformed');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { jti: 7 } })), 'missing_jti');
});

test('iss different from sub, or from client_id, is refused', async () => {
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { sub: 'keyed-ed' } })), 'bad_sub');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { claims: { iss: 'keyed-ed' } }),
    { client_id: 'keyed-es' }), 'bad_iss');
});

test('the algorithm is pinned by the registered key: wrong alg, none and HS256 are refused', async () => {
  // An ES256 agent presenting an EdDSA assertion (signed by its other key).
  await refused(cc(await assertion(ed.privateKey, 'keyed-es', { alg: 'EdDSA' })), 'bad_header');
  const hs = createSecretKey(Buffer.alloc(32, 7));
  await refused(cc(await assertion(hs, 'keyed-es', { alg: 'HS256' })), 'bad_header');
  const body = { iss: 'keyed-es', sub: 'keyed-es', aud: b.url, exp: now() + 60, jti: randomUUID() };
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(body)).toString('base64url')}.`;
  await refused(cc(none), 'malformed');
  const none2 = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(body)).toString('base64url')}.AAAA`;
  await refused(cc(none2), 'bad_header');
  // Header members outside the allow-list (a key URL) are refused.
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { header: { jku: 'https://evil.example/jwks' } })), 'bad_header');
  await refused(cc(await assertion(es.privateKey, 'keyed-es', { header: { typ: 'at+jwt' } })), 'bad_typ');
});

test('an assertion signed by another key is refused', async () => {
  const other = await jose.generateKeyPair('ES256');
  await refused(cc(await assertion(other.privateKey, 'keyed-es')), 'bad_signature');
  // A valid signature with one byte flipped.
  const a = await assertion(es.privateKey, 'keyed-es');
  const [h, p, s] = a.split('.');
  const raw = Buffer.from(s, 'base64url');
  raw[10] ^= 1;
  await refused(cc(`${h}.${p}.${raw.toString('base64url')}`), 'bad_signature');
});

test('a key-registered agent cannot use a secret, and a secret agent cannot use an assertion', async () => {
  const before = failures('secret_not_allowed');
  for (const method of ['basic', 'post']) {
    const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD },
      { auth: { id: 'keyed-es', secret: 'x'.repeat(43), method } });
    assert.equal(r.status, 401);
    assert.equal(r.json.error, 'invalid_client');
  }
  assert.equal(Number(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'client.auth_failed'
    AND details->>'reason' = 'secret_not_allowed'`)[0][0]), before + 2);
  await refused(cc(await assertion(es.privateKey, 'secret-agent')), 'no_key_registered');
  await refused(cc(await assertion(es.privateKey, 'nobody')), 'unknown_client');
});

test('mixing methods or a wrong assertion type is refused', async () => {
  const a = await assertion(es.privateKey, 'keyed-es');
  const r = await b.post('/oauth2/token', cc(a), { auth: secretAgent });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  await refused(cc(a, { client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer' }), 'bad_assertion_type');
  await refused({ grant_type: 'client_credentials', scope: 'forum:read', resource: AUD, client_assertion: a }, 'bad_assertion_type');
  await refused(cc('not.a.jwt'), 'malformed');
  await refused(cc('x'.repeat(9000)), 'malformed');
  // The unused assertion is still good: refusals did not spend its jti.
  const ok = await b.post('/oauth2/token', cc(a));
  assert.equal(ok.status, 200, ok.text);
});

test('a disabled key-registered agent is refused', async () => {
  const k = await jose.generateKeyPair('ES256');
  const pem = join(b.dir, 'gone.pem');
  writeFileSync(pem, await jose.exportSPKI(k.publicKey));
  b.cliOk('agent', 'add', 'gone', '--public-key', pem);
  b.cliOk('grant', 'add', 'gone', 'forum:read', '--audience', AUD);
  assert.equal((await b.post('/oauth2/token', cc(await assertion(k.privateKey, 'gone')))).status, 200);
  b.cliOk('agent', 'disable', 'gone');
  await refused(cc(await assertion(k.privateKey, 'gone')), 'disabled');
});

test('expired replay rows are pruned', async () => {
  b.sql(`INSERT INTO seen_jtis (realm, jti, expires_at) SELECT 'client:old', 'j' || g, now() - interval '1 hour'
    FROM generate_series(1, 50) g`);
  for (let i = 0; i < 70; i++) {
    const r = await b.post('/oauth2/token', cc(await assertion(es.privateKey, 'keyed-es')));
    assert.equal(r.status, 200, r.text);
  }
  assert.equal(b.sql(`SELECT count(*) FROM seen_jtis WHERE realm = 'client:old'`)[0][0], '0');
});

test('a service registered with a key introspects with an assertion, never with a secret', async () => {
  const k = await jose.generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = join(b.dir, 'svc.jwk');
  writeFileSync(jwk, JSON.stringify(await jose.exportJWK(k.publicKey)));
  const r = b.cliOk('service', 'add', 'keyed-svc', '--audience', AUD, '--public-key', jwk, '--json');
  assert.equal(r.json.introspection_endpoint_auth_method, 'private_key_jwt');
  assert.equal(r.json.client_secret, undefined);
  const list = Object.fromEntries(b.cliOk('service', 'list', '--json').json.map((x) => [x.name, x]));
  assert.equal(list['keyed-svc'].auth_method, 'private_key_jwt');

  const tok = (await b.post('/oauth2/token', cc(await assertion(es.privateKey, 'keyed-es')))).json.access_token;
  const intro = async (a, extra = {}, opts = {}) => b.post('/oauth2/introspect',
    { token: tok, client_assertion_type: TYPE, client_assertion: a, ...extra }, opts);
  const svcAssertion = (claims = {}) => assertion(k.privateKey, 'keyed-svc',
    { alg: 'EdDSA', aud: `${b.url}/oauth2/introspect`, claims });
  const svcFailures = (reason) => Number(b.sql(`SELECT count(*) FROM audit_events
    WHERE type = 'service.auth_failed' AND details->>'reason' = '${reason}'`)[0][0]);

  const a = await svcAssertion();
  let i = await intro(a);
  assert.equal(i.status, 200, i.text);
  assert.equal(i.json.active, true);
  assert.equal(i.json.client_id, 'keyed-es');

  // Replayed, signed by another key, or an agent's assertion: refused.
  let before = svcFailures('replayed');
  i = await intro(a);
  assert.equal(i.status, 401);
  assert.equal(i.json.error, 'invalid_client');
  assert.equal(svcFailures('replayed'), before + 1);
  before = svcFailures('bad_header');
  i = await intro(await assertion(es.privateKey, 'keyed-svc', { aud: b.url }));
  assert.equal(i.status, 401);
  assert.equal(svcFailures('bad_header'), before + 1);
  before = svcFailures('unknown_client');
  i = await intro(await assertion(es.privateKey, 'keyed-es', { aud: b.url }));
  assert.equal(i.status, 401);
  assert.equal(svcFailures('unknown_client'), before + 1);

  // No secret works for it.
  before = svcFailures('secret_not_allowed');
  i = await b.post('/oauth2/introspect', { token: tok }, { auth: { id: 'keyed-svc', secret: 'x'.repeat(43) } });
  assert.equal(i.status, 401);
  assert.equal(svcFailures('secret_not_allowed'), before + 1);
});
