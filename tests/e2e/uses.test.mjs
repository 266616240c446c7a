// End-to-end: services that verify offline report their uses
// (POST /v1/uses) and each becomes a token.used audit event with
// source "report"; reports never use up a token; every malformed report is
// refused whole. The C reporter (lib/report.c) is driven by
// tests/e2e/report_driver.c, compiled here against the build's
// libcountersign-verify.a.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Broker, BIN, ROOT, decodeJwt, freePort, readFileSync, sleep } from './lib.mjs';

const run = promisify(execFile);
const AUD = 'https://forum.example';
const WIKI = 'https://wiki.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
let b;
let agent;
let forum;
let wiki;
let approverKey;
let driverDir;
let driver;

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'wiki:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('use-agent');
  b.cliOk('grant', 'add', 'use-agent', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'use-agent', 'wiki:read', '--audience', WIKI);
  b.cliOk('grant', 'add', 'use-agent', 'forum:post', '--audience', AUD);
  const svc = (name, aud) => {
    const r = b.cliOk('service', 'add', name, '--audience', aud, '--json').json;
    return { id: r.client_id, secret: r.client_secret };
  };
  forum = svc('forum', AUD);
  wiki = svc('wiki', WIKI);
  approverKey = b.cliOk('approver', 'add', 'use-approver', '--groups', 'ops', '--json').json.api_key;
});

after(async () => {
  if (driverDir) rmSync(driverDir, { recursive: true, force: true });
  await b.stop();
});

const now = () => Math.floor(Date.now() / 1000);
const basic = (svc) => 'Basic ' + Buffer.from(
  `${encodeURIComponent(svc.id)}:${encodeURIComponent(svc.secret)}`).toString('base64');

// POST /v1/uses. body: an object (sent as JSON) or a string (sent as is).
async function report(body, { svc = forum, type = 'application/json', headers = {} } = {}) {
  const h = { ...headers };
  if (type !== null) h['content-type'] = type;
  if (svc) h.authorization = basic(svc);
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  // A Uint8Array body makes fetch send no Content-Type of its own.
  const r = await fetch(`${b.url}/v1/uses`, { method: 'POST', headers: h, body: Buffer.from(data) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, text, json };
}

async function readToken(scope = 'forum:read', resource = AUD) {
  const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope, resource }, { auth: agent });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

async function writeToken() {
  const ask = await b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'post once' }, { auth: agent });
  assert.equal(ask.status, 200, ask.text);
  const id = ask.json.auth_req_id;
  const ok = await fetch(`${b.url}/v1/approvals/${id}/approve`, {
    method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }, body: '{}',
  });
  assert.equal(ok.status, 200);
  const t = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: agent });
  assert.equal(t.status, 200, t.text);
  return t.json.access_token;
}

const jtiOf = (token) => decodeJwt(token).payload.jti;

// The reported token.used events of a jti, oldest first.
function reports(jti) {
  return b.sql(`SELECT actor, coalesce(subject, '-'), details::text FROM audit_events
                WHERE type = 'token.used' AND jti = '${jti}' AND details->>'source' = 'report'
                ORDER BY seq`).map(([actor, subject, details]) => ({ actor, subject, details: JSON.parse(details) }));
}

const usedCount = () => Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.used'")[0][0]);

test('a batch of reports becomes token.used events with source report', async () => {
  const token = await readToken();
  const wikiToken = await readToken('wiki:read', WIKI);
  const known = jtiOf(token);
  const foreign = jtiOf(wikiToken);
  const unknown = 'never-issued-' + Date.now();
  const t = now();
  const r = await report({
    uses: [
      { jti: known, at: t, result: 'ok' },
      { jti: foreign, at: t - 60, result: 'wrong_audience' },
      { jti: unknown, at: t, result: 'expired' },
      { jti: known, at: t + 1, result: 'ok' },
    ],
  });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(r.json, { recorded: 4 });

  const k = reports(known);
  assert.equal(k.length, 2);
  assert.deepEqual(k[0], {
    actor: 'service:forum', subject: 'agent:use-agent',
    details: { result: 'ok', source: 'report', reported_at: t, audience_ok: true, known: true },
  });
  assert.equal(k[1].details.reported_at, t + 1);

  // Another service's token: recorded, and marked as not this service's.
  const f = reports(foreign);
  assert.equal(f.length, 1);
  assert.equal(f[0].subject, 'agent:use-agent');
  assert.deepEqual(f[0].details, { result: 'wrong_audience', source: 'report', reported_at: t - 60, audience_ok: false, known: true });

  // A jti the broker never issued: recorded with no subject.
  const u = reports(unknown);
  assert.equal(u.length, 1);
  assert.equal(u[0].subject, '-');
  assert.deepEqual(u[0].details, { result: 'expired', source: 'report', reported_at: t, audience_ok: false, known: false });

  // The events keep the order of the batch.
  const order = b.sql(`SELECT jti FROM audit_events WHERE type = 'token.used'
                       AND jti IN ('${known}', '${foreign}', '${unknown}') ORDER BY seq`).map((x) => x[0]);
  assert.deepEqual(order, [known, foreign, unknown, known]);

  // Reports are a trace only: the token's use counter did not move.
  assert.deepEqual(b.sql(`SELECT use_count, coalesce(last_used_at::text, '-') FROM tokens WHERE jti = '${known}'`), [['0', '-']]);
});

test('reports never use up a single-use token; introspection still decides', async () => {
  const token = await writeToken();
  const jti = jtiOf(token);
  const r = await report({ uses: [{ jti, at: now(), result: 'ok' }, { jti, at: now(), result: 'ok' }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.recorded, 2);
  assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0], '0');
  const first = await b.post('/oauth2/introspect', { token }, { auth: forum });
  assert.equal(first.json.active, true, 'the one use is still there for introspection');
  assert.equal(first.json.uses_left, 0);
  const second = await b.post('/oauth2/introspect', { token }, { auth: forum });
  assert.deepEqual(second.json, { active: false });
  assert.equal(reports(jti).length, 2);
});

test('reports need service credentials (Basic only)', async () => {
  const jti = 'auth-probe-' + Date.now();
  const body = { uses: [{ jti, at: now(), result: 'ok' }] };
  const failedBefore = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'service.auth_failed'")[0][0]);
  const cases = {
    none: await report(body, { svc: null }),
    wrong_secret: await report(body, { svc: { id: 'forum', secret: 'wrong' } }),
    unknown_service: await report(body, { svc: { id: 'nosuch', secret: forum.secret } }),
    agent_credentials: await report(body, { svc: agent }),
    not_basic: await report(body, { svc: null, headers: { authorization: `Bearer ${forum.secret}` } }),
    bad_base64: await report(body, { svc: null, headers: { authorization: 'Basic %%%' } }),
  };
  for (const [name, r] of Object.entries(cases)) {
    assert.equal(r.status, 401, name);
    assert.equal(r.json.error, 'invalid_client', name);
  }
  assert.equal(cases.none.headers.get('www-authenticate'), 'Basic realm="countersign-services"');
  // client_secret_post has no place in a JSON body: credentials there are ignored.
  const post = await report({ ...body, client_id: 'forum', client_secret: forum.secret }, { svc: null });
  assert.equal(post.status, 401);
  const failedAfter = Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'service.auth_failed'")[0][0]);
  assert.ok(failedAfter - failedBefore >= 7, `${failedAfter - failedBefore} auth failures audited`);
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE jti = '${jti}'`)[0][0], '0');
});

test('the body must be application/json', async () => {
  const jti = 'type-probe-' + Date.now();
  const body = { uses: [{ jti, at: now(), result: 'ok' }] };
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', null]) {
    const r = await report(body, { type });
    assert.equal(r.status, 415, String(type));
    assert.equal(r.json.error, 'unsupported_media_type');
  }
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE jti = '${jti}'`)[0][0], '0');
  const ok = await report(body, { type: 'application/json; charset=utf-8' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(reports(jti).length, 1);
});

test('a malformed report is refused whole, with nothing recorded', async () => {
  const t = now();
  const good = (jti) => ({ jti, at: t, result: 'ok' });
  const many = (n) => ({ uses: Array.from({ length: n }, (_, i) => good(`many${i}`)) });
  const cases = {
    not_json: '{"uses":[',
    trailing_garbage: '{"uses":[]} x',
    top_level_array: JSON.stringify([good('arr')]),
    duplicate_member: `{"uses":[${JSON.stringify(good('dup1'))}],"uses":[${JSON.stringify(good('dup2'))}]}`,
    duplicate_in_entry: `{"uses":[{"jti":"dupe","jti":"dupe2","at":${t},"result":"ok"}]}`,
    missing_uses: {},
    extra_member: { uses: [good('extra')], more: 1 },
    uses_not_array: { uses: good('obj') },
    empty: { uses: [] },
    too_many: many(501),
    jti_too_long: { uses: [good('a'.repeat(65))] },
    jti_bad_chars: { uses: [good('a.b')] },
    jti_empty: { uses: [good('')] },
    jti_number: { uses: [{ jti: 12, at: t, result: 'ok' }] },
    result_active: { uses: [{ jti: 'ra', at: t, result: 'active' }] },
    result_unknown: { uses: [{ jti: 'ru', at: t, result: 'unknown' }] },
    result_null: { uses: [{ jti: 'rn', at: t, result: null }] },
    at_too_old: { uses: [{ jti: 'old', at: t - 86400 - 120, result: 'ok' }] },
    at_future: { uses: [{ jti: 'fut', at: t + 600, result: 'ok' }] },
    at_float: { uses: [{ jti: 'flt', at: t + 0.5, result: 'ok' }] },
    at_string: { uses: [{ jti: 'str', at: String(t), result: 'ok' }] },
    entry_extra: { uses: [{ ...good('ee'), service: 'wiki' }] },
    entry_missing: { uses: [{ jti: 'em', at: t }] },
    bad_after_good: { uses: [good('bag1'), good('bag2'), { jti: 'bag3', at: t, result: 'bogus' }] },
  };
  const before = usedCount();
  for (const [name, body] of Object.entries(cases)) {
    const r = await report(body);
    assert.equal(r.status, 400, `${name}: ${r.text}`);
    assert.equal(r.json.error, 'invalid_request', name);
  }
  assert.equal(usedCount(), before, 'no token.used event from any refused report');
  assert.match((await report(cases.bad_after_good)).json.error_description, /uses\[2\]\.result/);
});

test('500 entries in one report are accepted', async () => {
  const t = now();
  const uses = Array.from({ length: 500 }, (_, i) => ({ jti: `batch500-${i}`, at: t, result: i % 2 ? 'ok' : 'expired' }));
  const r = await report({ uses });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { recorded: 500 });
  assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.used' AND jti LIKE 'batch500-%'")[0][0], '500');
});

test('when the database cannot record, 503 and nothing is written', async () => {
  const jti = 'db-refuses-' + Date.now();
  // Take the broker's INSERT on the audit log away: authentication still
  // works (it only reads), the one recording statement fails.
  b.sql('REVOKE INSERT ON audit_events FROM countersign_broker');
  let r;
  try {
    r = await report({ uses: [{ jti, at: now(), result: 'ok' }, { jti: 'x' + jti, at: now(), result: 'ok' }] });
  } finally {
    b.sql('GRANT INSERT ON audit_events TO countersign_broker');
  }
  assert.equal(r.status, 503, r.text);
  assert.equal(r.json.error, 'temporarily_unavailable');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE jti IN ('${jti}', 'x${jti}')`)[0][0], '0');
  assert.equal((await report({ uses: [{ jti, at: now(), result: 'ok' }] })).status, 200);
});

// ---- the C reporter --------------------------------------------------------

// Compile tests/e2e/report_driver.c against the library of the build under
// test (the sanitizer build needs the sanitizer runtime too).
async function buildDriver() {
  if (driver) return driver;
  const lib = join(dirname(BIN), 'libcountersign-verify.a');
  const archive = readFileSync(lib);
  assert.ok(archive.includes('cs_reporter_new'),
    `${lib} has no cs_reporter_new: lib/report.c is not in VERIFY_SRCS`);
  driverDir = mkdtempSync(join(tmpdir(), 'cs-report-'));
  const out = join(driverDir, 'report_driver');
  const args = ['-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-Werror', '-Wpedantic', '-Wshadow',
    '-Wstrict-prototypes', '-Wmissing-prototypes', '-Wformat=2', '-g',
    '-I', join(ROOT, 'include'), '-o', out, join(ROOT, 'tests', 'e2e', 'report_driver.c'), lib,
    '-lcurl', '-lcrypto', '-ljansson', '-lpthread'];
  if (archive.includes('__asan_')) args.unshift('-fsanitize=address,undefined');
  await run(process.env.CC || 'cc', args);
  driver = out;
  return driver;
}

// The broker's log lines for recorded reports of the forum service.
function reportLines() {
  return b.logs.split('\n').filter((l) => l.includes('"/v1/uses"')).map((l) => JSON.parse(l))
    .filter((l) => l.status === 200 && l.service === 'forum');
}

async function drive({ url = b.url, svc = forum, count, jtis = [], opts = [] }) {
  const bin = await buildDriver();
  const { stdout } = await run(bin, [...opts, '--', url, svc.id, String(count), ...jtis], {
    env: { ...process.env, CS_REPORT_SECRET: svc.secret }, timeout: 60000,
  });
  return JSON.parse(stdout);
}

test('the C reporter batches uses to the live broker', async () => {
  const token = await readToken();
  const known = jtiOf(token);
  const unknown = 'reporter-unknown-' + Date.now();
  const before = Number(b.sql("SELECT count(*) FROM audit_events WHERE actor = 'service:forum' AND details->>'source' = 'report'")[0][0]);
  const logsBefore = reportLines().length;
  const s = await drive({ count: 25, jtis: [known, `${unknown}=expired`], opts: ['-b', '10', '-f', '50'] });
  assert.deepEqual({ queued: s.queued, refused: s.refused, sent: s.sent, dropped: s.dropped, failed: s.failed },
    { queued: 25, refused: 0, sent: 25, dropped: 0, failed: 0 });
  const after = Number(b.sql("SELECT count(*) FROM audit_events WHERE actor = 'service:forum' AND details->>'source' = 'report'")[0][0]);
  assert.equal(after - before, 25);
  const k = reports(known);
  assert.equal(k.length, 13);
  assert.ok(k.every((e) => e.subject === 'agent:use-agent' && e.details.result === 'ok' &&
    e.details.known && e.details.audience_ok && Math.abs(e.details.reported_at - now()) < 60));
  const u = reports(unknown);
  assert.equal(u.length, 12);
  assert.ok(u.every((e) => e.details.result === 'expired' && !e.details.known));
  assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${known}'`)[0][0], '0');
  // Batches of at most 10 (-b 10): the broker's request log shows them.
  let batches = [];
  for (let i = 0; i < 50; i++) {
    batches = reportLines().slice(logsBefore).map((l) => Number(l.uses));
    if (batches.reduce((a, x) => a + x, 0) >= 25) break;
    await sleep(20);
  }
  assert.equal(batches.reduce((a, x) => a + x, 0), 25, JSON.stringify(batches));
  assert.ok(batches.length >= 3 && batches.every((n) => n >= 1 && n <= 10), JSON.stringify(batches));
});

test('the C reporter refuses what the broker would refuse, at the caller', async () => {
  const jti = 'reporter-valid-' + Date.now();
  const s = await drive({ count: 4, jtis: [jti, 'not.a.jti', `${jti}=bogus`, 'x'.repeat(65)], opts: ['-f', '20'] });
  assert.equal(s.queued, 1);
  assert.equal(s.refused, 3);
  assert.equal(s.dropped, 3, 'refused uses are counted as dropped');
  assert.equal(s.sent, 1);
  assert.equal(reports(jti).length, 1);
});

test('the C reporter counts a refused batch as failed without retrying it', async () => {
  const jti = 'reporter-badauth-' + Date.now();
  const s = await drive({ svc: { id: 'forum', secret: 'wrong' }, count: 3, jtis: [jti], opts: ['-f', '20'] });
  assert.equal(s.sent, 0);
  assert.equal(s.failed, 3);
  assert.ok(s.flush_ms < 2000, `a 401 is not retried (${s.flush_ms} ms)`);
  assert.equal(reports(jti).length, 0);
});

test('the C reporter retries an unreachable broker, then counts the batch failed', async () => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  const s = await drive({ url: dead, count: 5, jtis: ['dead-broker'], opts: ['-f', '20'] });
  assert.equal(s.sent, 0);
  assert.equal(s.failed, 5);
  // Three retries with 250, 500 and 1000 ms of backoff.
  assert.ok(s.flush_ms >= 1700 && s.flush_ms < 10000, `${s.flush_ms} ms`);
});

test('the C reporter drops what does not fit and frees within its bound', async () => {
  const dead = `http://127.0.0.1:${await freePort()}`;
  // One use per batch and a dead broker: the worker holds at most a use or
  // two, so of 10,600 queued at once about 600 cannot fit.
  const s = await drive({ url: dead, count: 10600, opts: ['-b', '1', '-f', '10', '-n', '-p', 'drop'] });
  assert.equal(s.queued + s.refused, 10600);
  assert.equal(s.dropped, s.refused);
  assert.ok(s.dropped >= 590 && s.dropped <= 600, `dropped ${s.dropped}`);
  assert.ok(s.enqueue_ms < 2000, `queueing does no I/O (${s.enqueue_ms} ms for 10,600)`);
  assert.ok(s.free_ms >= 4000 && s.free_ms < 7500, `free is bounded (${s.free_ms} ms)`);
});
