// Interoperability with code nobody here wrote: oauth4webapi discovers the
// broker through RFC 8414 metadata and runs client credentials, CIBA,
// introspection and revocation, with client secrets and with
// private_key_jwt and DPoP; npm jose and Debian's PyJWT verify tokens
// through the JWKS URL and reject tampered ones.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { Broker, ROOT, sleep } from '../e2e/lib.mjs';

const AUD = 'https://forum.example';
const insecure = { [oauth.allowInsecureRequests]: true };
let b;
let agent;
let service;
let approverKey;
let as;

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('interop-agent');
  b.cliOk('grant', 'add', 'interop-agent', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'interop-agent', 'forum:post', '--audience', AUD);
  const s = b.cliOk('service', 'add', 'interop-forum', '--audience', AUD, '--json').json;
  service = { id: s.client_id, secret: s.client_secret };
  approverKey = b.cliOk('approver', 'add', 'interop-human', '--groups', 'ops', '--json').json.api_key;
  const issuer = new URL(b.url);
  as = await oauth.processDiscoveryResponse(issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
});

after(async () => {
  await b.stop();
});

async function ccToken(scope = 'forum:read') {
  const client = { client_id: agent.id };
  const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(agent.secret),
    { scope, resource: AUD }, insecure);
  return oauth.processClientCredentialsResponse(as, client, res);
}

test('oauth4webapi: RFC 8414 discovery', () => {
  assert.equal(as.issuer, b.url);
  assert.equal(as.token_endpoint, `${b.url}/oauth2/token`);
  assert.equal(as.introspection_endpoint, `${b.url}/oauth2/introspect`);
  assert.equal(as.revocation_endpoint, `${b.url}/oauth2/revoke`);
  assert.equal(as.backchannel_authentication_endpoint, `${b.url}/oauth2/bc-authorize`);
});

test('oauth4webapi: client credentials, introspection, revocation', async () => {
  const tok = await ccToken();
  assert.equal(tok.token_type, 'bearer');
  assert.equal(tok.scope, 'forum:read');
  assert.equal(tok.expires_in, 300);
  const svc = { client_id: service.id };
  let intro = await oauth.processIntrospectionResponse(as, svc,
    await oauth.introspectionRequest(as, svc, oauth.ClientSecretBasic(service.secret), tok.access_token, insecure));
  assert.equal(intro.active, true);
  assert.equal(intro.sub, 'interop-agent');
  assert.equal(intro.aud, AUD);
  const client = { client_id: agent.id };
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, oauth.ClientSecretBasic(agent.secret), tok.access_token, insecure));
  intro = await oauth.processIntrospectionResponse(as, svc,
    await oauth.introspectionRequest(as, svc, oauth.ClientSecretBasic(service.secret), tok.access_token, insecure));
  assert.equal(intro.active, false);
});

test('oauth4webapi: the write scope is refused over client credentials', async () => {
  await assert.rejects(ccToken('forum:post'), (e) => {
    assert.ok(e instanceof oauth.ResponseBodyError);
    assert.equal(e.error, 'invalid_scope');
    return true;
  });
});

test('oauth4webapi: CIBA backchannel request, pending, approval, collection', async () => {
  const client = { client_id: agent.id };
  const auth = oauth.ClientSecretBasic(agent.secret);
  const ba = await oauth.processBackchannelAuthenticationResponse(as, client,
    await oauth.backchannelAuthenticationRequest(as, client, auth, {
      scope: 'forum:post', resource: AUD, binding_message: 'interop check',
    }, insecure));
  assert.match(ba.auth_req_id, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(ba.interval, 1);
  await assert.rejects(
    oauth.backchannelAuthenticationGrantRequest(as, client, auth, ba.auth_req_id, insecure)
      .then((r) => oauth.processBackchannelAuthenticationGrantResponse(as, client, r)),
    (e) => e instanceof oauth.ResponseBodyError && e.error === 'authorization_pending');
  const ok = await fetch(`${b.url}/v1/approvals/${ba.auth_req_id}/approve`, {
    method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }, body: '{}',
  });
  assert.equal(ok.status, 200);
  await sleep(1100);
  const tok = await oauth.processBackchannelAuthenticationGrantResponse(as, client,
    await oauth.backchannelAuthenticationGrantRequest(as, client, auth, ba.auth_req_id, insecure));
  assert.equal(tok.scope, 'forum:post');
  const JWKS = jose.createRemoteJWKSet(new URL(as.jwks_uri));
  const { payload } = await jose.jwtVerify(tok.access_token, JWKS, { issuer: b.url, audience: AUD, typ: 'at+jwt' });
  assert.equal(payload.approval.id, ba.auth_req_id);
});

function pyjwt(token, audience = AUD, issuer = b.url) {
  return spawnSync('/usr/bin/python3', [join(ROOT, 'tests', 'interop', 'verify_pyjwt.py'),
    `${b.url}/.well-known/jwks.json`, issuer, audience, token], { encoding: 'utf8' });
}

test('PyJWT (python3-jwt) verifies a token through PyJWKClient and rejects forgeries', async () => {
  const tok = await ccToken();
  let r = pyjwt(tok.access_token);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const claims = JSON.parse(r.stdout);
  assert.equal(claims.sub, 'interop-agent');
  assert.equal(claims.scope, 'forum:read');
  r = pyjwt(tok.access_token, 'https://other.example');
  assert.equal(r.status, 1);
  assert.match(r.stdout, /InvalidAudience/);
  r = pyjwt(tok.access_token, AUD, 'https://evil.example');
  assert.match(r.stdout, /InvalidIssuer/);
  const [h, p, s] = tok.access_token.split('.');
  const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url')), scope: 'forum:post' })).toString('base64url');
  r = pyjwt(`${h}.${forged}.${s}`);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /InvalidSignature/);
});

test('npm jose: verifies through the JWKS URL; tampering, wrong typ and alg confusion fail', async () => {
  const tok = await ccToken();
  const JWKS = jose.createRemoteJWKSet(new URL(as.jwks_uri));
  await jose.jwtVerify(tok.access_token, JWKS, { issuer: b.url, audience: AUD, typ: 'at+jwt' });
  await assert.rejects(jose.jwtVerify(tok.access_token, JWKS, { issuer: b.url, audience: AUD, typ: 'JWT' }));
  const [h, p] = tok.access_token.split('.');
  await assert.rejects(jose.jwtVerify(`${h}.${p}.${'A'.repeat(86)}`, JWKS, { issuer: b.url, audience: AUD }));
  // And the broker accepts nothing jose signs with a key it does not know.
  const { privateKey } = await jose.generateKeyPair('ES256');
  const fake = await new jose.SignJWT(JSON.parse(Buffer.from(p, 'base64url').toString()))
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: JSON.parse(Buffer.from(h, 'base64url')).kid })
    .sign(privateKey);
  const svc = { client_id: service.id };
  const intro = await oauth.processIntrospectionResponse(as, svc,
    await oauth.introspectionRequest(as, svc, oauth.ClientSecretBasic(service.secret), fake, insecure));
  assert.equal(intro.active, false);
});

test('oauth4webapi: private_key_jwt client authentication and DPoP-bound tokens', async () => {
  const clientKeys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const pem = join(b.dir, 'interop-keyed.pem');
  writeFileSync(pem, await jose.exportSPKI(clientKeys.publicKey));
  b.cliOk('agent', 'add', 'interop-keyed', '--public-key', pem);
  b.cliOk('grant', 'add', 'interop-keyed', 'forum:read', '--audience', AUD);
  const client = { client_id: 'interop-keyed' };
  const auth = oauth.PrivateKeyJwt(clientKeys.privateKey);

  // private_key_jwt alone: a bearer token.
  let tok = await oauth.processClientCredentialsResponse(as, client,
    await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'forum:read', resource: AUD }, insecure));
  assert.equal(tok.token_type, 'bearer');

  // With a DPoP handle: a DPoP token bound to the handle's key.
  const dpopKeys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const DPoP = oauth.DPoP(client, dpopKeys);
  tok = await oauth.processClientCredentialsResponse(as, client,
    await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'forum:read', resource: AUD }, { DPoP, ...insecure }));
  assert.equal(tok.token_type, 'dpop');
  const jkt = await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKeys.publicKey), 'sha256');
  const svc = { client_id: service.id };
  const intro = await oauth.processIntrospectionResponse(as, svc,
    await oauth.introspectionRequest(as, svc, oauth.ClientSecretBasic(service.secret), tok.access_token, insecure));
  assert.equal(intro.active, true);
  assert.equal(intro.client_id, 'interop-keyed');
  assert.equal(intro.token_type, 'DPoP');
  assert.deepEqual(intro.cnf, { jkt });

  // oauth4webapi signs a fresh assertion per request; both jtis are
  // remembered against replay.
  const [[n]] = b.sql(`SELECT count(*) FROM seen_jtis WHERE realm = 'client:interop-keyed'`);
  assert.equal(n, '2');
});
