// End-to-end: request limits. Per-agent rate limits on the token and
// bc-authorize endpoints, per-service limits on introspection, per-approver
// limits on the approver API, and lockouts after failed authentication (per
// client id, or per address for approver keys) answer 429 with Retry-After;
// slow clients do not hold a worker; oversized requests are cut off early.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { BIN, Broker, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
let b;
let agent;
let other;

before(async () => {
  b = await Broker.start({
    env: {
      COUNTERSIGN_RATE_TOKEN: '20',
      COUNTERSIGN_RATE_BC_AUTHORIZE: '3',
      COUNTERSIGN_RATE_AUTH_FAILURES: '5',
      COUNTERSIGN_RATE_INTROSPECT: '10',
      COUNTERSIGN_RATE_APPROVER: '8',
      COUNTERSIGN_CONNECTION_TIMEOUT: '2',
      COUNTERSIGN_BODY_TIMEOUT: '3',
      COUNTERSIGN_MAX_HEADER: '8192',
    },
  });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('limited');
  other = b.agent('unlimited');
  for (const a of ['limited', 'unlimited']) {
    b.cliOk('grant', 'add', a, 'forum:read', '--audience', AUD);
    b.cliOk('grant', 'add', a, 'forum:post', '--audience', AUD);
  }
});

after(async () => {
  await b.stop();
});

const cc = { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD };

test('token requests beyond the per-agent budget get 429 with Retry-After', async () => {
  const statuses = [];
  let limited;
  for (let i = 0; i < 25; i++) {
    const r = await b.post('/oauth2/token', cc, { auth: agent });
    statuses.push(r.status);
    if (r.status === 429) limited = r;
  }
  assert.equal(statuses.filter((s) => s === 200).length, 20, statuses.join(','));
  assert.ok(limited);
  assert.equal(limited.json.error, 'rate_limited');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  assert.equal(limited.json.access_token, undefined);
  // Another agent has its own budget.
  assert.equal((await b.post('/oauth2/token', cc, { auth: other })).status, 200);
  assert.ok(Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'rate.limited' AND subject = 'limited'")[0][0]) >= 5);
});

test('bc-authorize has its own, tighter budget', async () => {
  const ask = () => b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'x' }, { auth: other });
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await ask()).status);
  assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
});

test('repeated failed authentication locks the client id out for a while', async () => {
  const bad = { id: 'unlimited', secret: 'guess' };
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push((await b.post('/oauth2/token', cc, { auth: bad })).status);
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429]);
  // Even the right secret waits now: the limit is checked before the secret.
  const r = await b.post('/oauth2/token', cc, { auth: other });
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
});

test('oversized headers are refused and the daemon carries on', async () => {
  const r = await fetch(`${b.url}/healthz`, { headers: { 'x-junk': 'a'.repeat(20000) } }).catch((e) => e);
  if (!(r instanceof Error)) assert.ok([413, 431].includes(r.status), String(r.status));
  assert.equal((await b.get('/healthz')).status, 200);
});

// Send raw bytes on a fresh connection: the head, then body chunks from
// next() until it returns null or the broker closes the connection.
// Resolves with what the broker answered and how many body bytes went out.
function rawStream(head, next = () => null) {
  return new Promise((resolve) => {
    const sock = connect(Number(new URL(b.url).port), '127.0.0.1');
    let answer = '';
    let sent = 0;
    let closed = false;
    const done = () => { if (!closed) { closed = true; sock.destroy(); resolve({ answer, sent }); } };
    sock.on('data', (d) => { answer += d.toString('latin1'); });
    sock.on('error', done);
    sock.on('close', done);
    sock.setTimeout(15000, done);
    const pump = () => {
      for (;;) {
        if (closed) return;
        const chunk = next();
        if (chunk === null) return;
        sent += chunk.length;
        if (!sock.write(chunk)) { sock.once('drain', pump); return; }
      }
    };
    sock.on('connect', () => { sock.write(head); pump(); });
  });
}

test('1 MB headers and 10 MB bodies, declared or chunked, are cut off early and leave no memory behind', async () => {
  const asan = readFileSync(BIN).includes('__asan_init');
  const rss = () => Number(readFileSync(`/proc/${b.proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
  const MB = 1024 * 1024;
  const attack = async () => {
    // A 1 MB header: 431 (or a dropped connection) once max_header is read.
    const h = await rawStream(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: ${'a'.repeat(MB)}\r\n\r\n`);
    assert.ok(h.answer === '' || /^HTTP\/1\.1 431 /.test(h.answer), h.answer.slice(0, 80));
    // A declared 10 MB body: 413 before any of it is read.
    const d = await rawStream('POST /oauth2/token HTTP/1.1\r\nHost: x\r\n' +
      'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10485760\r\n\r\n');
    assert.match(d.answer, /^HTTP\/1\.1 413 /);
    assert.match(d.answer, /"error":"request_too_large"/);
    // A chunked body that never ends: dropped once past max_body, long
    // before its 10 MB have gone out.
    const piece = Buffer.from(`10000\r\n${'a'.repeat(0x10000)}\r\n`);
    let left = 160;
    const c = await rawStream('POST /oauth2/token HTTP/1.1\r\nHost: x\r\n' +
      'Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n',
    () => (left-- > 0 ? piece : null));
    assert.ok(left > 0, `the broker read all ${c.sent} bytes of a chunked body past max_body`);
  };
  await attack();	// the first round may grow pools and caches
  const before = rss();
  for (let i = 0; i < 5; i++) await attack();
  const grown = rss() - before;
  if (!asan) assert.ok(grown <= 5 * 1024, `RSS grew by ${grown} kB`);
  assert.equal((await b.get('/healthz')).status, 200);
  assert.equal((await b.get('/.well-known/jwks.json')).status, 200);
});

test('slow clients neither block others nor stay connected past the timeout', async () => {
  // 100 connections that send one header byte every second.
  const sockets = [];
  for (let i = 0; i < 100; i++) {
    const s = connect(b.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('POST /oauth2/token HTTP/1.1\r\nHost: x\r\n');
    sockets.push(s);
  }
  const drip = setInterval(() => sockets.forEach((s) => { if (!s.destroyed) s.write('X'); }), 1000);
  try {
    // Meanwhile a normal client is served promptly.
    const times = [];
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      assert.equal((await b.get('/healthz')).status, 200);
      times.push(Date.now() - t0);
    }
    times.sort((x, y) => x - y);
    assert.ok(times[18] < 200, `p95 ${times[18]} ms`);
  } finally {
    clearInterval(drip);
  }
  // Idle connections are closed after the connection timeout (2 s here).
  const idle = connect(b.port, '127.0.0.1');
  let idleClosed = false;
  idle.on('error', () => {});
  idle.on('close', () => { idleClosed = true; });
  await sleep(3500);
  assert.ok(idleClosed, 'an idle connection was closed');
  sockets.forEach((s) => s.destroy());
});

test('a body trickled just inside the inactivity timeout is cut off at body_timeout', async () => {
  // One byte every 0.7 s never trips connection_timeout (2 s here); the
  // whole body has body_timeout (3 s) from the end of the headers.
  const s = connect(b.port, '127.0.0.1');
  const t0 = Date.now();
  let closedAt = 0;
  let answer = '';
  s.on('error', () => {});
  s.on('data', (d) => { answer += d; });
  const closed = new Promise((resolve) => s.on('close', () => { closedAt = Date.now(); resolve(); }));
  s.write('POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n' +
    'Content-Length: 1000\r\n\r\n');
  let sent = 0;
  const drip = setInterval(() => { if (!s.destroyed) { s.write('a'); sent++; } }, 700);
  const cap = setTimeout(() => s.destroy(), 15000);
  await closed;
  clearInterval(drip);
  clearTimeout(cap);
  const took = closedAt - t0;
  assert.ok(took >= 2900 && took < 6000, `closed after ${took} ms`);
  assert.ok(sent < 10, `${sent} bytes sent`);
  assert.equal(answer, '');
  // A body that arrives in time is read and answered as ever.
  const r = await b.post('/oauth2/token', { grant_type: 'no-such-grant' });
  assert.ok([400, 401].includes(r.status), r.text);
  assert.ok(r.json.error);
});

// Send raw bytes and collect the whole answer (the server closes).
function raw(port, text) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => { out += d.toString(); });
    s.on('close', () => resolve(out));
    s.on('error', () => resolve(out));
    s.end(text);
    setTimeout(() => s.destroy(), 3000);
  });
}

test('ambiguous message framing (request smuggling) is refused', async () => {
  const body = 'grant_type=client_credentials&scope=forum:read&resource=x';
  const head = 'POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n';
  for (const framing of [
    `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`,
    `Content-Length: ${body.length}\r\nContent-Length: 5\r\n`,
    `Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n`,
  ]) {
    const out = await raw(b.port, `${head}${framing}\r\n${body}`);
    assert.match(out, /^HTTP\/1\.1 400/, framing);
    assert.match(out, /invalid_request/);
    // Never a second response smuggled out of the body.
    assert.equal((out.match(/HTTP\/1\.1 /g) || []).length, 1, out);
  }
  assert.equal((await b.get('/healthz')).status, 200);
});

test('folded header lines and stray CRs that could reframe the body are refused', async () => {
  const creds = b.agent('fold-agent');
  b.cliOk('grant', 'add', 'fold-agent', 'forum:read', '--audience', AUD);
  const basic = Buffer.from(`${creds.id}:${creds.secret}`).toString('base64');
  // A complete token request hidden where a lenient parser sees a body.
  const inner = 'POST /oauth2/token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ' + basic +
    '\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 61\r\n\r\n' +
    'grant_type=client_credentials&scope=forum%3Aread&resource=' + encodeURIComponent(AUD).slice(0, 3);
  const head = 'POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n';
  const tokens = () => Number(b.sql("SELECT count(*) FROM tokens WHERE client_id = '" + creds.id + "'")[0][0]);
  const before = tokens();
  for (const [name, headers, body] of [
    // libmicrohttpd 0.9.75 glues a continuation line onto the header name:
    // this arrives as "Content-Length<n>" and the body as a second request.
    ['folded Content-Length', `Content-Length:\r\n ${inner.length}\r\n`, inner],
    ['folded Transfer-Encoding', 'Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n', 'a=b'],
    ['a framing header folded into another', `X-Pad: a\r\n Content-Length: ${inner.length}\r\n`, inner],
    ['a bare CR inside a value', 'X-A: 1\rTransfer-Encoding: chunked\r\nContent-Length: 3\r\n', 'a=b'],
  ]) {
    const out = await raw(b.port, `${head}${headers}\r\n${body}`);
    assert.match(out, /^HTTP\/1\.1 400/, name);
    assert.match(out, /malformed header line/, name);
    assert.equal((out.match(/HTTP\/1\.1 /g) || []).length, 1, `${name}: one response only`);
  }
  assert.equal(tokens(), before, 'the hidden request was never served');
  // Bare LF line ends are read as CRLF, so the framing checks still see
  // every header they split.
  const lf = head.replace(/\r\n/g, '\n');
  for (const framing of ['Content-Length: 3\nTransfer-Encoding: chunked\n', 'Content-Length: 3\nContent-Length: 5\n']) {
    const out = await raw(b.port, `${lf}${framing}\na=bcd`);
    assert.match(out, /^HTTP\/1\.1 400/, framing);
    assert.match(out, /ambiguous message framing/);
  }
  // An ordinary request on the same daemon is still served.
  assert.equal((await b.post('/oauth2/token', cc, { auth: creds })).status, 200);
});

test('the failed-authentication lockout also guards introspection and revocation', async () => {
  const s = b.cliOk('service', 'add', 'lock-svc', '--audience', AUD, '--json').json;
  const introspect = (secret) => b.post('/oauth2/introspect', { token: 'x' }, { auth: { id: s.client_id, secret } });
  const statuses = [];
  for (let i = 0; i < 7; i++) statuses.push((await introspect('guess')).status);
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429]);
  const r = await introspect(s.client_secret);
  assert.equal(r.status, 429, 'locked out even with the right secret');
  // Agents and services are separate realms: the same name is not shared.
  const a = b.agent('lock-svc');
  assert.equal((await b.post('/oauth2/revoke', { token: 'x' }, { auth: a })).status, 200);
  const rs = [];
  for (let i = 0; i < 7; i++) {
    rs.push((await b.post('/oauth2/revoke', { token: 'x' }, { auth: { id: 'lock-svc', secret: 'guess' } })).status);
  }
  assert.deepEqual(rs, [401, 401, 401, 401, 401, 429, 429]);
});

test('introspection has a per-service budget: 429 beyond it, audited, nothing recorded as used', async () => {
  const s1 = b.cliOk('service', 'add', 'busy-svc', '--audience', AUD, '--json').json;
  const s2 = b.cliOk('service', 'add', 'calm-svc', '--audience', AUD, '--json').json;
  const ag = b.agent('intro-agent2');
  b.cliOk('grant', 'add', 'intro-agent2', 'forum:read', '--audience', AUD);
  const issued = await b.post('/oauth2/token', cc, { auth: ag });
  assert.equal(issued.status, 200);
  const token = issued.json.access_token;
  const usedBefore = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.used'")[0][0]);
  const introspect = (s) => b.post('/oauth2/introspect', { token }, { auth: { id: s.client_id, secret: s.client_secret } });
  const statuses = [];
  let limited;
  for (let i = 0; i < 13; i++) {
    const r = await introspect(s1);
    statuses.push(r.status);
    if (r.status === 429) limited = r;
  }
  assert.deepEqual(statuses, [...Array(10).fill(200), 429, 429, 429]);
  assert.equal(limited.json.error, 'rate_limited');
  assert.equal(limited.json.active, undefined, 'a refused introspection says nothing about the token');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  // Only the admitted calls were recorded as uses.
  const usedAfter = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.used'")[0][0]);
  assert.equal(usedAfter - usedBefore, 10);
  assert.equal(Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'rate.limited' AND subject = 'busy-svc' AND details->>'limit' = 'introspect'")[0][0]), 3);
  // Another service has its own budget.
  const r2 = await introspect(s2);
  assert.equal(r2.status, 200);
  assert.equal(r2.json.active, true);
});

// The approver API: bearer approver keys, which name no client id.
async function approverGet(key, path = '/v1/approvals') {
  const r = await fetch(`${b.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, json };
}

test('the approver API has a per-approver budget', async () => {
  const k1 = b.cliOk('approver', 'add', 'rl-alice', '--groups', 'g', '--json').json.api_key;
  const k2 = b.cliOk('approver', 'add', 'rl-bob', '--groups', 'g', '--json').json.api_key;
  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push((await approverGet(k1)).status);
  assert.deepEqual(statuses, [...Array(8).fill(200), 429, 429]);
  const limited = await approverGet(k1);
  assert.equal(limited.status, 429);
  assert.equal(limited.json.error, 'rate_limited');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  assert.equal((await approverGet(k2)).status, 200, 'another approver has its own budget');
  assert.ok(Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'rate.limited' AND subject = 'rl-alice' AND details->>'limit' = 'approver'")[0][0]) >= 3);
});

test('wrong approver keys lock the client address out, audited, and no key is logged', async () => {
  const good = b.cliOk('approver', 'add', 'rl-carol', '--groups', 'g', '--json').json.api_key;
  const failedBefore = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'approver.auth_failed'")[0][0]);
  const guesses = [];
  const statuses = [];
  for (let i = 0; i < 7; i++) {
    // A well-formed key that is not ours: the same length as a real one.
    const guess = Buffer.from(`guess-${i}-`.padEnd(32, 'x')).toString('base64url').slice(0, good.length);
    guesses.push(guess);
    statuses.push((await approverGet(guess)).status);
  }
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429]);
  // The right key waits too: the lockout is checked before the key.
  const r = await approverGet(good);
  assert.equal(r.status, 429);
  assert.equal(r.json.error, 'rate_limited');
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  // The audit log under /v1/audit is behind the same lockout.
  assert.equal((await approverGet(good, '/v1/audit')).status, 429);
  // Locked-out attempts are not looked up, so not audited as failures;
  // the refusals are audited as rate.limited against the address.
  const failedAfter = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'approver.auth_failed'")[0][0]);
  assert.equal(failedAfter - failedBefore, 5);
  assert.ok(Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'rate.limited' AND subject = '127.0.0.1' AND details->>'limit' = 'failed authentication'")[0][0]) >= 4);
  // No guessed key reaches the audit log or the broker's log.
  const dump = b.sql('SELECT details::text || coalesce(subject, \'\') FROM audit_events').flat().join('\n');
  for (const g of [...guesses, good]) {
    assert.ok(!dump.includes(g), 'key in the audit log');
    assert.ok(!b.logs.includes(g), 'key in the broker log');
  }
});

test('over IPv6 the approver lockout keys the client\'s /64', async () => {
  const b6 = await Broker.start({ ipv6: true, env: { COUNTERSIGN_RATE_AUTH_FAILURES: '3' } });
  try {
    const good = b6.cliOk('approver', 'add', 'v6-ann', '--groups', 'g', '--json').json.api_key;
    const get = async (key) => (await fetch(`${b6.url}/v1/approvals`, { headers: { authorization: `Bearer ${key}` } })).status;
    assert.equal(await get(good), 200);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push(await get('x'.repeat(good.length)));
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    assert.equal(await get(good), 429);
    assert.deepEqual(b6.sql("SELECT DISTINCT subject FROM audit_events WHERE type = 'rate.limited'"), [['::/64']]);
  } finally {
    await b6.stop();
  }
});
