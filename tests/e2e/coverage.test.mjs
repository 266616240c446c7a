// End-to-end: every state-changing path writes exactly the audit event it
// should, and no field of any event holds a token, a secret or key
// material. The paths are enumerated in one table so a new one without an
// event shows up here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
let b;
const secrets = [];

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
});

after(async () => {
  await b.stop();
});

function lastSeq() {
  return Number(b.sql('SELECT coalesce(max(seq), 0) FROM audit_events')[0][0]);
}

function eventsSince(seq) {
  return b.sql(`SELECT type, actor, coalesce(subject, ''), coalesce(jti, '') FROM audit_events
                WHERE seq > ${seq} ORDER BY seq`).map(([type, actor, subject, jti]) => ({ type, actor, subject, jti }));
}

// Run action, then check the events it wrote are exactly `expected`
// (types in order) and return them.
async function expectEvents(name, action, expected) {
  const before = lastSeq();
  await action();
  const got = eventsSince(before);
  assert.deepEqual(got.map((e) => e.type), expected, name);
  return got;
}

test('every state-changing path writes exactly its event', async () => {
  const ctx = {};
  // The first signing key was made (and audited) when the broker started.
  assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE type = 'key.created'")[0][0], '1');
  const steps = [
    ['scope add (read)', () => b.cliOk('scope', 'add', 'cov:read', '--kind', 'read'), ['scope.created']],
    ['scope add (write)', () => b.cliOk('scope', 'add', 'cov:write', '--kind', 'write', '--no-require-dpop'), ['scope.created']],
    ['agent add', () => { ctx.agent = b.agent('cov-agent', '--owner', 'o@example.com'); secrets.push(ctx.agent.secret); }, ['agent.created']],
    ['grant add', () => { ctx.grant = b.cliOk('grant', 'add', 'cov-agent', 'cov:read', '--audience', AUD, '--json').json; }, ['grant.created']],
    ['grant add (write)', () => b.cliOk('grant', 'add', 'cov-agent', 'cov:write', '--audience', AUD), ['grant.created']],
    ['approver add', () => { ctx.key = b.cliOk('approver', 'add', 'cov-human', '--groups', 'g', '--json').json.api_key; secrets.push(ctx.key); }, ['approver.created']],
    ['service add', () => { const s = b.cliOk('service', 'add', 'cov-svc', '--audience', AUD, '--json').json; ctx.svc = { id: s.client_id, secret: s.client_secret }; secrets.push(s.client_secret); }, ['service.created']],
    ['token issued', async () => {
      const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:read', resource: AUD }, { auth: ctx.agent });
      ctx.token = r.json.access_token;
      secrets.push(ctx.token);
    }, ['token.issued']],
    ['token denied (write scope)', () => b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:write', resource: AUD }, { auth: ctx.agent }), ['token.denied']],
    ['client auth failed', () => b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:read', resource: AUD }, { auth: { id: 'cov-agent', secret: 'wrong-secret-value' } }), ['client.auth_failed']],
    ['token used (introspection)', () => b.post('/oauth2/introspect', { token: ctx.token }, { auth: ctx.svc }), ['token.used']],
    ['service auth failed', () => b.post('/oauth2/introspect', { token: ctx.token }, { auth: { id: 'cov-svc', secret: 'nope' } }), ['service.auth_failed']],
    ['token revoked (RFC 7009)', () => b.post('/oauth2/revoke', { token: ctx.token }, { auth: ctx.agent }), ['token.revoked']],
    ['approval requested', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'coverage' }, { auth: ctx.agent });
      ctx.req = r.json.auth_req_id;
    }, ['approval.requested']],
    ['approver auth failed', () => fetch(`${b.url}/v1/approvals`, { headers: { authorization: 'Bearer nope' } }), ['approver.auth_failed']],
    ['approval approved', () => fetch(`${b.url}/v1/approvals/${ctx.req}/approve`, {
      method: 'POST', headers: { authorization: `Bearer ${ctx.key}`, 'content-type': 'application/json' }, body: '{"reason":"ok"}',
    }), ['approval.approved']],
    ['approval consumed', async () => {
      await sleep(1000);
      const r = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: ctx.req }, { auth: ctx.agent });
      ctx.wtoken = r.json.access_token;
      secrets.push(ctx.wtoken);
    }, ['token.issued', 'approval.consumed']],
    ['approval denied', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'again' }, { auth: ctx.agent });
      ctx.req2 = r.json.auth_req_id;
      await fetch(`${b.url}/v1/approvals/${ctx.req2}/deny`, {
        method: 'POST', headers: { authorization: `Bearer ${ctx.key}`, 'content-type': 'application/json' }, body: '{"reason":"no"}',
      });
    }, ['approval.requested', 'approval.denied']],
    ['web sign-in', async () => {
      const r = await fetch(`${b.url}/ui/api/session`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: ctx.key }),
      });
      ctx.cookie = r.headers.getSetCookie()[0].split(';')[0];
      ctx.csrf = (await r.json()).csrf_token;
      secrets.push(ctx.cookie.split('=')[1], ctx.csrf);
    }, ['approver.signed_in']],
    ['web sign-in failed', () => fetch(`${b.url}/ui/api/session`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"key":"nope"}',
    }), ['approver.auth_failed']],
    ['approval denied (web page)', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'web' }, { auth: ctx.agent });
      await fetch(`${b.url}/ui/api/approvals/${r.json.auth_req_id}/deny`, {
        method: 'POST', headers: { cookie: ctx.cookie, 'x-csrf-token': ctx.csrf, 'content-type': 'application/json' }, body: '{"reason":"no"}',
      });
    }, ['approval.requested', 'approval.denied']],
    ['web sign-out', () => fetch(`${b.url}/ui/api/session`, {
      method: 'DELETE', headers: { cookie: ctx.cookie, 'x-csrf-token': ctx.csrf },
    }), ['approver.signed_out']],
    ['approval expired', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'late', requested_expiry: '1' }, { auth: ctx.agent });
      await sleep(1200);
      await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: r.json.auth_req_id }, { auth: ctx.agent });
    }, ['approval.requested', 'approval.expired']],
    ['token revoked (CLI)', async () => {
      const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:read', resource: AUD }, { auth: ctx.agent });
      secrets.push(r.json.access_token);
      ctx.jti = decodeJwt(r.json.access_token).payload.jti;
      b.cliOk('token', 'revoke', '--', ctx.jti);
    }, ['token.issued', 'token.revoked']],
    ['grant revoked', () => b.cliOk('grant', 'revoke', String(ctx.grant.id)), ['grant.revoked']],
    ['approver disabled', () => b.cliOk('approver', 'disable', 'cov-human'), ['approver.disabled']],
    ['key rotated', () => b.cliOk('keys', 'rotate'), ['key.rotated']],
    ['audit checkpoint', () => b.cliOk('audit', 'checkpoint'), ['audit.checkpoint']],
    ['agent disabled', () => b.cliOk('agent', 'disable', 'cov-agent'), ['agent.disabled']],
  ];
  for (const [name, action, expected] of steps) {
    await expectEvents(name, action, expected);
  }
});

test('no audit field holds a token, a secret or key material', () => {
  assert.ok(secrets.length >= 6);
  const rows = b.sql("SELECT row_to_json(e)::text FROM audit_events e");
  const dump = rows.map((r) => r[0]).join('\n');
  for (const s of secrets) {
    assert.ok(s && !dump.includes(s), 'a secret or token is in the audit log');
    // Nor any signature of a token.
    const parts = s.split('.');
    if (parts.length === 3) assert.ok(!dump.includes(parts[2]));
  }
  assert.ok(!/PRIVATE KEY|"d":/.test(dump), 'key material in the audit log');
  assert.ok(!b.logs.includes(secrets[0]));
});
