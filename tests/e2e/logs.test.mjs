// End-to-end: the broker's stderr is one JSON object per line. Every
// request gets a line with its X-Request-Id, every audit-worthy event its
// own line carrying the same request id, no secret or token ever appears,
// and log_level filters.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
let b;
let agent;
let svc;
let approverKey;
const secrets = [];

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1', COUNTERSIGN_LOG_LEVEL: 'info' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('logged');
  b.cliOk('grant', 'add', 'logged', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'logged', 'forum:post', '--audience', AUD);
  const s = b.cliOk('service', 'add', 'forum', '--audience', AUD, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
  approverKey = b.cliOk('approver', 'add', 'ann', '--groups', 'ops', '--json').json.api_key;
  secrets.push(agent.secret, svc.secret, approverKey,
    readFileSync(b.env.COUNTERSIGN_MASTER_KEY_FILE, 'utf8').trim());
});

after(async () => {
  await b.stop();
});

// The parsed log lines so far; fails on any line that is not a JSON object.
function lines(logs = b.logs) {
  return logs.split('\n').filter((l) => l !== '').map((l) => {
    let o;
    assert.doesNotThrow(() => { o = JSON.parse(l); }, `not JSON: ${l}`);
    assert.equal(typeof o, 'object');
    assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level), l);
    assert.equal(typeof o.msg, 'string', l);
    return o;
  });
}

// Wait until the request line of id is written (completed callback).
async function requestLine(id) {
  for (let i = 0; i < 100; i++) {
    const l = lines().filter((o) => o.msg === 'request' && o.request_id === id);
    if (l.length > 0) {
      assert.equal(l.length, 1, `one request line for ${id}`);
      return l[0];
    }
    await sleep(20);
  }
  assert.fail(`no request line for ${id}`);
}

const events = (name, id) => lines().filter((o) => o.event === name && (id === undefined || o.request_id === id));

async function approverPost(path, body) {
  const r = await fetch(`${b.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, json: await r.json() };
}

test('request lines and event lines share the X-Request-Id of their request', async () => {
  const tokens = [];
  const t = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: agent });
  assert.equal(t.status, 200);
  tokens.push(t.json.access_token);
  const tid = t.headers.get('x-request-id');
  assert.match(tid, /^[0-9a-f]{16}$/);
  const { jti } = decodeJwt(t.json.access_token).payload;
  const rl = await requestLine(tid);
  assert.equal(rl.endpoint, '/oauth2/token');
  assert.equal(rl.path, '/oauth2/token');
  assert.equal(rl.method, 'POST');
  assert.equal(rl.status, 200);
  assert.equal(typeof rl.duration_ms, 'number');
  assert.equal(rl.agent, 'logged');
  assert.equal(rl.jti, jti);
  const [issued] = events('token.issued', tid);
  assert.ok(issued, 'a token.issued line with the request id');
  assert.deepEqual([issued.level, issued.agent, issued.jti, issued.scope], ['info', 'logged', jti, 'forum:read']);

  // A refusal.
  const d = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:post', resource: AUD }, { auth: { ...agent, method: 'post' } });
  assert.equal(d.status, 400);
  const did = d.headers.get('x-request-id');
  assert.equal((await requestLine(did)).status, 400);
  assert.equal(events('token.denied', did)[0].reason, 'write_scope_needs_approval');

  // Step-up: requested, approved on the approver API, collected.
  const ask = await b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'log me' }, { auth: agent });
  const aid = ask.json.auth_req_id;
  assert.equal(events('approval.requested', ask.headers.get('x-request-id'))[0].approval, aid);
  const ok = await approverPost(`/v1/approvals/${aid}/approve`, {});
  assert.equal(ok.status, 200);
  const okl = await requestLine(ok.headers.get('x-request-id'));
  assert.equal(okl.endpoint, '/v1/approvals/');
  assert.equal(okl.approver, 'ann');
  const [approved] = events('approval.approved', ok.headers.get('x-request-id'));
  assert.deepEqual([approved.approval, approved.approver, approved.decided], [aid, 'ann', true]);
  await sleep(1100);
  const c = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: aid }, { auth: agent });
  assert.equal(c.status, 200, c.text);
  tokens.push(c.json.access_token);
  assert.equal(events('token.issued', c.headers.get('x-request-id'))[0].jti, decodeJwt(c.json.access_token).payload.jti);

  // Introspection, revocation, a failed authentication, an unknown path.
  const i = await b.post('/oauth2/introspect', { token: tokens[0] }, { auth: svc });
  const [used] = events('token.introspected', i.headers.get('x-request-id'));
  assert.deepEqual([used.service, used.jti, used.active], ['forum', jti, true]);
  const r = await b.post('/oauth2/revoke', { token: tokens[0] }, { auth: agent });
  assert.equal(events('token.revoked', r.headers.get('x-request-id'))[0].jti, jti);
  const wrong = 'WRONG-' + agent.secret.slice(6).split('').reverse().join('');
  secrets.push(wrong);
  const f = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: { id: agent.id, secret: wrong } });
  assert.equal(f.status, 401);
  const [failed] = events('client.authentication_failed', f.headers.get('x-request-id'));
  assert.equal(failed.level, 'warn');
  assert.equal((await requestLine(f.headers.get('x-request-id'))).status, 401);
  const n = await b.get('/no/such/path');
  assert.equal((await requestLine(n.headers.get('x-request-id'))).endpoint, 'unmatched');

  // Every line naming a request belongs to one the broker answered.
  const answered = new Set(lines().filter((o) => o.msg === 'request').map((o) => o.request_id));
  for (const o of lines()) if (o.request_id !== undefined) assert.ok(answered.has(o.request_id), JSON.stringify(o));

  // No secret, key or token, whole or in part, anywhere in the log.
  for (const s of secrets) assert.ok(!b.logs.includes(s), 'a secret reached the log');
  for (const tok of tokens) {
    const [h, p, sig] = tok.split('.');
    assert.ok(!b.logs.includes(`${h}.${p}`) && !b.logs.includes(sig), 'a token reached the log');
  }
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(b.logs), 'something JWT-shaped reached the log');
  assert.ok(!/client_secret|authorization":/i.test(b.logs));
});

test('log_level=warn keeps warnings and drops info lines', async () => {
  const w = await b.sibling({ COUNTERSIGN_LOG_LEVEL: 'warn' });
  try {
    const t = await w.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: agent });
    assert.equal(t.status, 200);
    const f = await w.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: { id: agent.id, secret: 'not-the-secret' } });
    assert.equal(f.status, 401);
    await sleep(200);
    const all = lines(w.logs);
    assert.ok(all.some((o) => o.event === 'client.authentication_failed' && o.request_id === f.headers.get('x-request-id')),
      'the warning is written');
    assert.deepEqual(all.filter((o) => o.level === 'info' || o.level === 'debug'), []);
  } finally {
    await w.stop();
  }
});
