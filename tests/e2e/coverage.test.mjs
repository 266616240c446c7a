// End-to-end: every state-changing path writes exactly the audit event it
// should, with the right actor and subject, and no field of any event holds
// a token, a secret or key material. The paths are enumerated in one table;
// a guard reads the broker's C sources for event type literals, so a new
// event type that no path here produces fails this file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Broker, ROOT, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
const XG = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const ADMIN = /^admin:/;
let b;
const secrets = [];
// Every event type a step below asserted.
const asserted = new Set();

before(async () => {
  b = await Broker.start({
    env: { COUNTERSIGN_POLL_INTERVAL: '1', COUNTERSIGN_RATE_SCOPES: 'cov:limited=1' },
  });
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

// Does got match want: a string is compared exactly, a RegExp matched,
// undefined not checked.
function fits(want, got) {
  if (want === undefined) return true;
  return want instanceof RegExp ? want.test(got) : want === got;
}

// Run action, then check the events it wrote are exactly `expected`, in
// order: each is [type, actor, subject]. An actor or subject that depends
// on what the action made is a function, called after it. Returns the
// events.
async function expectEvents(name, action, expectedLazy) {
  const before = lastSeq();
  await action();
  const expected = expectedLazy.map((e) => e.map((x) => (typeof x === 'function' ? x() : x)));
  const got = eventsSince(before);
  assert.deepEqual(got.map((e) => e.type), expected.map((e) => e[0]), name);
  expected.forEach(([type, actor, subject], i) => {
    assert.ok(fits(actor, got[i].actor), `${name}: ${type} actor ${got[i].actor}, want ${actor}`);
    assert.ok(fits(subject, got[i].subject), `${name}: ${type} subject ${got[i].subject}, want ${subject}`);
    asserted.add(type);
  });
  return got;
}

const approverApi = (key, path, body) => fetch(`${b.url}/v1/approvals/${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body,
});

test('every state-changing path writes exactly its event', async () => {
  const ctx = {};
  // Made (and audited) before any step: the migrations and the first key.
  const migrations = readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith('.sql')).sort();
  assert.deepEqual(b.sql("SELECT actor, subject FROM audit_events WHERE type = 'schema.migrated' ORDER BY seq"),
    migrations.map((m) => ['admin:migrate', m]));
  asserted.add('schema.migrated');
  const [[kid]] = b.sql("SELECT kid FROM signing_keys WHERE state = 'current'");
  assert.deepEqual(b.sql("SELECT actor, subject FROM audit_events WHERE type = 'key.created'"), [['broker', kid]]);
  asserted.add('key.created');
  const agentCtx = 'agent:cov-agent';
  const steps = [
    ['scope add (read)', () => b.cliOk('scope', 'add', 'cov:read', '--kind', 'read'), [['scope.created', ADMIN, 'scope:cov:read']]],
    ['scope add (write)', () => b.cliOk('scope', 'add', 'cov:write', '--kind', 'write', '--no-require-dpop'), [['scope.created', ADMIN, 'scope:cov:write']]],
    ['scope add (rate-limited)', () => b.cliOk('scope', 'add', 'cov:limited', '--kind', 'read'), [['scope.created', ADMIN, 'scope:cov:limited']]],
    ['agent add', () => { ctx.agent = b.agent('cov-agent', '--owner', 'o@example.com'); secrets.push(ctx.agent.secret); }, [['agent.created', ADMIN, agentCtx]]],
    ['grant add', () => { ctx.grant = b.cliOk('grant', 'add', 'cov-agent', 'cov:read', '--audience', AUD, '--json').json; }, [['grant.created', ADMIN, agentCtx]]],
    ['grant add (write)', () => b.cliOk('grant', 'add', 'cov-agent', 'cov:write', '--audience', AUD), [['grant.created', ADMIN, agentCtx]]],
    ['grant add (rate-limited)', () => b.cliOk('grant', 'add', 'cov-agent', 'cov:limited', '--audience', AUD), [['grant.created', ADMIN, agentCtx]]],
    ['approver add', () => { ctx.key = b.cliOk('approver', 'add', 'cov-human', '--groups', 'g', '--json').json.api_key; secrets.push(ctx.key); }, [['approver.created', ADMIN, 'approver:cov-human']]],
    ['service add', () => { const s = b.cliOk('service', 'add', 'cov-svc', '--audience', AUD, '--json').json; ctx.svc = { id: s.client_id, secret: s.client_secret }; secrets.push(s.client_secret); }, [['service.created', ADMIN, 'service:cov-svc']]],
    ['token issued', async () => {
      const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:read', resource: AUD }, { auth: ctx.agent });
      ctx.token = r.json.access_token;
      secrets.push(ctx.token);
    }, [['token.issued', agentCtx, agentCtx]]],
    ['token denied (write scope)', () => b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:write', resource: AUD }, { auth: ctx.agent }), [['token.denied', agentCtx, agentCtx]]],
    ['client auth failed', () => b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:read', resource: AUD }, { auth: { id: 'cov-agent', secret: 'wrong-secret-value' } }), [['client.auth_failed', 'anonymous', 'cov-agent']]],
    ['rate limited (scope budget)', async () => {
      const ask = () => b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:limited', resource: AUD }, { auth: ctx.agent });
      const first = await ask();
      secrets.push(first.json.access_token);
      assert.equal((await ask()).status, 429);
    }, [['token.issued', agentCtx, agentCtx], ['rate.limited', 'anonymous', 'cov-agent']]],
    ['token used (introspection)', () => b.post('/oauth2/introspect', { token: ctx.token }, { auth: ctx.svc }), [['token.used', 'service:cov-svc', agentCtx]]],
    ['token used, DPoP proof refused', async () => {
      // A proof offered for a token that is not DPoP-bound fails; the refusal
      // is audited before the use (as inactive) is counted.
      const r = await b.post('/oauth2/introspect', { token: ctx.token, dpop_proof: 'not.a.proof', htm: 'GET', htu: AUD }, { auth: ctx.svc });
      assert.deepEqual(r.json, { active: false });
    }, [['token.dpop_refused', 'service:cov-svc', agentCtx], ['token.used', 'service:cov-svc', agentCtx]]],
    ['service auth failed', () => b.post('/oauth2/introspect', { token: ctx.token }, { auth: { id: 'cov-svc', secret: 'nope' } }), [['service.auth_failed', 'anonymous', 'cov-svc']]],
    ['token exchanged', async () => {
      const r = await b.post('/oauth2/token', { grant_type: XG, subject_token: ctx.token, subject_token_type: AT, scope: 'cov:read' }, { auth: ctx.agent });
      assert.equal(r.status, 200, r.text);
      secrets.push(r.json.access_token);
    }, [['token.exchanged', agentCtx, agentCtx]]],
    // The token exchanged from it above is revoked with it.
    ['token revoked (RFC 7009)', () => b.post('/oauth2/revoke', { token: ctx.token }, { auth: ctx.agent }),
      [['token.revoked', agentCtx, agentCtx], ['token.revoked', agentCtx, agentCtx]]],
    ['revocation ignored (not a token)', () => b.post('/oauth2/revoke', { token: 'not-a-token' }, { auth: ctx.agent }), [['token.revocation_ignored', agentCtx, agentCtx]]],
    ['approval requested', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'coverage' }, { auth: ctx.agent });
      ctx.req = r.json.auth_req_id;
    }, [['approval.requested', agentCtx, /^approval:/]]],
    ['approval refused (not granted)', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: 'https://elsewhere.example', binding_message: 'no' }, { auth: ctx.agent });
      assert.equal(r.status, 400, r.text);
    }, [['approval.refused', agentCtx, agentCtx]]],
    ['approver auth failed', () => fetch(`${b.url}/v1/approvals`, { headers: { authorization: 'Bearer nope' } }), [['approver.auth_failed', 'anonymous', '']]],
    ['approval approved', () => approverApi(ctx.key, `${ctx.req}/approve`, '{"reason":"ok"}'), [['approval.approved', 'approver:cov-human', () => `approval:${ctx.req}`]]],
    ['approval consumed', async () => {
      await sleep(1000);
      const r = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: ctx.req }, { auth: ctx.agent });
      ctx.wtoken = r.json.access_token;
      secrets.push(ctx.wtoken);
    }, [['token.issued', agentCtx, agentCtx], ['approval.consumed', agentCtx, () => `approval:${ctx.req}`]]],
    ['approval denied', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'again' }, { auth: ctx.agent });
      ctx.req2 = r.json.auth_req_id;
      await approverApi(ctx.key, `${ctx.req2}/deny`, '{"reason":"no"}');
    }, [['approval.requested', agentCtx, /^approval:/], ['approval.denied', 'approver:cov-human', () => `approval:${ctx.req2}`]]],
    ['web sign-in', async () => {
      const r = await fetch(`${b.url}/ui/api/session`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: ctx.key }),
      });
      ctx.cookie = r.headers.getSetCookie()[0].split(';')[0];
      ctx.csrf = (await r.json()).csrf_token;
      secrets.push(ctx.cookie.split('=')[1], ctx.csrf);
    }, [['approver.signed_in', 'approver:cov-human', 'approver:cov-human']]],
    ['web sign-in failed', () => fetch(`${b.url}/ui/api/session`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"key":"nope"}',
    }), [['approver.auth_failed', 'anonymous', '']]],
    ['approval denied (web page)', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'web' }, { auth: ctx.agent });
      ctx.req3 = r.json.auth_req_id;
      await fetch(`${b.url}/ui/api/approvals/${r.json.auth_req_id}/deny`, {
        method: 'POST', headers: { cookie: ctx.cookie, 'x-csrf-token': ctx.csrf, 'content-type': 'application/json' }, body: '{"reason":"no"}',
      });
    }, [['approval.requested', agentCtx, /^approval:/], ['approval.denied', 'approver:cov-human', () => `approval:${ctx.req3}`]]],
    ['web sign-out', () => fetch(`${b.url}/ui/api/session`, {
      method: 'DELETE', headers: { cookie: ctx.cookie, 'x-csrf-token': ctx.csrf },
    }), [['approver.signed_out', 'approver:cov-human', 'approver:cov-human']]],
    ['approver signout (CLI)', () => b.cliOk('approver', 'signout', 'cov-human'), [['approver.signed_out', ADMIN, 'approver:cov-human']]],
    ['approver key rotated', () => { ctx.key = b.cliOk('approver', 'rotate-key', 'cov-human', '--json').json.api_key; secrets.push(ctx.key); }, [['approver.key_rotated', ADMIN, 'approver:cov-human']]],
    ['approval expired', async () => {
      const r = await b.post('/oauth2/bc-authorize', { scope: 'cov:write', resource: AUD, binding_message: 'late', requested_expiry: '1' }, { auth: ctx.agent });
      ctx.req4 = r.json.auth_req_id;
      await sleep(1200);
      await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: r.json.auth_req_id }, { auth: ctx.agent });
    }, [['approval.requested', agentCtx, /^approval:/], ['approval.expired', 'broker', () => `approval:${ctx.req4}`]]],
    ['token revoked (CLI)', async () => {
      const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:read', resource: AUD }, { auth: ctx.agent });
      secrets.push(r.json.access_token);
      ctx.jti = decodeJwt(r.json.access_token).payload.jti;
      b.cliOk('token', 'revoke', '--', ctx.jti);
    }, [['token.issued', agentCtx, agentCtx], ['token.revoked', ADMIN, agentCtx]]],
    ['grant revoked', () => b.cliOk('grant', 'revoke', String(ctx.grant.id)), [['grant.revoked', ADMIN, agentCtx]]],
    ['approver disabled', () => b.cliOk('approver', 'disable', 'cov-human'), [['approver.disabled', ADMIN, 'approver:cov-human']]],
    ['approver auth failed (disabled key)', () => fetch(`${b.url}/v1/approvals`, { headers: { authorization: `Bearer ${ctx.key}` } }),
      [['approver.auth_failed', 'anonymous', 'approver:cov-human']]],
    ['key rotated', () => { ctx.kid = b.cliOk('keys', 'rotate', '--json').json.kid; }, [['key.rotated', ADMIN, () => ctx.kid]]],
    ['key retired', async () => {
      // With a 1 s ceiling on lifetimes and no margin, the old key is old
      // enough to retire a moment after the rotation.
      await sleep(1100);
      const saved = b.env;
      b.env = { ...saved, COUNTERSIGN_MAX_TTL: '1', COUNTERSIGN_DEFAULT_TTL: '1', COUNTERSIGN_KEY_RETIRE_MARGIN: '0' };
      try {
        assert.deepEqual(b.cliOk('keys', 'retire', '--json').json.retired, [kid]);
      } finally {
        b.env = saved;
      }
    }, [['key.retired', ADMIN, kid]]],
    ['agent add (tripwire)', () => { ctx.trip = b.agent('cov-trip'); secrets.push(ctx.trip.secret); b.cliOk('grant', 'add', 'cov-trip', 'cov:read', '--audience', AUD); },
      [['agent.created', ADMIN, 'agent:cov-trip'], ['grant.created', ADMIN, 'agent:cov-trip']]],
    ['tripwire created', () => { ctx.rule = b.cliOk('tripwire', 'add', 'denials', '--threshold', '0', '--window', '10m', '--agent', 'cov-trip', '--json').json.id; },
      [['tripwire.created', ADMIN, () => `tripwire:${ctx.rule}`]]],
    ['agent suspended by a tripwire', async () => {
      await sleep(1100);	// the request path reads rules through a 1 s cache
      const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'cov:nope', resource: AUD }, { auth: ctx.trip });
      assert.equal(r.status, 400, r.text);
    }, [['token.denied', 'agent:cov-trip', 'agent:cov-trip'], ['agent.suspended', () => `tripwire:${ctx.rule}`, 'agent:cov-trip']]],
    ['agent resumed', () => b.cliOk('agent', 'resume', 'cov-trip'), [['agent.resumed', ADMIN, 'agent:cov-trip']]],
    ['tripwire removed', () => b.cliOk('tripwire', 'remove', String(ctx.rule)), [['tripwire.removed', ADMIN, () => `tripwire:${ctx.rule}`]]],
    ['audit checkpoint', () => b.cliOk('audit', 'checkpoint'), [['audit.checkpoint', ADMIN, 'audit']]],
    ['service add (to retire)', () => { secrets.push(b.cliOk('service', 'add', 'cov-old-svc', '--audience', AUD, '--json').json.client_secret); },
      [['service.created', ADMIN, 'service:cov-old-svc']]],
    ['service secret rotated', () => { secrets.push(b.cliOk('service', 'rotate-secret', 'cov-old-svc', '--json').json.client_secret); },
      [['service.secret_rotated', ADMIN, 'service:cov-old-svc']]],
    ['service disabled', () => b.cliOk('service', 'disable', 'cov-old-svc'), [['service.disabled', ADMIN, 'service:cov-old-svc']]],
    ['agent secret rotated', () => { secrets.push(b.cliOk('agent', 'rotate-secret', 'cov-agent', '--json').json.client_secret); },
      [['agent.secret_rotated', ADMIN, agentCtx]]],
    ['agent disabled', () => b.cliOk('agent', 'disable', 'cov-agent'), [['agent.disabled', ADMIN, agentCtx]]],
  ];
  for (const [name, action, expected] of steps) {
    await expectEvents(name, action, expected);
  }
});

// The event types the broker can write: every 'a.b' or "a.b" string
// literal in broker/*.c, less the few that name something else.
const NOT_EVENT_TYPES = new Map([
  ['index.html', 'a file of the approver page'],
  ['token.introspected', 'a log line only (the audit event is token.used)'],
  ['client.authentication_failed', 'a log line only (the audit event is client.auth_failed or service.auth_failed)'],
  ['token.revoked_cascade', 'a log line only (each token revoked writes token.revoked)'],
  ['approval.partially_approved', 'a webhook event only (the audit event of each approval is approval.approved)'],
  ['tls.certificate_loaded', 'a log line only'],
  ['tls.reload_failed', 'a log line only'],
]);

function eventTypesInSource() {
  const dir = join(ROOT, 'broker');
  const types = new Set();
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.c'))) {
    const src = readFileSync(join(dir, f), 'utf8').split('\n')
      .filter((l) => !l.startsWith('#include')).join('\n');
    for (const m of src.matchAll(/(["'])([a-z]+\.[a-z_]+)\1/g)) {
      if (!NOT_EVENT_TYPES.has(m[2])) types.add(m[2]);
    }
  }
  return types;
}

test('every event type in the source is produced and asserted above', () => {
  const inSource = eventTypesInSource();
  // A sanity check of the reader itself.
  for (const t of ['token.issued', 'token.used', 'approval.approved', 'key.retired', 'rate.limited']) {
    assert.ok(inSource.has(t), t);
  }
  const missing = [...inSource].filter((t) => !asserted.has(t)).sort();
  assert.deepEqual(missing, [], 'event types with no path in the coverage table');
  // And nothing was written that the reader did not find.
  const written = b.sql('SELECT DISTINCT type FROM audit_events ORDER BY 1').map((r) => r[0]);
  assert.deepEqual(written.filter((t) => !inSource.has(t)), []);
  assert.deepEqual(written, [...inSource].sort());
  // And each is documented.
  const doc = readFileSync(join(ROOT, 'docs', 'audit.md'), 'utf8');
  assert.deepEqual([...inSource].filter((t) => !doc.includes(`\`${t}\``)), [], 'event types missing from docs/audit.md');
});

test('no audit field holds a token, a secret or key material', () => {
  assert.ok(secrets.length >= 12);
  const rows = b.sql("SELECT row_to_json(e)::text FROM audit_events e");
  const dump = rows.map((r) => r[0]).join('\n');
  for (const s of secrets) {
    assert.ok(s && !dump.includes(s), 'a secret or token is in the audit log');
    // Nor any signature of a token.
    const parts = s.split('.');
    if (parts.length === 3) assert.ok(!dump.includes(parts[2]));
  }
  assert.ok(!/PRIVATE KEY|"d":/.test(dump), 'key material in the audit log');
  assert.ok(!dump.includes('not.a.proof') && !dump.includes('not-a-token'), 'offered credentials in the audit log');
  assert.ok(!b.logs.includes(secrets[0]));
});
