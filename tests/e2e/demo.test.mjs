// End-to-end: the forum demo (docs/demo.md). A real broker, the example
// forum (examples/forum/forum.c, built against the verify library of the
// build under test) and the reference agent (examples/forum/agent.sh) play
// the story of `make demo`, then the forum's own refusals are checked one
// by one: RFC 6750 challenges, scope, audience, expiry, the action_digest,
// single use, revocation, sizes, methods, key rotation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import * as jose from 'jose';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { promisify } from 'node:util';
import { Broker, ROOT, BIN, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const WIKI = 'https://wiki.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
const AGENT = join(ROOT, 'examples', 'forum', 'agent.sh');
const SOURCE = join(ROOT, 'examples', 'forum', 'forum.c');
const run = promisify(execFile);

let b;
let agent;
let service;
let aliceKey;
let forum;
let buildDir;
const seenTokens = [];

const digest = (text) => 'sha256:' + createHash('sha256').update(text).digest('hex');

// The forum binary of the build under test (build/forum or build-asan/forum,
// from the Makefile), or compiled here from examples/forum/forum.c when that
// is missing or older than the source.
async function forumBinary() {
  const built = join(dirname(BIN), 'forum');
  if (existsSync(built) && statSync(built).mtimeMs >= statSync(SOURCE).mtimeMs) return built;
  const lib = join(dirname(BIN), 'libcountersign-verify.a');
  buildDir = mkdtempSync(join(tmpdir(), 'cs-forum-'));
  const out = join(buildDir, 'forum');
  const args = ['-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-Werror', '-Wpedantic', '-Wshadow',
    '-Wstrict-prototypes', '-Wmissing-prototypes', '-Wformat=2', '-O1', '-g',
    '-I', join(ROOT, 'include'), '-o', out, SOURCE, lib,
    '-lmicrohttpd', '-ljansson', '-lcrypto', '-lcurl', '-lpthread'];
  if (readFileSync(lib).includes('__asan_')) args.unshift('-fsanitize=address,undefined');
  await run(process.env.CC || 'cc', args);
  return out;
}

// A running forum: {url, proc, logs(), stop()}.
async function startForum(env = {}) {
  const proc = spawn(await forumBinary(), [], {
    env: {
      ...process.env,
      FORUM_LISTEN: '127.0.0.1:0',
      FORUM_ISSUER: b.url,
      FORUM_SERVICE_ID: service.id,
      FORUM_SERVICE_SECRET: service.secret,
      FORUM_LEEWAY: '1',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let logs = '';
  proc.stderr.on('data', (d) => { logs += d.toString(); });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  let port;
  for (let i = 0; i < 200 && port === undefined; i++) {
    const m = logs.match(/"msg":"forum listening".*"port":(\d+)/);
    if (m) port = Number(m[1]);
    else if (proc.exitCode !== null) break;
    else await sleep(50);
  }
  if (port === undefined) {
    throw new Error(`the forum did not start:\n${logs}\nthe broker's log ends:\n${b.logs.slice(-2000)}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    startedAt: Date.now(),
    logs: () => logs,
    lines: () => logs.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l)),
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read', '--max-ttl', '15m');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop', '--approver-group', 'forum-mods', '--max-ttl', '5m');
  b.cliOk('scope', 'add', 'wiki:read', '--kind', 'read');
  const s = b.cliOk('service', 'add', 'forum', '--audience', AUD, '--json').json;
  service = { id: s.client_id, secret: s.client_secret };
  agent = b.agent('forum-agent', '--owner', 'ops@example.com');
  b.cliOk('grant', 'add', 'forum-agent', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'forum-agent', 'forum:post', '--audience', AUD);
  b.cliOk('grant', 'add', 'forum-agent', 'wiki:read', '--audience', WIKI);
  aliceKey = b.cliOk('approver', 'add', 'alice', '--groups', 'forum-mods', '--json').json.api_key;
  forum = await startForum();
});

after(async () => {
  let r;
  if (forum) r = await forum.stop();
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  await b.stop();
  // A crash or a leak report (sanitizer build) fails the file.
  assert.deepEqual(r, { code: 0, sig: null }, forum ? forum.logs().slice(-4000) : '');
});

// ---- helpers ----------------------------------------------------------------

// Run the reference agent; resolves {code, stdout, stderr}.
function agentSh(args, env = {}) {
  return new Promise((resolve) => {
    const p = spawn(AGENT, args, {
      env: {
        ...process.env,
        BROKER_URL: b.url,
        FORUM_URL: forum.url,
        CLIENT_ID: agent.id,
        CLIENT_SECRET: agent.secret,
        POLL_INTERVAL: '1',
        COLLECT_TIMEOUT: '60',
        ...env,
      },
    });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => p.kill('SIGKILL'), 90000);
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout: stdout.trim(), stderr });
    });
  });
}

// The countersign CLI as the approver alice.
function asAlice(...args) {
  const r = spawnSync(BIN, ['approvals', ...args], {
    env: { ...process.env, ...b.env, COUNTERSIGN_APPROVER_KEY: aliceKey, COUNTERSIGN_URL: b.url },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function call(method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token !== undefined) {
    h.authorization = `Bearer ${token}`;
    seenTokens.push(token);
  }
  const init = { method, headers: h, body };
  if (body instanceof ReadableStream) init.duplex = 'half';
  const r = await fetch(forum.url + path, init);
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, challenge: r.headers.get('www-authenticate'), text, json };
}

const post = (token, text, thread = 42) =>
  call('POST', `/threads/${thread}/replies`, { token, body: text, headers: { 'content-type': 'text/plain; charset=utf-8' } });

async function replies() {
  const r = await call('GET', '/threads/42', { token: await readToken() });
  assert.equal(r.status, 200, r.text);
  return r.json.replies;
}

async function readToken(extra = {}) {
  const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD, ...extra }, { auth: agent });
  assert.equal(r.status, 200, r.text);
  seenTokens.push(r.json.access_token);
  return r.json.access_token;
}

async function decide(id, decision = 'approve', body = {}) {
  const r = await fetch(`${b.url}/v1/approvals/${id}/${decision}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${aliceKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, await r.text());
}

// A forum:post token alice approved for text (details: override, or null
// for none).
async function writeToken(text, { details, thread = 42, scope = 'forum:post' } = {}) {
  const d = details === undefined
    ? JSON.stringify([{ type: 'forum_post', action_digest: digest(text), preview: text, thread }])
    : details ?? undefined;
  const ask = await b.post('/oauth2/bc-authorize',
    { scope, resource: AUD, binding_message: 'a test post', authorization_details: d }, { auth: agent });
  assert.equal(ask.status, 200, ask.text);
  await decide(ask.json.auth_req_id);
  const t = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: ask.json.auth_req_id }, { auth: agent });
  assert.equal(t.status, 200, t.text);
  seenTokens.push(t.json.access_token);
  return t.json.access_token;
}

// A DPoP proof (RFC 9449) by key pair kp for method and url, bound to
// token through ath; opts override any field.
async function dpopProof(kp, method, url, token, opts = {}) {
  const payload = { htm: method, htu: url, iat: Math.floor(Date.now() / 1000), jti: randomUUID(), ...opts };
  if (token) payload.ath = createHash('sha256').update(token).digest('base64url');
  if (opts.ath === null) delete payload.ath;
  return new jose.CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await jose.exportJWK(kp.publicKey) })
    .sign(kp.privateKey);
}

// A raw request, for what fetch cannot send (repeated headers, bytes that
// are not UTF-8): headers is a list of [name, value] pairs.
function rawRequest(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(forum.url + path);
    const req = httpRequest({ host: u.hostname, port: u.port, method, path: u.pathname, headers: headers.flat() }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, challenge: res.headers['www-authenticate'], json: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const jtiOf = (token) => decodeJwt(token).payload.jti;
const uses = (jti) => b.sql(`SELECT details->>'result' FROM audit_events WHERE type = 'token.used' AND jti = '${jti}' ORDER BY seq`)
  .map((r) => r[0]);

// ---- the story of make demo ------------------------------------------------

const story = {};

test('story 1: the agent reads thread 42 with a read token; the read is introspected and audited', async () => {
  const r = await agentSh(['read']);
  assert.equal(r.code, 0, r.stderr);
  const thread = JSON.parse(r.stdout);
  assert.equal(thread.id, 42);
  assert.match(thread.question, /token/);
  assert.deepEqual(thread.replies, []);
  assert.match(r.stderr, /I read thread 42/);
  const [[n]] = b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.used' AND actor = 'service:forum' AND subject = 'agent:forum-agent' AND details->>'result' = 'active'");
  assert.equal(n, '1');
  const d = await agentSh(['draft']);
  assert.equal(d.code, 0, d.stderr);
  assert.ok(d.stdout.length > 50);
  story.draft = d.stdout;
});

test('story 2: posting with the read token is refused by the forum (403 insufficient_scope)', async () => {
  const t = await agentSh(['token', 'forum:read']);
  assert.equal(t.code, 0, t.stderr);
  const r = await agentSh(['post', t.stdout, story.draft]);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout);
  assert.equal(out.status, 403);
  assert.match(out.www_authenticate, /^Bearer realm="forum", error="insufficient_scope", /);
  assert.match(out.www_authenticate, /scope="forum:post"/);
  assert.equal(out.body.error, 'insufficient_scope');
  // Refused offline: the broker was not even asked.
  assert.deepEqual(uses(jtiOf(t.stdout)), []);
  assert.equal((await replies()).length, 0);
});

test('story 3: a forum:post token without approval is refused by the broker (invalid_scope, bc-authorize)', async () => {
  const r = await agentSh(['token', 'forum:post']);
  assert.equal(r.code, 1);
  const out = JSON.parse(r.stdout);
  assert.equal(out.error, 'invalid_scope');
  assert.match(out.error_description, /\/oauth2\/bc-authorize/);
  const [[n]] = b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.denied' AND actor = 'agent:forum-agent' AND details->>'reason' = 'write_scope_needs_approval'");
  assert.equal(n, '1');
});

test('story 4: the agent asks, alice denies with the CLI: access_denied, no token, no post', async () => {
  const ask = await agentSh(['ask', story.draft]);
  assert.equal(ask.code, 0, ask.stderr);
  const id = ask.stdout;
  assert.match(id, /^[A-Za-z0-9_-]{22}$/);
  const [[details]] = b.sql(`SELECT authorization_details FROM approval_requests WHERE id = '${id}'`);
  assert.deepEqual(JSON.parse(details), [{ type: 'forum_post', action_digest: digest(story.draft), preview: story.draft, thread: 42 }]);
  const waiting = agentSh(['collect', id]);
  await sleep(300);
  const show = asAlice('show', id, '--json');
  assert.equal(show.code, 0, show.stderr);
  assert.equal(JSON.parse(show.stdout).authorization_details[0].preview, story.draft);
  const d = asAlice('deny', id, '--reason', 'not before the incident note');
  assert.equal(d.code, 0, d.stderr);
  const c = await waiting;
  assert.equal(c.code, 3, c.stderr);
  assert.equal(c.stdout, '');
  assert.match(c.stderr, /said no/);
  assert.equal(b.sql(`SELECT count(*) FROM tokens WHERE approval_id = '${id}'`)[0][0], '0');
  assert.equal((await replies()).length, 0);
});

test('story 5: the agent asks again, alice approves with the CLI: exactly one reply, the approved text', async () => {
  const ask = await agentSh(['ask', story.draft]);
  assert.equal(ask.code, 0, ask.stderr);
  const id = ask.stdout;
  const waiting = agentSh(['collect', id]);
  await sleep(300);
  const a = asAlice('approve', id, '--reason', 'matches the runbook');
  assert.equal(a.code, 0, a.stderr);
  const c = await waiting;
  assert.equal(c.code, 0, c.stderr);
  const token = c.stdout;
  seenTokens.push(token);
  const claims = decodeJwt(token).payload;
  assert.equal(claims.scope, 'forum:post');
  assert.deepEqual(claims.approval, { id, approvers: ['alice'] });
  assert.equal(claims.authorization_details[0].action_digest, digest(story.draft));
  const p = await agentSh(['post', token, story.draft]);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(JSON.parse(p.stdout).status, 201);
  const list = await replies();
  assert.equal(list.length, 1);
  assert.equal(list[0].text, story.draft);
  assert.equal(list[0].author, 'forum-agent');
  assert.equal(list[0].approval, id);
  assert.deepEqual(list[0].approved_by, ['alice']);
  assert.equal(list[0].digest, digest(story.draft));
  assert.deepEqual(uses(claims.jti), ['active']);
  story.token = token;
  story.approval = id;
});

test('story 6: the approved token works once and only for the approved text', async () => {
  let r = await agentSh(['post', story.token, story.draft]);
  assert.equal(r.code, 1);
  let out = JSON.parse(r.stdout);
  assert.equal(out.status, 401);
  assert.match(out.www_authenticate, /error="invalid_token"/);
  r = await agentSh(['post', story.token, story.draft + ' And paste the new token here.']);
  out = JSON.parse(r.stdout);
  assert.equal(out.status, 403);
  assert.match(out.www_authenticate, /does not match the approved action_digest/);
  assert.deepEqual(uses(jtiOf(story.token)), ['active', 'used_up']);

  // A second approval, for other text; the agent posts something else.
  const followup = 'Update: the old deploy token is revoked and the build log is gone.';
  const ask = await agentSh(['ask', followup]);
  assert.equal(ask.code, 0, ask.stderr);
  const waiting = agentSh(['collect', ask.stdout]);
  await sleep(300);
  assert.equal(asAlice('approve', ask.stdout, '--reason', 'fine').code, 0);
  const c = await waiting;
  assert.equal(c.code, 0, c.stderr);
  seenTokens.push(c.stdout);
  r = await agentSh(['post', c.stdout, 'Update: all clear, nothing leaked.']);
  out = JSON.parse(r.stdout);
  assert.equal(out.status, 403);
  assert.match(out.www_authenticate, /error="insufficient_scope", error_description="the request body does not match the approved action_digest"/);
  assert.equal(out.body.body_digest, digest('Update: all clear, nothing leaked.'));
  // Refused before introspection: the approval was not spent on it.
  assert.deepEqual(uses(jtiOf(c.stdout)), []);
  const rv = await agentSh(['revoke', c.stdout]);
  assert.equal(rv.code, 0, rv.stderr);
  r = await agentSh(['post', c.stdout, followup]);
  assert.equal(JSON.parse(r.stdout).status, 401, 'revoked');
  assert.deepEqual(uses(jtiOf(c.stdout)), ['revoked']);
  assert.equal((await replies()).length, 1, 'still exactly one reply');
});

test('story 7: the audit trail shows every step and the chain verifies', async () => {
  const lines = b.cliOk('audit', 'export', '--agent', 'forum-agent').stdout.trim().split('\n').map((l) => JSON.parse(l));
  const types = new Set(lines.map((e) => e.type));
  for (const t of ['token.issued', 'token.used', 'token.denied', 'approval.requested', 'approval.consumed', 'token.revoked']) {
    assert.ok(types.has(t), t);
  }
  const trail = lines.filter((e) => e.jti === jtiOf(story.token)).map((e) => e.type);
  assert.deepEqual(trail, ['token.issued', 'approval.consumed', 'token.used', 'token.used']);
  const decisions = ['approval.approved', 'approval.denied'].flatMap((t) =>
    b.cliOk('audit', 'export', '--type', t).stdout.trim().split('\n').map((l) => JSON.parse(l)));
  assert.ok(decisions.every((e) => e.actor === 'approver:alice'));
  assert.equal(decisions.filter((e) => e.type === 'approval.denied').length, 1);
  assert.ok(decisions.some((e) => e.type === 'approval.approved' && e.subject === `approval:${story.approval}`));
  const text = JSON.stringify(lines);
  for (const t of seenTokens) assert.ok(!text.includes(t), 'no token in the audit log');
  const v = b.cli('audit', 'verify');
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /audit chain ok/);
});

test('agent.sh run: the whole legitimate path, with a human approving meanwhile', async () => {
  const before = (await replies()).length;
  const running = agentSh(['run']);
  let pending;
  for (let i = 0; i < 100 && !pending; i++) {
    const l = asAlice('list', '--json');
    pending = JSON.parse(l.stdout || '[]').find((x) => x.agent === 'forum-agent');
    if (!pending) await sleep(100);
  }
  assert.ok(pending, 'the agent asked for approval');
  assert.equal(asAlice('approve', pending.id, '--reason', 'ok').code, 0);
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /accepted my reply/);
  const list = await replies();
  assert.equal(list.length, before + 1);
  assert.equal(list.at(-1).approval, pending.id);
});

test('agent.sh run with DPOP_KEY: a key of its own (openssl, Ed25519), every token bound to it', async () => {
  const keyDir = mkdtempSync(join(tmpdir(), 'cs-agent-key-'));
  const keyFile = join(keyDir, 'agent.pem');
  try {
    const before = (await replies()).length;
    const running = agentSh(['run'], { DPOP_KEY: keyFile });
    let pending;
    for (let i = 0; i < 100 && !pending; i++) {
      const l = asAlice('list', '--json');
      pending = JSON.parse(l.stdout || '[]').find((x) => x.agent === 'forum-agent' && x.state === 'pending');
      if (!pending) await sleep(100);
    }
    assert.ok(pending, 'the agent asked for approval');
    assert.equal(statSync(keyFile).mode & 0o077, 0, 'the key is private');
    const jkt = b.sql(`SELECT dpop_jkt FROM approval_requests WHERE id = '${pending.id}'`)[0][0];
    assert.match(jkt, /^[A-Za-z0-9_-]{43}$/, 'the approval is bound to the agent\'s key');
    assert.equal(asAlice('approve', pending.id, '--reason', 'ok').code, 0);
    const r = await running;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /I made a key of my own/);
    assert.match(r.stderr, /accepted my reply/);
    const list = await replies();
    assert.equal(list.length, before + 1);
    const jti = b.sql(`SELECT token_jti FROM approval_requests WHERE id = '${pending.id}'`)[0][0];
    assert.deepEqual(uses(jti), ['active']);
    // The forum saw the write token with the DPoP scheme and a good proof
    // (it refuses a bound token any other way), and so did every read.
    const posted = forum.lines().filter((l) => l.msg === 'request' && l.jti === jti);
    assert.deepEqual(posted.map((l) => [l.status, l.dpop]), [[201, 'ok']]);
    const reads = forum.lines().filter((l) => l.msg === 'request' && l.method === 'GET' && l.dpop === 'ok');
    assert.ok(reads.length >= 1, 'the read token was bound too');
  } finally {
    rmSync(keyDir, { recursive: true, force: true });
  }
});

// ---- the forum's refusals ---------------------------------------------------

test('forum: no token is 401 with a bare Bearer challenge (RFC 6750 §3.1), and DPoP offered', async () => {
  // fetch joins the two WWW-Authenticate headers with ", ".
  let r = await call('GET', '/threads/42');
  assert.equal(r.status, 401);
  assert.equal(r.challenge, 'Bearer realm="forum", scope="forum:read", DPoP realm="forum", algs="ES256 EdDSA"');
  assert.equal(r.headers.get('cache-control'), 'no-store');
  r = await call('POST', '/threads/42/replies', { body: 'hi' });
  assert.equal(r.status, 401);
  assert.equal(r.challenge, 'Bearer realm="forum", scope="forum:post", DPoP realm="forum", algs="ES256 EdDSA"');
  r = await call('GET', '/threads/42', { headers: { authorization: `Basic ${Buffer.from(`${agent.id}:${agent.secret}`).toString('base64')}` } });
  assert.equal(r.status, 401, 'another scheme counts as no token');
  assert.doesNotMatch(r.challenge, /error=/);
  r = await call('GET', '/threads/42', { headers: { authorization: 'Bearer', 'x-other': '1' } });
  assert.equal(r.status, 401);
});

test('forum: malformed and forged tokens are 401 invalid_token', async () => {
  const good = await readToken();
  const [h, p, s] = good.split('.');
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = decodeJwt(good).payload;
  const cases = {
    'not-a-jwt': /malformed/,
    [`${h}.${p}`]: /malformed/,
    [`${h}.${enc({ ...claims, scope: 'forum:read forum:post' })}.${s}`]: /signature/,
    [`${enc({ alg: 'none', typ: 'at+jwt' })}.${p}.`]: /header|malformed/,
    [`${enc({ alg: 'ES256', typ: 'JWT', kid: decodeJwt(good).header.kid })}.${p}.${s}`]: /header/,
    ['x'.repeat(9000)]: /too large|malformed/,
  };
  for (const [token, why] of Object.entries(cases)) {
    const r = await call('GET', '/threads/42', { token });
    assert.equal(r.status, 401, token.slice(0, 40));
    assert.match(r.challenge, /^Bearer realm="forum", error="invalid_token", error_description="[^"]+"$/);
    assert.match(r.json.error_description, why, token.slice(0, 40));
  }
  // Two Authorization headers cannot be sent with fetch; a tampered
  // payload claiming forum:post cannot post either.
  const r = await post(`${h}.${enc({ ...claims, scope: 'forum:post' })}.${s}`, 'hi');
  assert.equal(r.status, 401);
});

test('forum: a token for another resource is 401 (wrong audience), without asking the broker', async () => {
  const r0 = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'wiki:read', resource: WIKI }, { auth: agent });
  assert.equal(r0.status, 200);
  const r = await call('GET', '/threads/42', { token: r0.json.access_token });
  assert.equal(r.status, 401);
  assert.match(r.challenge, /error="invalid_token", error_description="the token is for another audience"/);
  assert.deepEqual(uses(jtiOf(r0.json.access_token)), []);
});

test('forum: an expired token is 401', async () => {
  // Times are whole seconds (iat is the broker's clock rounded down), so a
  // 1 s token issued late in a second may be dead before the forum's
  // introspection reaches the broker: 2 s leaves at least one.
  const token = await readToken({ requested_ttl: '2' });
  assert.equal((await call('GET', '/threads/42', { token })).status, 200);
  await sleep(3100); // exp <= issuance + 2 s, + the forum's leeway of 1 s (FORUM_LEEWAY)
  const r = await call('GET', '/threads/42', { token });
  assert.equal(r.status, 401);
  assert.match(r.challenge, /error="invalid_token", error_description="the token has expired"/);
});

test('forum: a missing scope is 403 insufficient_scope naming the scope', async () => {
  const w = await writeToken('x');
  let r = await call('GET', '/threads/42', { token: w });
  assert.equal(r.status, 403);
  assert.equal(r.challenge, 'Bearer realm="forum", error="insufficient_scope", error_description="reading needs the forum:read scope", scope="forum:read"');
  assert.deepEqual(uses(jtiOf(w)), [], 'not spent by a refused read');
  r = await post(await readToken(), 'x');
  assert.equal(r.status, 403);
  assert.match(r.challenge, /error="insufficient_scope".*scope="forum:post"/);
  assert.equal(r.json.error, 'insufficient_scope');
});

test('forum: the body must match the approved action_digest (and thread)', async () => {
  const before = (await replies()).length;
  const text = 'Rotate the token; details in the runbook.';
  const w = await writeToken(text);
  let r = await post(w, text + '\n');
  assert.equal(r.status, 403, 'a trailing newline is a different text');
  assert.match(r.challenge, /does not match the approved action_digest/);
  assert.equal(r.json.body_digest, digest(text + '\n'));
  assert.deepEqual(uses(jtiOf(w)), [], 'the refusal did not spend the token');
  r = await post(w, text);
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.reply.text, text);

  // base64url spelling of the digest is accepted too.
  const b64 = 'sha256:' + createHash('sha256').update('base64url digest').digest('base64url');
  const w2 = await writeToken('', { details: JSON.stringify([{ type: 'forum_post', action_digest: b64, preview: 'base64url digest' }]) });
  assert.equal((await post(w2, 'base64url digest')).status, 201);

  // No authorization_details at all, or another type: refused.
  const bare = await writeToken('', { details: null });
  r = await post(bare, 'anything');
  assert.equal(r.status, 403);
  assert.match(r.challenge, /the token approves no forum_post action_digest/);
  const other = await writeToken('', { details: JSON.stringify([{ type: 'wiki_edit', action_digest: digest('x') }]) });
  assert.equal((await post(other, 'x')).status, 403);
  // The right text approved for another thread.
  const elsewhere = await writeToken(text, { thread: 7 });
  r = await post(elsewhere, text);
  assert.equal(r.status, 403);
  assert.match(r.challenge, /the approved reply is for another thread/);
  assert.equal((await replies()).length, before + 2);
});

test('forum: a single-use token is refused the second time (the broker says used_up)', async () => {
  const text = 'One answer, once.';
  const w = await writeToken(text);
  assert.equal((await post(w, text)).status, 201);
  const r = await post(w, text);
  assert.equal(r.status, 401);
  assert.equal(r.challenge, 'Bearer realm="forum", error="invalid_token", error_description="the token is not active: used, revoked, or its agent disabled"');
  assert.deepEqual(uses(jtiOf(w)), ['active', 'used_up']);
  // Concurrent replays: exactly one post gets through.
  const text2 = 'Posted by exactly one of eight requests.';
  const w2 = await writeToken(text2);
  const results = await Promise.all(Array.from({ length: 8 }, () => post(w2, text2)));
  assert.equal(results.filter((x) => x.status === 201).length, 1, results.map((x) => x.status).join());
  assert.equal((await replies()).filter((x) => x.text === text2).length, 1);
});

test('forum: a revoked token is refused (RFC 7009 revocation, then use)', async () => {
  const text = 'Never posted.';
  const w = await writeToken(text);
  const rv = await b.post('/oauth2/revoke', { token: w }, { auth: agent });
  assert.equal(rv.status, 200);
  const r = await post(w, text);
  assert.equal(r.status, 401);
  assert.match(r.challenge, /error="invalid_token"/);
  assert.deepEqual(uses(jtiOf(w)), ['revoked']);
  assert.ok(!(await replies()).some((x) => x.text === text));
  // Read tokens too: the forum introspects every read.
  const rt = await readToken();
  assert.equal((await call('GET', '/threads/42', { token: rt })).status, 200);
  b.cliOk('token', 'revoke', '--', jtiOf(rt));
  assert.equal((await call('GET', '/threads/42', { token: rt })).status, 401);
});

test('forum: the approver must have read the exact text (preview), not only its digest', async () => {
  // An agent shows a harmless preview next to the digest of what it will
  // post. The broker cannot know what a forum_post is, but it tells the
  // approver that the preview is not the hashed content; the forum, which
  // owns the type, refuses the post.
  const harmful = 'Paste your deploy token in this thread so I can check it.';
  const harmless = 'Thanks, I will look into it.';
  const ask = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'a friendly note',
    authorization_details: JSON.stringify([{ type: 'forum_post', action_digest: digest(harmful), preview: harmless, thread: 42 }]),
  }, { auth: agent });
  assert.equal(ask.status, 200, ask.text);
  const shown = JSON.parse(asAlice('show', ask.json.auth_req_id, '--json').stdout);
  assert.deepEqual(shown.preview_checks, [false]);
  const text = asAlice('show', ask.json.auth_req_id).stdout;
  assert.match(text, /preview \(WARNING: NOT the content the digest binds\): Thanks, I will look into it\./);
  // alice approves anyway (she did not read the warning): the forum refuses.
  await decide(ask.json.auth_req_id);
  const t = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: ask.json.auth_req_id }, { auth: agent });
  assert.equal(t.status, 200, t.text);
  const w = t.json.access_token;
  let r = await post(w, harmful);
  assert.equal(r.status, 403);
  assert.match(r.challenge, /error="insufficient_scope", error_description="the approver was not shown this text: the approved preview is not the request body"/);
  r = await post(w, harmless);
  assert.equal(r.status, 403, 'the preview alone does not match the digest either');
  assert.match(r.challenge, /does not match the approved action_digest/);
  assert.deepEqual(uses(jtiOf(w)), [], 'neither refusal spent the token');
  assert.ok(!(await replies()).some((x) => x.text === harmful));
  // A digest without a preview: nobody read the text, so no post.
  const blind = await writeToken('', { details: JSON.stringify([{ type: 'forum_post', action_digest: digest(harmful) }]) });
  r = await post(blind, harmful);
  assert.equal(r.status, 403);
  assert.match(r.challenge, /the approver was not shown this text/);
  // An honest request is marked exact for the approver.
  const honest = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'honest',
    authorization_details: JSON.stringify([{ type: 'forum_post', action_digest: digest(harmless), preview: harmless },
      { type: 'note', preview: 'no digest here' }]),
  }, { auth: agent });
  assert.equal(honest.status, 200, honest.text);
  assert.deepEqual(JSON.parse(asAlice('show', honest.json.auth_req_id, '--json').stdout).preview_checks, [true, null]);
  assert.match(asAlice('show', honest.json.auth_req_id).stdout, /preview \(exact: its SHA-256 is the digest\): Thanks/);
  assert.match(asAlice('show', honest.json.auth_req_id).stdout, /preview \(the agent's description, not checked\): no digest here/);
  // The base64url spelling of the digest counts as exact too.
  const b64 = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'b64',
    authorization_details: JSON.stringify([{ type: 'forum_post', action_digest: 'sha256:' + createHash('sha256').update('ünïcode').digest('base64url'), preview: 'ünïcode' }]),
  }, { auth: agent });
  assert.deepEqual(JSON.parse(asAlice('show', b64.json.auth_req_id, '--json').stdout).preview_checks, [true]);
});

test('forum: a DPoP-bound token needs the DPoP scheme and a fresh proof of its key (RFC 9449)', async () => {
  const key = await jose.generateKeyPair('ES256', { extractable: true });
  const other = await jose.generateKeyPair('ES256', { extractable: true });
  const t = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD },
    { auth: agent, headers: { dpop: await dpopProof(key, 'POST', `${b.url}/oauth2/token`) } });
  assert.equal(t.status, 200, t.text);
  assert.equal(t.json.token_type, 'DPoP');
  const bound = t.json.access_token;
  seenTokens.push(bound);
  const url = `${forum.url}/threads/42`;
  const dpopCall = async (proof, scheme = 'DPoP', token = bound) =>
    call('GET', '/threads/42', { headers: { authorization: `${scheme} ${token}`, ...(proof ? { dpop: proof } : {}) } });

  // A stolen bound token is useless as a bearer token.
  let r = await call('GET', '/threads/42', { token: bound });
  assert.equal(r.status, 401);
  assert.equal(r.challenge, 'DPoP realm="forum", algs="ES256 EdDSA", error="invalid_token", error_description="the token is bound to a key: send it with the DPoP scheme and a proof"');
  r = await dpopCall(null);
  assert.equal(r.status, 401);
  assert.match(r.challenge, /^DPoP realm="forum", algs="ES256 EdDSA", error="invalid_dpop_proof", error_description="a DPoP proof is required"$/);
  const refusals = [
    [await dpopProof(other, 'GET', url, bound), /signed by another key/],
    [await dpopProof(key, 'POST', url, bound), /for another request/],
    [await dpopProof(key, 'GET', `${forum.url}/threads/7`, bound), /for another request/],
    [await dpopProof(key, 'GET', url, 'another token'), /for another token/],
    [await dpopProof(key, 'GET', url, bound, { ath: null }), /for another token/],
    [await dpopProof(key, 'GET', url, bound, { iat: Math.floor(Date.now() / 1000) - 600 }), /not fresh/],
    ['not.a.proof', /invalid/],
  ];
  for (const [proof, why] of refusals) {
    r = await dpopCall(proof);
    assert.equal(r.status, 401, String(why));
    assert.match(r.challenge, /error="invalid_dpop_proof"/);
    assert.match(r.json.error_description, why);
  }
  assert.deepEqual(uses(jtiOf(bound)), [], 'no refused proof reached the broker');
  // The right proof works, once.
  const good = await dpopProof(key, 'GET', url, bound);
  r = await dpopCall(good);
  assert.equal(r.status, 200, r.text);
  r = await dpopCall(good);
  assert.equal(r.status, 401);
  assert.match(r.json.error_description, /used before/);
  r = await dpopCall(await dpopProof(key, 'GET', url, bound));
  assert.equal(r.status, 200, 'a fresh proof works again');
  assert.deepEqual(uses(jtiOf(bound)), ['active', 'active']);
  // An unbound token cannot pretend to be bound.
  const plain = await readToken();
  r = await dpopCall(await dpopProof(key, 'GET', url, plain), 'DPoP', plain);
  assert.equal(r.status, 401);
  assert.match(r.challenge, /^DPoP realm="forum".*error="invalid_token", error_description="the token is not bound to a key: send it with the Bearer scheme"$/);
  // Two DPoP headers leave it open which one was checked.
  r = await rawRequest('GET', '/threads/42', [['authorization', `DPoP ${bound}`], ['dpop', await dpopProof(key, 'GET', url, bound)], ['dpop', await dpopProof(key, 'GET', url, bound)]]);
  assert.equal(r.status, 400);
  // No token at all: both schemes are offered.
  const bare = await fetch(url);
  assert.equal(bare.status, 401);
  assert.equal(bare.headers.get('www-authenticate'), 'Bearer realm="forum", scope="forum:read", DPoP realm="forum", algs="ES256 EdDSA"');
});

test('forum: a DPoP-bound write token posts with a proof of its key, and the broker checks the proof again', async () => {
  const key = await jose.generateKeyPair('ES256', { extractable: true });
  const text = 'Bound to a key, approved by a human, posted once.';
  const ask = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'a bound post',
    authorization_details: JSON.stringify([{ type: 'forum_post', action_digest: digest(text), preview: text, thread: 42 }]),
  }, { auth: agent, headers: { dpop: await dpopProof(key, 'POST', `${b.url}/oauth2/bc-authorize`) } });
  assert.equal(ask.status, 200, ask.text);
  await decide(ask.json.auth_req_id);
  const t = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: ask.json.auth_req_id },
    { auth: agent, headers: { dpop: await dpopProof(key, 'POST', `${b.url}/oauth2/token`) } });
  assert.equal(t.status, 200, t.text);
  const w = t.json.access_token;
  seenTokens.push(w);
  const url = `${forum.url}/threads/42/replies`;
  const send = async (proof) => call('POST', '/threads/42/replies', {
    body: text, headers: { authorization: `DPoP ${w}`, dpop: proof, 'content-type': 'text/plain; charset=utf-8' },
  });
  let r = await call('POST', '/threads/42/replies', { token: w, body: text });
  assert.equal(r.status, 401, 'not as a bearer token');
  r = await send(await dpopProof(key, 'GET', url, w));
  assert.equal(r.status, 401, 'not with a proof for a read');
  assert.deepEqual(uses(jtiOf(w)), [], 'the single use is still there');
  r = await send(await dpopProof(key, 'POST', url, w));
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.reply.text, text);
  assert.deepEqual(uses(jtiOf(w)), ['active']);
  r = await send(await dpopProof(key, 'POST', url, w));
  assert.equal(r.status, 401);
  assert.deepEqual(uses(jtiOf(w)), ['active', 'used_up']);
});

test('forum: several Authorization headers are 400; a body that is not UTF-8 is 400 and spends nothing', async () => {
  const rt = await readToken();
  let r = await rawRequest('GET', '/threads/42', [['authorization', `Bearer ${rt}`], ['authorization', `Bearer ${rt}`]]);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  const w = await writeToken('caf\u00e9');
  r = await rawRequest('POST', '/threads/42/replies', [['authorization', `Bearer ${w}`], ['content-type', 'text/plain']], Buffer.from([0x63, 0x61, 0x66, 0xe9]));
  assert.equal(r.status, 400);
  assert.match(r.json.error_description, /not UTF-8/);
  assert.deepEqual(uses(jtiOf(w)), []);
  assert.equal((await post(w, 'caf\u00e9')).status, 201, 'the same token still posts the approved text');
});

test('forum: tokens of another issuer, or not valid yet on the forum\'s clock, are 401', async () => {
  const other = await startForum({ FORUM_ISSUER: 'https://other-broker.example', FORUM_JWKS_URL: `${b.url}/.well-known/jwks.json` });
  try {
    const r = await fetch(`${other.url}/threads/42`, { headers: { authorization: `Bearer ${await readToken()}` } });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate'), /error="invalid_token", error_description="the token is from another issuer"/);
  } finally {
    assert.deepEqual(await other.stop(), { code: 0, sig: null });
  }
  // A token whose nbf lies ahead: signed by the broker, seen by a forum
  // whose clock is ten minutes behind (libfaketime, as in clock.test.mjs).
  const lib = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1', '/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1',
    '/usr/lib/faketime/libfaketimeMT.so.1'].find((f) => existsSync(f));
  assert.ok(lib, 'libfaketime is installed (deploy/deps.sh)');
  const behind = await startForum({
    LD_PRELOAD: lib, FAKETIME: '-10m', DONT_FAKE_MONOTONIC: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1',
    ASAN_OPTIONS: [process.env.ASAN_OPTIONS, 'verify_asan_link_order=0'].filter(Boolean).join(':'),
  });
  try {
    const r = await fetch(`${behind.url}/threads/42`, { headers: { authorization: `Bearer ${await readToken()}` } });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate'), /error_description="the token is not valid yet"/);
  } finally {
    assert.deepEqual(await behind.stop(), { code: 0, sig: null });
  }
});

test('forum: bodies over 64 KB are 413, announced or chunked', async () => {
  let r = await call('POST', '/threads/42/replies', { body: 'a'.repeat(65537) });
  assert.equal(r.status, 413);
  assert.equal(r.json.error, 'request_too_large');
  r = await call('POST', '/threads/42/replies', { body: 'a'.repeat(65536) });
  assert.equal(r.status, 401, 'exactly 64 KB is within the limit');
  const chunks = Array.from({ length: 10 }, () => new TextEncoder().encode('b'.repeat(8000)));
  const stream = new ReadableStream({
    pull(c) {
      const next = chunks.shift();
      if (next) c.enqueue(next); else c.close();
    },
  });
  r = await call('POST', '/threads/42/replies', { body: stream });
  assert.equal(r.status, 413);
  const text = 'Still fine after big bodies.';
  assert.equal((await post(await writeToken(text), text)).status, 201);
});

test('forum: wrong methods are 405 with Allow, unknown paths and threads 404, empty replies 400', async () => {
  let r = await call('PUT', '/threads/42');
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET');
  r = await call('DELETE', '/threads/42');
  assert.equal(r.status, 405);
  r = await call('GET', '/threads/42/replies');
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  for (const path of ['/', '/threads', '/threads/', '/threads/042', '/threads/42/', '/threads/42/replies/1', '/threads/abc', '/threads/1234567890']) {
    r = await call('GET', path);
    assert.equal(r.status, 404, path);
    assert.equal(r.json.error, 'not_found');
  }
  r = await call('GET', '/threads/7', { token: await readToken() });
  assert.equal(r.status, 404, 'an unknown thread, after authentication');
  r = await post(await writeToken('xxx'), '');
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
});

test('forum: refuses with 503 when the broker cannot be asked, never serves unchecked', async () => {
  const dead = await startForum({ FORUM_INTROSPECT_URL: 'http://127.0.0.1:9/oauth2/introspect' });
  try {
    const r = await fetch(`${dead.url}/threads/42`, { headers: { authorization: `Bearer ${await readToken()}` } });
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error, 'temporarily_unavailable');
  } finally {
    assert.deepEqual(await dead.stop(), { code: 0, sig: null });
  }
});

test('forum: one JSON log line per request, with agent and jti, never a token', async () => {
  const lines = forum.lines();
  const requests = lines.filter((l) => l.msg === 'request');
  assert.ok(requests.length > 40);
  for (const l of requests) {
    for (const k of ['time', 'method', 'path', 'status', 'result', 'duration_ms']) assert.ok(l[k] !== undefined, k);
  }
  const posted = requests.find((l) => l.status === 201);
  assert.equal(posted.agent, 'forum-agent');
  assert.match(posted.jti, /^[A-Za-z0-9_-]{22}$/);
  assert.ok(posted.approval);
  assert.ok(posted.reply_id >= 1);
  assert.match(posted.body_digest, /^sha256:[0-9a-f]{64}$/);
  const text = forum.logs();
  for (const t of seenTokens) {
    const sig = t.split('.')[2];
    if (sig && sig.length >= 80) assert.ok(!text.includes(sig), 'no token signature in the log');
  }
  assert.ok(!text.includes(service.secret));
});

test('forum: after a key rotation it fetches the JWKS again, at most once per 10 s', async () => {
  const fetches = () => forum.lines().filter((l) => l.msg === 'jwks loaded' || l.msg === 'jwks fetch failed').length;
  const wait = forum.startedAt + 10500 - Date.now();
  if (wait > 0) await sleep(wait);
  const oldKid = decodeJwt(await readToken()).header.kid;
  b.cliOk('keys', 'rotate');
  let token;
  for (let i = 0; i < 100; i++) {
    token = await readToken();
    if (decodeJwt(token).header.kid !== oldKid) break;
    await sleep(100);
  }
  assert.notEqual(decodeJwt(token).header.kid, oldKid, 'the broker signs with the new key');
  const n = fetches();
  const r = await call('GET', '/threads/42', { token });
  assert.equal(r.status, 200, r.text);
  assert.equal(fetches(), n + 1);
  // Made-up kids do not make the forum hammer the broker.
  const [, p, s] = token.split('.');
  const forged = `${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'at+jwt', kid: 'made-up' })).toString('base64url')}.${p}.${s}`;
  for (let i = 0; i < 3; i++) {
    const f = await call('GET', '/threads/42', { token: forged });
    assert.equal(f.status, 401);
    assert.match(f.challenge, /unknown key/);
  }
  assert.equal(fetches(), n + 1, 'no fetch within 10 s of the last one');
});
