// End-to-end: step-up approval of write scopes. An agent asks through
// bc-authorize, human approvers decide through the approver API, and the
// agent collects exactly one token through the CIBA grant.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import * as jose from 'jose';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
const XG = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
let b;
let agent;
let other;
let alice;
let bob;
let carol;
let owner;
let outsider;
const hooks = [];
// Every delivery attempt the receiver saw: its raw body and the status it
// answered.
const attempts = [];
// The raw body of every delivery attempt to any receiver.
const bodies = [];
// binding_message -> how many more deliveries of its approval.requested
// event the receiver refuses with a 500.
const refusals = new Map();
// Every access token the tests collected, to look for in webhook bodies.
const issued = [];
let hookServer;

before(async () => {
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      bodies.push(body);
      const hook = JSON.parse(body);
      const left = refusals.get(hook.data.binding_message) ?? 0;
      attempts.push({ at: Date.now(), hook, body, status: left > 0 ? 500 : 200 });
      if (left > 0) {
        refusals.set(hook.data.binding_message, left - 1);
        res.statusCode = 500;
        res.end('busy');
        return;
      }
      hooks.push(hook);
      res.end('ok');
    });
  });
  await new Promise((r) => hookServer.listen(0, '127.0.0.1', r));
  b = await Broker.start({
    env: {
      COUNTERSIGN_POLL_INTERVAL: '1',
      COUNTERSIGN_WEBHOOK_URL: `http://127.0.0.1:${hookServer.address().port}/hook`,
    },
  });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop', '--approver-group', 'forum-mods', '--max-ttl', '10m');
  b.cliOk('scope', 'add', 'forum:delete', '--kind', 'write', '--no-require-dpop', '--approvals', '2', '--approver-group', 'forum-mods');
  b.cliOk('scope', 'add', 'forum:pin', '--kind', 'write', '--no-require-dpop', '--owner-may-approve');
  agent = b.agent('writer', '--owner', 'dana@example.com');
  other = b.agent('other-agent');
  for (const a of ['writer', 'other-agent']) {
    for (const s of ['forum:read', 'forum:post', 'forum:delete', 'forum:pin']) {
      b.cliOk('grant', 'add', a, s, '--audience', AUD);
    }
  }
  const approver = (name, groups, ...extra) =>
    b.cliOk('approver', 'add', name, '--groups', groups, '--json', ...extra).json.api_key;
  alice = approver('alice', 'forum-mods');
  bob = approver('bob', 'forum-mods,ops');
  carol = approver('carol', 'forum-mods');
  owner = approver('dana', 'forum-mods', '--email', 'dana@example.com');
  outsider = approver('eve', 'finance');
});

after(async () => {
  await b.stop();
  hookServer.close();
});

const digest = (body) => 'sha256:' + createHash('sha256').update(body).digest('hex');

async function ask(extra = {}, who = agent, broker = b) {
  const r = await broker.post('/oauth2/bc-authorize', {
    scope: 'forum:read forum:post',
    resource: AUD,
    binding_message: 'Post the answer to thread 42 that the user asked for',
    ...extra,
  }, { auth: who });
  return r;
}

async function approverCall(key, method, path, body, broker = b) {
  const headers = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${broker.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, headers: r.headers };
}

const approve = (key, id, body = {}) => approverCall(key, 'POST', `/v1/approvals/${id}/approve`, body);
const deny = (key, id, body = { reason: 'not now' }) => approverCall(key, 'POST', `/v1/approvals/${id}/deny`, body);
async function collect(id, who = agent, extra = {}, broker = b) {
  const r = await broker.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id, ...extra }, { auth: who });
  if (r.json && r.json.access_token) issued.push(r.json.access_token);
  return r;
}

// The delivered webhooks of one event about one request, once n of them
// have arrived (or what there is after 5 s).
async function hooksFor(event, id, n = 1, seen = hooks) {
  let found = [];
  for (let i = 0; i < 50; i++) {
    found = seen.filter((h) => h.event === event && h.data.id === id);
    if (found.length >= n) break;
    await sleep(100);
  }
  return found;
}

// Token rows and token.issued events so far: unchanged where nothing was minted.
function minted() {
  return b.sql(`SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM audit_events WHERE type = 'token.issued')`)[0].join(' ');
}

// A webhook receiver that holds every delivery unanswered until release(),
// then answers them and every later one at once (seen: what it got).
async function hangingReceiver() {
  const held = [];
  const seen = [];
  let hanging = true;
  const release = () => {
    hanging = false;
    for (const h of held.splice(0)) {
      seen.push(JSON.parse(h.body));
      h.res.end('ok');
    }
  };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      bodies.push(body);
      if (hanging) held.push({ res, body });
      else {
        seen.push(JSON.parse(body));
        res.end('ok');
      }
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const close = () => {
    release();
    server.closeAllConnections();
    server.close();
  };
  return { held, seen, release, close, url: `http://127.0.0.1:${server.address().port}/hook` };
}

function auditCount(type, id) {
  return Number(b.sql(`SELECT count(*) FROM audit_events WHERE type = '${type}' AND subject = 'approval:${id}'`)[0][0]);
}

test('the whole flow: request, pending, approve, collect once, second collect fails', async () => {
  const preview = 'The answer is to restart the indexer.';
  const details = JSON.stringify([{ type: 'forum_post', action_digest: digest(preview), preview, thread: 42 }]);
  const r = await ask({ authorization_details: details, requested_ttl: '120' });
  assert.equal(r.status, 200, r.text);
  assert.match(r.json.auth_req_id, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(r.json.expires_in, 600);
  assert.equal(r.json.interval, 1);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  const id = r.json.auth_req_id;

  let p = await collect(id);
  assert.equal(p.status, 400);
  assert.equal(p.json.error, 'authorization_pending');

  const list = await approverCall(alice, 'GET', '/v1/approvals');
  assert.equal(list.status, 200);
  const item = list.json.approvals.find((x) => x.id === id);
  assert.ok(item, 'the request is listed for an approver of its group');
  assert.equal(item.state, 'pending');
  assert.equal(item.agent, 'writer');
  assert.equal(item.owner, 'dana@example.com');
  assert.deepEqual(item.scopes, [{ name: 'forum:read', kind: 'read' }, { name: 'forum:post', kind: 'write' }]);
  assert.equal(item.audience, AUD);
  assert.equal(item.ttl, 120);
  assert.equal(item.binding_message, 'Post the answer to thread 42 that the user asked for');
  assert.equal(item.authorization_details[0].action_digest, digest(preview));
  assert.equal(item.authorization_details[0].preview, preview);
  assert.ok(item.expires_in > 590);
  assert.match(item.params_hash, /^[A-Za-z0-9_-]{43}$/);
  // An approver from another group does not see it.
  const elsewhere = await approverCall(outsider, 'GET', '/v1/approvals');
  assert.ok(!elsewhere.json.approvals.some((x) => x.id === id));

  const a = await approve(alice, id, { reason: 'looks right', params_hash: item.params_hash });
  assert.equal(a.status, 200, JSON.stringify(a.json));
  assert.equal(a.json.state, 'approved');
  assert.equal(a.json.decisions[0].approver, 'alice');

  await sleep(1100);
  const t = await collect(id);
  assert.equal(t.status, 200, t.text);
  assert.equal(t.json.token_type, 'Bearer');
  assert.equal(t.json.scope, 'forum:read forum:post');
  assert.equal(t.json.expires_in, 120);
  const JWKS = jose.createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`));
  const { payload } = await jose.jwtVerify(t.json.access_token, JWKS, { issuer: b.url, audience: AUD, typ: 'at+jwt' });
  assert.equal(payload.sub, 'writer');
  assert.equal(payload.scope, 'forum:read forum:post');
  assert.deepEqual(payload.approval, { id, approvers: ['alice'] });
  assert.deepEqual(payload.authorization_details, JSON.parse(details));
  assert.equal(payload.exp - payload.iat, 120);
  // The lifetime starts at collection.
  assert.ok(Math.abs(payload.iat - Date.now() / 1000) < 3);

  const again = await collect(id);
  assert.equal(again.status, 400);
  assert.equal(again.json.error, 'invalid_grant');
  assert.equal(again.json.access_token, undefined);
  // A consumed request takes no more decisions, from anybody.
  for (const late of [await approve(bob, id, { reason: 'late' }), await deny(carol, id, { reason: 'too late' })]) {
    assert.equal(late.status, 409, JSON.stringify(late.json));
    assert.equal(late.json.error, 'conflict');
    assert.match(late.json.error_description, /already consumed/);
  }
  assert.equal(auditCount('approval.denied', id), 0);
  assert.equal(b.sql(`SELECT count(*) FROM approval_decisions WHERE request_id = '${id}'`)[0][0], '1');

  const rows = b.sql(`SELECT approval_id, max_uses FROM tokens WHERE jti = '${payload.jti}'`);
  assert.deepEqual(rows, [[id, '1']]);
  assert.equal(b.sql(`SELECT state, token_jti FROM approval_requests WHERE id = '${id}'`)[0].join(), `consumed,${payload.jti}`);
  for (const type of ['approval.requested', 'approval.approved', 'approval.consumed']) {
    assert.equal(auditCount(type, id), 1, type);
  }
  const [[actor]] = b.sql(`SELECT actor FROM audit_events WHERE type = 'approval.approved' AND subject = 'approval:${id}'`);
  assert.equal(actor, 'approver:alice');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.issued' AND jti = '${payload.jti}'
                      AND details->>'approval' = '${id}'`)[0][0], '1');
});

test('polling faster than the interval gets slow_down', async () => {
  const { json: { auth_req_id: id } } = await ask();
  let r = await collect(id);
  assert.equal(r.json.error, 'authorization_pending');
  r = await collect(id);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'slow_down');
  // The interval grew by 5 s, as CIBA requires.
  assert.equal(b.sql(`SELECT poll_interval FROM approval_requests WHERE id = '${id}'`)[0][0], '6');
});

test('deny ends the request: access_denied, and no further decisions', async () => {
  const { json: { auth_req_id: id } } = await ask();
  let d = await deny(alice, id, {});
  assert.equal(d.status, 400, 'a denial needs a reason');
  d = await deny(alice, id, { reason: 'the thread is locked' });
  assert.equal(d.status, 200);
  assert.equal(d.json.state, 'denied');
  const r = await collect(id);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'access_denied');
  const late = await approve(bob, id);
  assert.equal(late.status, 409);
  assert.equal(late.json.error, 'conflict');
  assert.equal(auditCount('approval.denied', id), 1);
  const [[reason]] = b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'approval.denied' AND subject = 'approval:${id}'`);
  assert.equal(reason, 'the thread is locked');
});

test('requests expire: expired_token for the agent, 409 for approvers, audited', async () => {
  const { json } = await ask({ requested_expiry: '1' });
  assert.equal(json.expires_in, 1);
  await sleep(1300);
  const r = await collect(json.auth_req_id);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'expired_token');
  const a = await approve(alice, json.auth_req_id);
  assert.equal(a.status, 409);
  assert.equal(auditCount('approval.expired', json.auth_req_id), 1);
  // An approved request that is not collected in time expires too.
  const second = (await ask({ requested_expiry: '2' })).json.auth_req_id;
  assert.equal((await approve(alice, second)).status, 200);
  await sleep(2300);
  assert.equal((await collect(second)).json.error, 'expired_token');
  // The sweeper records expiry without anybody polling.
  const third = (await ask({ requested_expiry: '1' })).json.auth_req_id;
  let state;
  for (let i = 0; i < 40; i++) {
    [[state]] = b.sql(`SELECT state FROM approval_requests WHERE id = '${third}'`);
    if (state === 'expired') break;
    await sleep(200);
  }
  assert.equal(state, 'expired');
  assert.equal(auditCount('approval.expired', third), 1);
});

test('a quorum of 2 needs two distinct approvers', async () => {
  const { json: { auth_req_id: id } } = await ask({ scope: 'forum:delete' });
  let a = await approve(alice, id, { reason: 'spam' });
  assert.equal(a.status, 200);
  assert.equal(a.json.state, 'pending');
  assert.equal(a.json.approvals, 1);
  assert.equal(a.json.approvals_required, 2);
  a = await approve(alice, id, { reason: 'again' });
  assert.equal(a.status, 409, 'the same approver cannot count twice');
  assert.equal((await collect(id)).json.error, 'authorization_pending');
  a = await approve(bob, id, { reason: 'agreed' });
  assert.equal(a.status, 200);
  assert.equal(a.json.state, 'approved');
  const t = await collect(id);
  assert.equal(t.status, 200, t.text);
  assert.deepEqual(decodeJwt(t.json.access_token).payload.approval.approvers, ['alice', 'bob']);
});

test('a deny by any authorised approver ends a quorum request', async () => {
  const { json: { auth_req_id: id } } = await ask({ scope: 'forum:delete' });
  assert.equal((await approve(alice, id)).status, 200);
  const d = await deny(carol, id, { reason: 'not spam' });
  assert.equal(d.json.state, 'denied');
  assert.equal((await collect(id)).json.error, 'access_denied');
});

test('approvers outside the group get 403; the owner only where the scope allows', async () => {
  const { json: { auth_req_id: id } } = await ask();
  let r = await approve(outsider, id);
  assert.equal(r.status, 403);
  assert.equal(r.json.error, 'forbidden');
  r = await approverCall(outsider, 'GET', `/v1/approvals/${id}`);
  assert.equal(r.status, 403);
  r = await approve(owner, id);
  assert.equal(r.status, 403);
  assert.match(r.json.error_description, /own/);
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'pending');
  // forum:pin lets owners approve (and has no group).
  const pin = (await ask({ scope: 'forum:pin' })).json.auth_req_id;
  r = await approve(owner, pin);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.state, 'approved');
  // Anyone may approve a scope without a group, but not the owner of a
  // mixed request where one scope forbids it.
  const mixed = (await ask({ scope: 'forum:pin forum:post' })).json.auth_req_id;
  assert.equal((await approve(owner, mixed)).status, 403);
});

test('approvers may narrow scopes and lifetime, never widen', async () => {
  const { json: { auth_req_id: id } } = await ask({ requested_ttl: '300' });
  let r = await approve(alice, id, { scope: 'forum:post forum:delete' });
  assert.equal(r.status, 400);
  r = await approve(alice, id, { ttl: 301 });
  assert.equal(r.status, 400);
  r = await approve(alice, id, { scope: '' });
  assert.equal(r.status, 400);
  r = await approve(alice, id, { scope: 'forum:post', ttl: 60, reason: 'only the post, briefly' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.deepEqual(r.json.approved_scopes, ['forum:post']);
  assert.equal(r.json.approved_ttl, 60);
  await sleep(1000);
  const t = await collect(id);
  assert.equal(t.status, 200);
  assert.equal(t.json.scope, 'forum:post');
  assert.equal(t.json.expires_in, 60);
  const [[narrowed]] = b.sql(`SELECT details->>'narrowed_scope' FROM audit_events
                              WHERE type = 'approval.approved' AND subject = 'approval:${id}'`);
  assert.equal(narrowed, 'forum:post');
});

test('the approval is bound to the parameters the approver saw', async () => {
  const { json: { auth_req_id: id } } = await ask();
  let r = await approve(alice, id, { params_hash: 'A'.repeat(43) });
  assert.equal(r.status, 409);
  assert.match(r.json.error_description, /params_hash/);
  r = await approve(alice, id, {});
  assert.equal(r.status, 200);
  await sleep(1000);
  // Collecting with other parameters fails and burns nothing.
  let t = await collect(id, agent, { scope: 'forum:read forum:post forum:delete' });
  assert.equal(t.status, 400);
  assert.equal(t.json.error, 'invalid_grant');
  t = await collect(id, agent, { resource: 'https://elsewhere.example' });
  assert.equal(t.json.error, 'invalid_grant');
  t = await collect(id, agent, { scope: 'forum:post forum:read', resource: AUD });
  assert.equal(t.status, 200, t.text);
});

test('grants are re-checked at collection', async () => {
  const a = b.agent('regrant');
  b.cliOk('grant', 'add', 'regrant', 'forum:post', '--audience', AUD);
  const id = (await ask({ scope: 'forum:post' }, a)).json.auth_req_id;
  assert.equal((await approve(alice, id)).status, 200);
  b.cliOk('grant', 'revoke', 'regrant', 'forum:post', '--audience', AUD);
  const t = await collect(id, a);
  assert.equal(t.status, 400);
  assert.equal(t.json.error, 'invalid_grant');
  assert.match(t.json.error_description, /no longer granted/);
  assert.equal(b.sql(`SELECT count(*) FROM tokens WHERE approval_id = '${id}'`)[0][0], '0');
});

test('a disabled approver is locked out at once, and their approvals stop counting', async () => {
  const key = b.cliOk('approver', 'add', 'frank', '--groups', 'forum-mods', '--json').json.api_key;
  const id = (await ask()).json.auth_req_id;
  assert.equal((await approve(key, id)).status, 200);
  b.cliOk('approver', 'disable', 'frank');
  const r = await approverCall(key, 'GET', '/v1/approvals');
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate'), /^Bearer /);
  await sleep(1000);
  const t = await collect(id);
  assert.equal(t.status, 400);
  assert.equal(t.json.error, 'invalid_grant');
});

test('approver authentication: no key, wrong key, agent credentials', async () => {
  for (const auth of [undefined, 'Bearer ' + 'x'.repeat(43), 'Bearer short',
    'Basic ' + Buffer.from(`${agent.id}:${agent.secret}`).toString('base64'), `Bearer ${agent.secret}`]) {
    const r = await fetch(`${b.url}/v1/approvals`, { headers: auth ? { authorization: auth } : {} });
    assert.equal(r.status, 401, String(auth));
    assert.equal((await r.json()).error, 'invalid_token');
  }
  const failures = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'approver.auth_failed'")[0][0]);
  assert.ok(failures >= 5);
});

test('only a peppered hash of an approver key is stored, never the key', async () => {
  const first = b.cliOk('approver', 'add', 'grace', '--groups', 'forum-mods', '--json').json.api_key;
  const key = b.cliOk('approver', 'rotate-key', 'grace', '--json').json.api_key;
  for (const k of [first, key]) assert.match(k, /^[A-Za-z0-9_-]{43}$/);
  assert.equal((await approverCall(key, 'GET', '/v1/approvals')).status, 200, 'the key works');
  assert.equal((await approverCall(first, 'GET', '/v1/approvals')).status, 401, 'the rotated key does not');
  const [[len, hex]] = b.sql("SELECT octet_length(key_hash), encode(key_hash, 'hex') FROM approvers WHERE name = 'grace'");
  assert.equal(len, '32');
  // Not the key's bytes, and not a plain SHA-256 of it that a stolen
  // database would let anyone check guesses against.
  assert.notEqual(hex, Buffer.from(key, 'base64url').toString('hex'));
  assert.notEqual(hex, createHash('sha256').update(key).digest('hex'));
  const dumps = [
    b.sql("SELECT string_agg(a::text, '') FROM approvers a")[0][0],
    b.sql("SELECT string_agg(e::text, '') FROM audit_events e")[0][0],
    b.logs,
  ];
  for (const k of [first, key, alice, bob, carol, owner, outsider]) {
    // bytea columns print as hex: look for the key's text and its bytes.
    const forms = [k, Buffer.from(k).toString('hex'), Buffer.from(k, 'base64url').toString('hex')];
    for (const dump of dumps) {
      for (const form of forms) assert.ok(!dump.includes(form), 'an approver key is stored or logged');
    }
  }
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE subject = 'approver:grace'
                      AND type IN ('approver.created', 'approver.key_rotated')`)[0][0], '2');
});

test('write scopes never come from client_credentials; the error points to bc-authorize', async () => {
  const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:post', resource: AUD }, { auth: agent });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.match(r.json.error_description, /bc-authorize/);
});

test('no path mints a write-scoped token without a consumed approval', async () => {
  // Every token carrying a write scope must name an approval consumed for it.
  const [[bad]] = b.sql(`SELECT count(*) FROM tokens t WHERE EXISTS (
      SELECT 1 FROM scopes s WHERE s.name = ANY(t.scopes) AND s.kind <> 'read')
    AND NOT EXISTS (SELECT 1 FROM approval_requests r WHERE r.id = t.approval_id
      AND r.state = 'consumed' AND r.token_jti = t.jti)`);
  assert.equal(bad, '0');
  const [[total]] = b.sql(`SELECT count(*) FROM tokens t WHERE EXISTS (
      SELECT 1 FROM scopes s WHERE s.name = ANY(t.scopes) AND s.kind <> 'read')`);
  assert.ok(Number(total) >= 4, 'earlier tests minted write tokens');
  // And each endpoint/grant tried with a write scope and no usable approval.
  const id = (await ask()).json.auth_req_id;
  const read = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD },
    { auth: agent });
  assert.equal(read.status, 200, read.text);
  const subject = read.json.access_token;
  const subjectJti = decodeJwt(subject).payload.jti;
  const mintedBefore = minted();
  const exchange = (extra) => b.post('/oauth2/token', {
    grant_type: XG, subject_token: subject, subject_token_type: AT, ...extra,
  }, { auth: agent });
  const attempts = [
    b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:post', resource: AUD }, { auth: agent }),
    b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read forum:post', resource: AUD }, { auth: agent }),
    exchange({ scope: 'forum:read forum:post' }),
    exchange({ scope: 'forum:post', resource: AUD }),
    b.post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: 'x', scope: 'forum:post' }, { auth: agent }),
    collect(id),
    collect(id, other),
  ];
  const results = await Promise.all(attempts);
  for (const r of results) {
    assert.notEqual(r.status, 200, r.text);
    assert.equal(r.json.access_token, undefined);
  }
  // The exchanges got past authentication and the subject token's
  // signature: a read token cannot be widened to a write scope.
  for (const r of results.slice(2, 4)) {
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error, 'invalid_scope');
    assert.equal(r.json.error_description, "scope 'forum:post' is not in the subject token");
  }
  assert.deepEqual(b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'token.denied'
                          AND details->>'grant' = 'token-exchange' AND jti = '${subjectJti}'`),
  [['scope_widened'], ['scope_widened']]);
  assert.equal(minted(), mintedBefore, 'no token row and no token.issued');
});

test('token exchange refuses a subject scope that is a write scope now', async () => {
  // No command turns a read scope into a write scope; an operator editing
  // the table is the one way a live read token comes to carry one. The
  // exchange must then refuse it rather than mint a write token from it.
  b.cliOk('scope', 'add', 'forum:flag', '--kind', 'read');
  b.cliOk('grant', 'add', 'writer', 'forum:flag', '--audience', AUD);
  const read = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:flag', resource: AUD },
    { auth: agent });
  assert.equal(read.status, 200, read.text);
  const subjectJti = decodeJwt(read.json.access_token).payload.jti;
  b.sql("UPDATE scopes SET kind = 'write' WHERE name = 'forum:flag'");
  try {
    await sleep(1100); // past the grant cache (cache_ttl_ms 1000)
    const before = minted();
    for (const scope of ['forum:flag', undefined]) {
      const r = await b.post('/oauth2/token', {
        grant_type: XG, subject_token: read.json.access_token, subject_token_type: AT, scope,
      }, { auth: agent });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error, 'invalid_scope');
      assert.equal(r.json.error_description, "scope 'forum:flag' is a write scope: write scopes are never exchanged");
      assert.equal(r.json.access_token, undefined);
    }
    assert.deepEqual(b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'token.denied'
                            AND details->>'grant' = 'token-exchange' AND jti = '${subjectJti}'`),
    [['write_scope'], ['write_scope']]);
    assert.equal(minted(), before, 'no token row and no token.issued');
  } finally {
    b.sql("UPDATE scopes SET kind = 'read' WHERE name = 'forum:flag'");
  }
});

test('hostile input at bc-authorize and the CIBA grant', async () => {
  const before = Number(b.sql('SELECT count(*) FROM approval_requests')[0][0]);
  const cases = [
    [{ binding_message: undefined }, 'invalid_request'],
    [{ binding_message: '' }, 'invalid_request'],
    [{ binding_message: 'x'.repeat(1025) }, 'invalid_request'],
    [{ binding_message: 'pay \u202Eusd 001' }, 'invalid_request'],
    [{ binding_message: 'line\u0007bell' }, 'invalid_request'],
    // Invisible characters that change what an approver reads.
    [{ binding_message: 'read\u200Bonly' }, 'invalid_request'],
    [{ binding_message: 'next\u0085line' }, 'invalid_request'],
    [{ binding_message: 'ok\u{E0049}\u{E0047}\u{E004E}' }, 'invalid_request'],
    [{ binding_message: 'bom\uFEFF' }, 'invalid_request'],
    [{ binding_message: 'line\u2028break' }, 'invalid_request'],
    [{ authorization_details: JSON.stringify([{ type: 'p', preview: 'a\u2066b' }]) }, 'invalid_request'],
    [{ authorization_details: JSON.stringify([{ type: 'p', preview: 'soft\u00ADhyphen' }]) }, 'invalid_request'],
    [{ authorization_details: '{not json' }, 'invalid_request'],
    [{ authorization_details: '{"type":"x"}' }, 'invalid_request'],
    [{ authorization_details: '[]' }, 'invalid_request'],
    [{ authorization_details: '[{"preview":"no type"}]' }, 'invalid_request'],
    [{ authorization_details: '[{"type":"a","type":"b"}]' }, 'invalid_request'],
    [{ authorization_details: '[{"type":"p","action_digest":"md5:abc"}]' }, 'invalid_request'],
    [{ authorization_details: JSON.stringify([{ type: 'p', preview: 'x'.repeat(5000) }]) }, 'invalid_request'],
    [{ authorization_details: '[' + '['.repeat(3000) }, 'invalid_request'],
    [{ scope: 'forum:read' }, 'invalid_scope'],
    [{ scope: 'forum:admin' }, 'invalid_scope'],
    [{ scope: undefined }, 'invalid_scope'],
    [{ resource: 'https://not-granted.example' }, 'invalid_scope'],
    [{ resource: undefined }, 'invalid_target'],
    [{ requested_ttl: '-1' }, 'invalid_request'],
    [{ requested_expiry: 'soon' }, 'invalid_request'],
  ];
  for (const [extra, error] of cases) {
    const r = await ask(extra);
    assert.equal(r.status, 400, JSON.stringify(extra).slice(0, 80));
    assert.equal(r.json.error, error, JSON.stringify(extra).slice(0, 80));
  }
  assert.equal(Number(b.sql('SELECT count(*) FROM approval_requests')[0][0]), before,
    'no approval request for anything refused');
  const bad = await b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'x' },
    { auth: { id: 'writer', secret: 'nope' } });
  assert.equal(bad.status, 401);

  const id = (await ask()).json.auth_req_id;
  for (const [auth_req_id, error] of [
    [undefined, 'invalid_request'], ['', 'invalid_grant'], ['nope', 'invalid_grant'],
    ["' OR 1=1 --", 'invalid_grant'], ['x'.repeat(500), 'invalid_grant'],
  ]) {
    const r = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id }, { auth: agent });
    assert.equal(r.status, 400, String(auth_req_id));
    assert.equal(r.json.error, error);
  }
  // Another agent cannot collect (or even learn the state of) this request.
  assert.equal((await approve(alice, id)).status, 200);
  await sleep(1000);
  const stolen = await collect(id, other);
  assert.equal(stolen.status, 400);
  assert.equal(stolen.json.error, 'invalid_grant');
  assert.equal(stolen.json.error_description, 'unknown auth_req_id');
  const mine = await collect(id);
  assert.equal(mine.status, 200, 'the rightful agent still collects');
});

test('hostile input on the approver API', async () => {
  const id = (await ask()).json.auth_req_id;
  const raw = (path, body, ct = 'application/json', method = 'POST') => fetch(`${b.url}${path}`, {
    method, headers: { authorization: `Bearer ${alice}`, 'content-type': ct }, body,
  }).then(async (r) => ({ status: r.status, json: await r.json() }));
  for (const [path, body, ct, status] of [
    [`/v1/approvals/${id}/approve`, '{', 'application/json', 400],
    [`/v1/approvals/${id}/approve`, '[]', 'application/json', 400],
    [`/v1/approvals/${id}/approve`, '{"reason":"a","reason":"b"}', 'application/json', 400],
    [`/v1/approvals/${id}/approve`, '{"ttl":"60"}', 'application/json', 400],
    [`/v1/approvals/${id}/approve`, '{"admin":true}', 'application/json', 400],
    [`/v1/approvals/${id}/approve`, 'reason=x', 'application/x-www-form-urlencoded', 415],
    [`/v1/approvals/${id}/approve`, JSON.stringify({ reason: 'x'.repeat(2000) }), 'application/json', 400],
    [`/v1/approvals/${id}/delete`, '{}', 'application/json', 404],
    [`/v1/approvals/..%2f..%2fetc/approve`, '{}', 'application/json', 404],
    ['/v1/approvals/nope/approve', '{}', 'application/json', 404],
    [`/v1/approvals/${id}`, '{}', 'application/json', 405],
  ]) {
    const r = await raw(path, body, ct);
    assert.equal(r.status, status, `${path} ${body}`);
    assert.equal(typeof r.json.error, 'string');
  }
  // GET never decides anything.
  const g = await fetch(`${b.url}/v1/approvals/${id}/approve`, { headers: { authorization: `Bearer ${alice}` } });
  assert.equal(g.status, 405);
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'pending');
  const list = await approverCall(alice, 'GET', '/v1/approvals?state=bogus');
  assert.equal(list.status, 400);
});

test('parallel collections of one approval mint exactly one token', async () => {
  const id = (await ask()).json.auth_req_id;
  assert.equal((await approve(alice, id)).status, 200);
  await sleep(1000);
  const results = await Promise.all(Array.from({ length: 20 }, () => collect(id)));
  const ok = results.filter((r) => r.status === 200);
  assert.equal(ok.length, 1, results.map((r) => r.status).join(','));
  assert.equal(b.sql(`SELECT count(*) FROM tokens WHERE approval_id = '${id}'`)[0][0], '1');
  assert.equal(auditCount('approval.consumed', id), 1);
});

test('approve and deny racing leave one consistent decision', async () => {
  const id = (await ask()).json.auth_req_id;
  const [a, d] = await Promise.all([approve(alice, id), deny(bob, id, { reason: 'race' })]);
  const winners = [a, d].filter((r) => r.status === 200);
  assert.equal(winners.length, 1);
  assert.ok([a, d].some((r) => r.status === 409));
  const [[state]] = b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`);
  assert.equal(state, a.status === 200 ? 'approved' : 'denied');
});

test('the CLI approves and denies through the HTTP API', async () => {
  const id = (await ask()).json.auth_req_id;
  const env = { COUNTERSIGN_APPROVER_KEY: bob, COUNTERSIGN_URL: b.url };
  const run = (...args) => {
    const saved = { ...b.env };
    Object.assign(b.env, env);
    try { return b.cli(...args); } finally { b.env = saved; }
  };
  let r = run('approvals', 'list', '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.json.some((x) => x.id === id));
  r = run('approvals', 'list');
  assert.match(r.stdout, new RegExp(`${id}\\s+pending\\s+agent=writer scopes=forum:read,forum:post\\(WRITE\\)`));
  r = run('approvals', 'approve', id, '--reason', 'ok from the CLI', '--ttl', '90', '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.state, 'approved');
  assert.equal(r.json.approved_ttl, 90);
  r = run('approvals', 'approve', id);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /409/);
  const id2 = (await ask()).json.auth_req_id;
  r = run('approvals', 'deny', id2);
  assert.equal(r.code, 2, 'deny needs --reason');
  r = run('approvals', 'deny', id2, '--reason', 'no');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await collect(id2)).json.error, 'access_denied');
  Object.assign(b.env, { COUNTERSIGN_APPROVER_KEY: '' });
  r = b.cli('approvals', 'list');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /COUNTERSIGN_APPROVER_KEY/);
});

test('webhooks announce new requests and decisions, without secrets', async () => {
  const id = (await ask({ binding_message: 'webhook check <!channel> <https://evil.example|docs> & more' })).json.auth_req_id;
  assert.equal((await deny(carol, id, { reason: 'checked' })).status, 200);
  let requested;
  let decided;
  for (let i = 0; i < 50 && !(requested && decided); i++) {
    requested = hooks.find((h) => h.event === 'approval.requested' && h.data.id === id);
    decided = hooks.find((h) => h.event === 'approval.denied' && h.data.id === id);
    if (!(requested && decided)) await sleep(100);
  }
  assert.ok(requested, 'approval.requested delivered');
  assert.ok(decided, 'approval.denied delivered');
  assert.match(requested.text, /writer/);
  assert.match(requested.text, /webhook check/);
  // Slack-compatible text: what the agent wrote cannot ping a channel or
  // disguise a link; data keeps the message as it was sent.
  assert.ok(requested.text.includes('&lt;!channel&gt; &lt;https://evil.example|docs&gt; &amp; more'), requested.text);
  assert.ok(!/<!channel>|<https:/.test(requested.text));
  assert.equal(requested.data.binding_message, 'webhook check <!channel> <https://evil.example|docs> & more');
  assert.equal(requested.data.agent, 'writer');
  assert.match(decided.text, /no longer pending/);
  const all = JSON.stringify(hooks);
  for (const secret of [agent.secret, other.secret, alice, bob, carol, owner, outsider]) {
    assert.ok(!all.includes(secret));
  }
});

test('webhooks announce approvals, quorum progress and expiry, once each', async () => {
  const one = (await ask()).json.auth_req_id;
  assert.equal((await approve(alice, one, { reason: 'fine' })).status, 200);
  const [approved] = await hooksFor('approval.approved', one);
  assert.ok(approved, 'approval.approved delivered');
  assert.equal(approved.text, `Request ${one} was approved by alice and is no longer pending.`);
  assert.deepEqual(approved.data, { id: one, decision: 'approve', approver: 'alice', pending: false, reason: 'fine' });

  // A quorum: the first approval says more are needed (under an event of
  // its own, so that nothing acting on approval.approved acts early), the
  // last that the request is no longer pending.
  const two = (await ask({ scope: 'forum:delete' })).json.auth_req_id;
  assert.equal((await approve(alice, two)).status, 200);
  const [progress] = await hooksFor('approval.partially_approved', two);
  assert.ok(progress, 'the partial approval delivered');
  assert.deepEqual(hooks.filter((h) => h.event === 'approval.approved' && h.data.id === two), []);
  assert.equal((await approve(bob, two, { reason: 'agreed' })).status, 200);
  const [quorum] = await hooksFor('approval.approved', two);
  assert.ok(quorum, 'the deciding approval delivered');
  assert.equal(progress.text, `Request ${two} was approved by alice (more approvals needed).`);
  assert.deepEqual(progress.data, { id: two, decision: 'approve', approver: 'alice', pending: true, reason: null });
  assert.equal(quorum.text, `Request ${two} was approved by bob and is no longer pending.`);
  assert.deepEqual(quorum.data, { id: two, decision: 'approve', approver: 'bob', pending: false, reason: 'agreed' });

  // Expiry found by the sweeper, nobody polling.
  const three = (await ask({ requested_expiry: '1' })).json.auth_req_id;
  const [swept] = await hooksFor('approval.expired', three);
  assert.ok(swept, 'approval.expired delivered for a pending request');
  assert.equal(swept.text, `Request ${three} expired without being used.`);
  assert.deepEqual(swept.data, { id: three });
  // Expiry found by an approver's late decision. The sweeper just ran (it
  // found the request above) and runs every 2 s: this request expires
  // between two sweeps and the approval comes first.
  const five = (await ask({ requested_expiry: '1' })).json.auth_req_id;
  await sleep(1100);
  const tooLate = await approve(alice, five);
  assert.equal(tooLate.status, 409);
  assert.match(tooLate.json.error_description, /expired/);
  const [refused] = await hooksFor('approval.expired', five);
  assert.ok(refused, 'approval.expired delivered for a request an approver found expired');
  assert.equal(refused.text, `Request ${five} expired without being used.`);
  // Expiry of an approved request found by the agent's late collection
  // (or by the sweeper, whichever comes first).
  const four = (await ask({ requested_expiry: '2' })).json.auth_req_id;
  assert.equal((await approve(alice, four)).status, 200);
  await sleep(2300);
  assert.equal((await collect(four)).json.error, 'expired_token');
  const [late] = await hooksFor('approval.expired', four);
  assert.ok(late, 'approval.expired delivered for an approved request');
  assert.equal(late.text, `Request ${four} expired without being used.`);
  assert.deepEqual(late.data, { id: four });

  // After one more sweep, and a later event through the same in-order
  // queue: a duplicate of any of the above would have arrived by now.
  await sleep(2100);
  const marker = (await ask()).json.auth_req_id;
  assert.equal((await deny(alice, marker, { reason: 'marker' })).status, 200);
  assert.equal((await hooksFor('approval.denied', marker)).length, 1);
  for (const [event, id, n] of [['approval.approved', one, 1], ['approval.partially_approved', two, 1], ['approval.approved', two, 1],
    ['approval.expired', three, 1], ['approval.expired', four, 1], ['approval.expired', five, 1]]) {
    assert.equal(hooks.filter((h) => h.event === event && h.data.id === id).length, n, `${event} ${id}`);
  }
});

test('a webhook delivery is retried: two 500s, then the third attempt delivers it', async () => {
  refusals.set('retry check', 2);
  const id = (await ask({ binding_message: 'retry check' })).json.auth_req_id;
  const delivered = await hooksFor('approval.requested', id);
  assert.equal(delivered.length, 1, 'delivered once');
  const tries = attempts.filter((a) => a.hook.event === 'approval.requested' && a.hook.data.id === id);
  assert.deepEqual(tries.map((a) => a.status), [500, 500, 200]);
  assert.ok(tries.every((a) => a.body === tries[0].body), 'the same body each time');
  // With pauses between the attempts (0.2 s, then 0.4 s).
  assert.ok(tries[2].at - tries[0].at >= 500, `${tries[2].at - tries[0].at} ms`);

  // Bounded: a receiver that keeps failing sees three attempts; the event
  // is then dropped and the next one delivered.
  refusals.set('drop check', 10);
  const dropped = (await ask({ binding_message: 'drop check' })).json.auth_req_id;
  const next = (await ask({ binding_message: 'after the drop' })).json.auth_req_id;
  assert.equal((await hooksFor('approval.requested', next)).length, 1, 'the next event is delivered');
  assert.deepEqual(attempts.filter((a) => a.hook.data.id === dropped).map((a) => a.status), [500, 500, 500]);
  assert.equal(refusals.get('drop check'), 7);
  assert.ok(!hooks.some((h) => h.data.id === dropped));
  assert.match(b.logs, /webhook event dropped after 3 attempts/);
});

test('a webhook receiver that never answers delays no request, and the broker keeps working', async () => {
  // A second broker process on the same database, whose webhook receiver
  // holds every delivery without answering.
  const slow = await hangingReceiver();
  const { held, seen, release } = slow;
  const s = await b.sibling({ COUNTERSIGN_WEBHOOK_URL: slow.url, COUNTERSIGN_WEBHOOK_TIMEOUT: '3' });
  const timed = async (what, call) => {
    const t0 = performance.now();
    const r = await call();
    const ms = performance.now() - t0;
    assert.equal(r.status, 200, `${what}: ${JSON.stringify(r.json)}`);
    assert.ok(ms < 1000, `${what} took ${Math.round(ms)} ms with the webhook receiver hanging`);
    return r;
  };
  try {
    const ids = [(await timed('bc-authorize', () => ask({ binding_message: 'hang check' }, agent, s))).json.auth_req_id];
    for (let i = 0; i < 40 && held.length === 0; i++) await sleep(50);
    assert.equal(held.length, 1, 'the delivery thread is waiting on the receiver');
    for (let i = 0; i < 3; i++) {
      ids.push((await timed('bc-authorize', () => ask({ binding_message: `hang check ${i}` }, agent, s))).json.auth_req_id);
    }
    for (const id of ids) {
      await timed('approve', () => approverCall(alice, 'POST', `/v1/approvals/${id}/approve`, {}, s));
    }
    await sleep(1100);
    const t = await timed('collect', () => collect(ids[0], agent, {}, s));
    assert.ok(t.json.access_token);
    await timed('healthz', () => s.get('/healthz'));
    // All of that happened while the first delivery was still waiting.
    assert.equal(seen.length, 0);
    assert.ok(held.length >= 1);
    // Once the receiver answers, the queued events follow: none was lost.
    release();
    for (const id of ids) {
      assert.ok((await hooksFor('approval.requested', id, 1, seen)).length >= 1, `approval.requested ${id}`);
      assert.ok((await hooksFor('approval.approved', id, 1, seen)).length >= 1, `approval.approved ${id}`);
    }
  } finally {
    release();
    await s.stop();
    slow.close();
  }
});

test('a stopping broker gives queued webhooks webhook_timeout more seconds, then drops the rest', async () => {
  const slow = await hangingReceiver();
  const s = await b.sibling({ COUNTERSIGN_WEBHOOK_URL: slow.url, COUNTERSIGN_WEBHOOK_TIMEOUT: '2' });
  let stopped = false;
  try {
    for (let i = 0; i < 8; i++) {
      assert.equal((await ask({ binding_message: `stop check ${i}` }, agent, s)).status, 200);
    }
    for (let i = 0; i < 40 && slow.held.length === 0; i++) await sleep(50);
    assert.equal(slow.held.length, 1, 'the delivery thread is waiting on the receiver');
    // One 2 s timeout per queued event would hold the exit for 16 s: past
    // the 10 s after which stop() kills the broker (and failed the test),
    // as systemd (TimeoutStopSec=15s) and Kubernetes would.
    const t0 = performance.now();
    stopped = true;
    await s.stop();
    const ms = performance.now() - t0;
    assert.ok(ms < 4500, `the broker took ${Math.round(ms)} ms to stop`);
    const [, n] = s.logs.match(/webhook: (\d+) queued events dropped at shutdown/) || [];
    assert.ok(Number(n) > 0, 'the rest is dropped, and logged');
    assert.equal(new Set(slow.held.map((h) => h.body)).size + Number(n), 8, 'every event tried once or dropped');
  } finally {
    if (!stopped) await s.stop();
    slow.close();
  }
});

test('no webhook body carries a secret, an approver key or a token', () => {
  const events = new Set(attempts.map((a) => a.hook.event));
  for (const e of ['approval.requested', 'approval.approved', 'approval.denied', 'approval.expired']) {
    assert.ok(events.has(e), `the tests delivered ${e}`);
  }
  assert.ok(bodies.length >= 30 && issued.length >= 5, `${bodies.length} bodies, ${issued.length} tokens`);
  const secrets = [agent.secret, other.secret, alice, bob, carol, owner, outsider];
  for (const token of issued) secrets.push(token, token.split('.')[2]);
  for (const body of bodies) {
    for (const secret of secrets) assert.ok(!body.includes(secret), body);
  }
});

test("an agent's audit export includes the decisions about its requests", async () => {
  const id = (await ask()).json.auth_req_id;
  assert.equal((await deny(alice, id, { reason: 'trail check' })).status, 200);
  const lines = b.cliOk('audit', 'export', '--agent', 'writer').stdout.trim().split('\n').map((l) => JSON.parse(l));
  const mine = lines.filter((e) => e.subject === `approval:${id}`).map((e) => e.type);
  assert.deepEqual(mine, ['approval.requested', 'approval.denied']);
  assert.ok(!lines.some((e) => e.actor === 'agent:other-agent'));
});
