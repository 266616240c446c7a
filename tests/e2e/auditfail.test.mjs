// End-to-end: when the audit log cannot take a row, nothing that needs one
// happens. The broker's INSERT on audit_events is taken away (reads, and
// so authentication, still work); every path that would mint, count a
// use, open or decide an approval, collect, exchange or revoke must then
// answer 503 with an OAuth body and leave every table as it was, in group
// commits and one statement at a time alike, and work again once the
// privilege is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Broker, decodeJwt } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
const XG = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
let b;
let single;
let agent;
let svc;
let approverKey;

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
  single = await b.sibling({ COUNTERSIGN_GROUP_COMMIT: '0', COUNTERSIGN_ISSUER: b.url });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('af-agent');
  b.cliOk('grant', 'add', 'af-agent', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'af-agent', 'forum:post', '--audience', AUD);
  const s = b.cliOk('service', 'add', 'af-forum', '--audience', AUD, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
  approverKey = b.cliOk('approver', 'add', 'af-approver', '--groups', 'ops', '--json').json.api_key;
});

after(async () => {
  await single?.stop();
  await b.stop();
});

const read = { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD };

const approverPost = (path) => fetch(`${b.url}${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }, body: '{}',
}).then(async (r) => ({ status: r.status, json: await r.json().catch(() => undefined) }));

async function ask() {
  const r = await b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'audit fails' }, { auth: agent });
  assert.equal(r.status, 200, r.text);
  return r.json.auth_req_id;
}

// Everything a refused request could have changed.
function state(jti, pending, approved) {
  const one = (q) => b.sql(q)[0][0];
  return {
    events: one('SELECT count(*) FROM audit_events'),
    tokens: one('SELECT count(*) FROM tokens'),
    requests: one('SELECT count(*) FROM approval_requests'),
    decisions: one('SELECT count(*) FROM approval_decisions'),
    token: b.sql(`SELECT use_count, revoked_at IS NULL FROM tokens WHERE jti = '${jti}'`)[0].join(),
    pending: one(`SELECT state FROM approval_requests WHERE id = '${pending}'`),
    approved: one(`SELECT state FROM approval_requests WHERE id = '${approved}'`),
  };
}

test('when the audit log refuses a row: 503 everywhere, nothing minted, counted, decided or revoked', async () => {
  const t = await b.post('/oauth2/token', read, { auth: agent });
  assert.equal(t.status, 200, t.text);
  const token = t.json.access_token;
  const { jti } = decodeJwt(token).payload;
  const pending = await ask();
  const approved = await ask();
  assert.equal((await approverPost(`/v1/approvals/${approved}/approve`)).status, 200);
  // Warm both brokers' caches, so that the refusals below come from the
  // recording statements and not from a look-up.
  for (const x of [b, single]) {
    assert.equal((await x.post('/oauth2/token', read, { auth: agent })).status, 200);
    assert.equal((await x.post('/oauth2/introspect', { token }, { auth: svc })).json.active, true);
  }
  const before = state(jti, pending, approved);
  assert.equal(before.pending, 'pending');
  assert.equal(before.approved, 'approved');

  const refused = (what, r) => {
    assert.equal(r.status, 503, `${what}: ${r.status} ${JSON.stringify(r.json)}`);
    assert.equal(r.json?.error, 'temporarily_unavailable', what);
    assert.equal(r.json?.access_token, undefined, what);
    assert.equal(r.json?.active, undefined, what);
  };
  b.sql('REVOKE INSERT ON audit_events FROM countersign_broker');
  try {
    for (const [name, x] of [['group commit', b], ['one statement', single]]) {
      refused(`client credentials, ${name}`, await x.post('/oauth2/token', read, { auth: agent }));
      refused(`introspection, ${name}`, await x.post('/oauth2/introspect', { token }, { auth: svc }));
    }
    refused('bc-authorize', await b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'x' }, { auth: agent }));
    refused('approval decision', await approverPost(`/v1/approvals/${pending}/approve`));
    refused('CIBA collection', await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: approved }, { auth: agent }));
    refused('token exchange', await b.post('/oauth2/token', { grant_type: XG, subject_token: token, subject_token_type: AT }, { auth: agent }));
    refused('RFC 7009 revocation', await b.post('/oauth2/revoke', { token }, { auth: agent }));
    const cli = b.cli('token', 'revoke', jti);
    assert.equal(cli.code, 1, cli.stderr);
    assert.deepEqual(state(jti, pending, approved), before);
  } finally {
    b.sql('GRANT INSERT ON audit_events TO countersign_broker');
  }

  // Back: every path works, on the same requests.
  for (const x of [b, single]) {
    assert.equal((await x.post('/oauth2/token', read, { auth: agent })).status, 200);
    assert.equal((await x.post('/oauth2/introspect', { token }, { auth: svc })).json.active, true);
  }
  assert.equal((await approverPost(`/v1/approvals/${pending}/approve`)).status, 200);
  const w = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: approved }, { auth: agent });
  assert.equal(w.status, 200, w.text);
  assert.equal(decodeJwt(w.json.access_token).payload.scope, 'forum:post');
  assert.equal((await b.post('/oauth2/token', { grant_type: XG, subject_token: token, subject_token_type: AT }, { auth: agent })).status, 200);
  assert.equal((await b.post('/oauth2/revoke', { token }, { auth: agent })).status, 200);
  assert.equal(b.sql(`SELECT revoked_at IS NOT NULL FROM tokens WHERE jti = '${jti}'`)[0][0], 't');
  // Every token row has its event, and the chain is whole.
  assert.equal(b.sql("SELECT count(*) FROM tokens t WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.jti = t.jti AND e.type IN ('token.issued', 'token.exchanged'))")[0][0], '0');
  const v = b.cliOk('audit', 'verify', '--json').json;
  assert.equal(v.ok, true, JSON.stringify(v));
});
