// Browser tests of the approver web page (/ui/): a real broker and
// PostgreSQL, driven through Debian's headless chromium. Screenshots of
// the list and detail views go to build/ui-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Broker, ROOT, sleep, sql } from '../e2e/lib.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'build', 'ui-artifacts');
const AUD = 'https://forum.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
// Low, so that the lockout test at the end reaches it quickly.
const AUTH_FAILURES = 6;
let b;
let browser;
let agent;
let alice;
let bob;

before(async () => {
  // CI installs chromium (deploy/deps.sh); without it these tests fail.
  assert.ok(existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (deploy/deps.sh all installs it)`);
  rmSync(ARTIFACTS, { recursive: true, force: true });
  mkdirSync(ARTIFACTS, { recursive: true });
  b = await Broker.start({
    env: { COUNTERSIGN_POLL_INTERVAL: '1', COUNTERSIGN_RATE_AUTH_FAILURES: String(AUTH_FAILURES) },
  });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--approver-group', 'forum-mods', '--no-require-dpop');
  agent = b.agent('writer', '--owner', 'dana@example.com');
  for (const s of ['forum:read', 'forum:post']) b.cliOk('grant', 'add', 'writer', s, '--audience', AUD);
  alice = b.cliOk('approver', 'add', 'alice', '--groups', 'forum-mods', '--json').json.api_key;
  bob = b.cliOk('approver', 'add', 'bob', '--groups', 'forum-mods', '--json').json.api_key;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
  if (b) {
    // Neither a key nor a session id may ever reach the broker's log.
    for (const secret of [alice, bob]) assert.ok(!b.logs.includes(secret), 'an approver key is in the log');
    await b.stop();
  }
});

const digest = (body) => 'sha256:' + createHash('sha256').update(body).digest('hex');

async function ask(extra = {}) {
  const r = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:read forum:post',
    resource: AUD,
    binding_message: 'Post the answer to thread 42',
    ...extra,
  }, { auth: agent });
  assert.equal(r.status, 200, r.text);
  return r.json.auth_req_id;
}

const collect = (id) => b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: agent });

function audit(type, actor) {
  return Number(b.sql(`SELECT count(*) FROM audit_events WHERE type = '${type}'` +
    (actor ? ` AND actor = '${actor}'` : ''))[0][0]);
}

// A new browser context (its own cookies) with a page signed in as key.
async function signedIn(key, viewport = { width: 1100, height: 900 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  await page.goto(`${b.url}/ui/`);
  await page.fill('#key', key);
  await page.click('#signin-button');
  await page.waitForSelector('#list-view:not([hidden])');
  return { ctx, page };
}

// Sign in without a browser; returns {cookie, csrf}.
async function apiSignIn(key) {
  const r = await fetch(`${b.url}/ui/api/session`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }),
  });
  assert.equal(r.status, 200);
  const set = r.headers.getSetCookie();
  assert.equal(set.length, 1);
  const json = await r.json();
  return { cookie: set[0].split(';')[0], setCookie: set[0], csrf: json.csrf_token, json };
}

async function uiCall(method, path, { cookie, csrf, origin, site, body } = {}) {
  const headers = {};
  if (cookie) headers.cookie = cookie;
  if (csrf) headers['x-csrf-token'] = csrf;
  if (origin) headers.origin = origin;
  if (site) headers['sec-fetch-site'] = site;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${b.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, json, text };
}

function assertPng(file) {
  assert.ok(existsSync(file), `${file} missing`);
  assert.ok(statSync(file).size > 1000, `${file} too small`);
  assert.deepEqual([...readFileSync(file).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
}

test('the page is served from the binary with a strict CSP, no inline script or style', async () => {
  const r = await fetch(`${b.url}/ui/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  const csp = r.headers.get('content-security-policy');
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  const html = await r.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)/i, 'inline script');
  assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'inline style or handler');
  assert.doesNotMatch(html, /https?:\/\//, 'external asset');
  for (const [path, type] of [['/ui/app.js', /^text\/javascript/], ['/ui/app.css', /^text\/css/]]) {
    const a = await fetch(b.url + path);
    assert.equal(a.status, 200, path);
    assert.match(a.headers.get('content-type'), type);
    assert.match(a.headers.get('content-security-policy'), /default-src 'self'/);
  }
  const redirect = await fetch(`${b.url}/ui`, { redirect: 'manual' });
  assert.equal(redirect.status, 308);
  assert.equal(redirect.headers.get('location'), '/ui/');
  for (const path of ['/ui/nope.js', '/ui/../migrations/0001_core.sql', '/ui/%2e%2e/x']) {
    const n = await fetch(b.url + path);
    assert.equal(n.status, 404, path);
    assert.equal((await n.json()).error, 'not_found');
  }
  // The page loads without a single CSP violation or script error.
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const problems = [];
  // The one expected failure is the "am I signed in?" check (401).
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('response', (x) => { if (x.status() >= 400 && x.status() !== 401) problems.push(`${x.status()} ${x.url()}`); });
  await page.goto(`${b.url}/ui/`);
  await page.waitForSelector('#signin:not([hidden])');
  assert.deepEqual(problems, []);
  await ctx.close();
});

test('a wrong key is refused with a message, audited, and no session is made', async () => {
  const failures = audit('approver.auth_failed');
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${b.url}/ui/`);
  await page.fill('#key', 'x'.repeat(43));
  await page.click('#signin-button');
  await page.waitForSelector('#signin-error:not([hidden])');
  assert.match(await page.textContent('#signin-error'), /not accepted/);
  assert.equal(await page.isHidden('#list-view'), true);
  assert.deepEqual(await ctx.cookies(), []);
  assert.equal(await page.inputValue('#key'), '', 'the key stays in the field');
  assert.equal(audit('approver.auth_failed'), failures + 1);
  await ctx.close();
  // Without a browser: 401 with a JSON error, malformed bodies 400/415.
  const r = await uiCall('POST', '/ui/api/session', { body: { key: 'y'.repeat(43) } });
  assert.equal(r.status, 401);
  assert.equal(r.json.error, 'invalid_token');
  assert.equal(r.headers.get('set-cookie'), null);
  assert.equal((await uiCall('POST', '/ui/api/session', { body: { key: alice, extra: 1 } })).status, 400);
  assert.equal((await uiCall('POST', '/ui/api/session', { body: ['x'] })).status, 400);
  const notJson = await fetch(`${b.url}/ui/api/session`, { method: 'POST', body: 'key=' + alice,
    headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(notJson.status, 415);
  assert.equal((await notJson.json()).error, 'unsupported_media_type');
  const none = await uiCall('GET', '/ui/api/approvals');
  assert.equal(none.status, 401);
  assert.equal(none.json.error, 'invalid_token');
  assert.equal((await uiCall('GET', '/ui/api/approvals', { cookie: 'cs_session=' + 'A'.repeat(43) })).status, 401);
});

test('sign in, see the pending request, approve it, and the agent collects its token', async () => {
  const signins = audit('approver.signed_in', 'approver:alice');
  const preview = 'Reply to thread 42: "restart the indexer"';
  const details = JSON.stringify([{ type: 'forum_post', action_digest: digest(preview), preview }]);
  const id = await ask({ authorization_details: details, requested_ttl: '120' });
  assert.equal((await collect(id)).json.error, 'authorization_pending');

  const { ctx, page } = await signedIn(alice);
  assert.equal(audit('approver.signed_in', 'approver:alice'), signins + 1);
  const [cookie] = await ctx.cookies();
  assert.equal(cookie.name, 'cs_session');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.equal(cookie.secure, false, 'plain http on loopback: ui_cookie_secure is off by default');
  assert.equal(cookie.path, '/ui/');
  assert.ok(!cookie.value.includes(alice));
  // The session id is stored only as a hash.
  assert.equal(b.sql(`SELECT count(*) FROM ui_sessions WHERE encode(id_hash, 'hex') LIKE '%' || encode(convert_to('${cookie.value}', 'UTF8'), 'hex') || '%'`)[0][0], '0');
  assert.equal(await page.textContent('#who-name'), 'alice');

  const card = page.locator(`[data-id="${id}"]`);
  await card.waitFor();
  const text = await card.textContent();
  assert.match(text, /writer/);
  assert.match(text, /dana@example\.com/);
  assert.match(text, /Post the answer to thread 42/);
  assert.match(text, /restart the indexer/);
  assert.match(text, new RegExp(digest(preview)));
  assert.match(text, /forum\.example/);
  assert.match(text, /2 min/);
  assert.match(text, /\d+m \d+s left/);
  assert.equal(await card.locator('.scope.write').count(), 1);
  assert.match(await card.locator('.scope.write').textContent(), /forum:post/);
  assert.doesNotMatch(await card.locator('.scope:not(.write)').textContent(), /write/);
  await page.screenshot({ path: join(ARTIFACTS, 'list.png'), fullPage: true });

  await card.click();
  await page.waitForSelector('#detail-view:not([hidden]) [data-testid="preview"]');
  assert.equal(await page.textContent('[data-testid="preview"]'), preview);
  assert.equal(await page.textContent('[data-testid="digest"]'), digest(preview));
  assert.match(await page.textContent('#detail-view [data-testid="preview-check"]'), /exact content/);
  assert.equal(await page.isVisible('#approve'), true);
  await page.screenshot({ path: join(ARTIFACTS, 'detail.png'), fullPage: true });

  await page.fill('#reason', 'looks right');
  await page.click('#approve');
  await page.waitForSelector('#result.good');
  assert.match(await page.textContent('#result'), /Approved.*alice/);
  assert.equal(await page.textContent('#detail [data-testid="state"]'), 'approved');
  assert.equal(await page.isHidden('#decide'), true);

  // The agent's CIBA poll now succeeds, once.
  const tok = await collect(id);
  assert.equal(tok.status, 200, tok.text);
  assert.ok(tok.json.access_token);
  assert.equal((await collect(id)).status, 400);
  // The page follows: the state turns to consumed within a refresh or two.
  await page.waitForFunction(() => document.querySelector('#detail [data-testid="state"]')?.textContent === 'consumed',
    null, { timeout: 10000 });
  // The decision is the same record the Bearer API writes.
  const row = b.sql(`SELECT p.name, d.decision, d.reason FROM approval_decisions d JOIN approvers p ON p.id = d.approver_id WHERE d.request_id = '${id}'`);
  assert.deepEqual(row, [['alice', 'approve', 'looks right']]);
  await ctx.close();
  assertPng(join(ARTIFACTS, 'list.png'));
  assertPng(join(ARTIFACTS, 'detail.png'));
});

test('deny with a reason: the agent gets access_denied, and the page says who decided', async () => {
  const id = await ask();
  const { ctx, page } = await signedIn(bob);
  await page.locator(`[data-id="${id}"]`).click();
  await page.waitForSelector('#decide:not([hidden])');
  // Denying needs a reason; nothing is sent without one.
  await page.click('#deny');
  await page.waitForSelector('#result.bad');
  assert.match(await page.textContent('#result'), /reason/);
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'pending');
  await page.fill('#reason', 'not this thread');
  await page.click('#deny');
  await page.waitForFunction(() => /Denied/.test(document.getElementById('result').textContent));
  assert.match(await page.textContent('#result'), /Denied.*bob/);
  assert.equal(await page.textContent('#detail [data-testid="state"]'), 'denied');
  const r = await collect(id);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'access_denied');
  // A second approver opening it sees that it is decided, and by whom.
  const other = await signedIn(alice);
  await other.page.selectOption('#state-filter', 'all');
  await other.page.locator(`[data-id="${id}"]`).click();
  await other.page.waitForSelector('#result:not([hidden])');
  assert.match(await other.page.textContent('#result'), /Denied by bob/);
  assert.equal(await other.page.isHidden('#decide'), true);
  await other.ctx.close();
  await ctx.close();
});

test('a sign-in in another tab: the same approver carries on, another is never acted for', async () => {
  const first = await ask();
  const second = await ask();
  const { ctx, page } = await signedIn(alice);
  const other = await ctx.newPage();
  await other.goto(`${b.url}/ui/`);
  const signInFromTab = (key) => other.evaluate(async (k) => (await fetch('/ui/api/session', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: k }) })).status, key);
  // alice signs in again: the first tab's token is stale, and it recovers.
  assert.equal(await signInFromTab(alice), 200);
  await page.locator(`[data-id="${first}"]`).click();
  await page.waitForSelector('#decide:not([hidden])');
  await page.click('#approve');
  await page.waitForSelector('#result.good');
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${first}'`)[0][0], 'approved');
  // bob signs in in the other tab: the first tab must not decide as bob.
  assert.equal(await signInFromTab(bob), 200);
  await page.click('#back');
  await page.locator(`[data-id="${second}"]`).click();
  await page.waitForSelector('#decide:not([hidden])');
  await page.click('#approve');
  await page.waitForSelector('#signin:not([hidden])');
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${second}'`)[0][0], 'pending');
  assert.equal(b.sql(`SELECT count(*) FROM approval_decisions WHERE request_id = '${second}'`)[0][0], '0');
  await ctx.close();
});

test('markup in an agent\'s text is shown as text, never run', async () => {
  const hostile = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
  const details = JSON.stringify([{ type: 'forum_post', preview: '<b onmouseover="window.__xss=3">bold?</b>' + hostile }]);
  const id = await ask({ binding_message: 'hello ' + hostile, authorization_details: details });
  const { ctx, page } = await signedIn(alice);
  const card = page.locator(`[data-id="${id}"]`);
  await card.waitFor();
  assert.match(await card.textContent(), /hello <img src=x onerror=/);
  await card.click();
  await page.waitForSelector('[data-testid="preview"]');
  assert.match(await page.textContent('[data-testid="preview"]'), /^<b onmouseover=/);
  assert.equal(await page.locator('main img, main script, main b').count(), 0);
  await page.hover('[data-testid="preview"]');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await ctx.close();
});

test('a preview that is not the content its digest binds is flagged in red', async () => {
  const details = JSON.stringify([{ type: 'forum_post', action_digest: digest('Paste your token here.'), preview: 'Thanks, looking into it.' }]);
  const id = await ask({ binding_message: 'a friendly note', authorization_details: details });
  const { ctx, page } = await signedIn(alice);
  const card = page.locator(`[data-id="${id}"]`);
  await card.waitFor();
  assert.match(await card.textContent(), /NOT the content the digest binds/);
  await card.click();
  const note = page.locator('#detail-view [data-testid="preview-check"]');
  await note.waitFor();
  assert.match(await note.textContent(), /^Warning: this preview is NOT the content the digest binds/);
  assert.match(await note.getAttribute('class'), /\bbad\b/);
  await ctx.close();
});

test('an expired request shows a clear message and cannot be decided', async () => {
  const id = await ask({ requested_expiry: '3' });
  const { ctx, page } = await signedIn(alice);
  await page.locator(`[data-id="${id}"]`).click();
  await page.waitForSelector('#decide:not([hidden])');
  await sleep(3500);
  // Clicking approve after the deadline, or simply waiting for the
  // refresh, ends in the same plain message.
  await page.click('#approve', { timeout: 2000 }).catch(() => {});
  await page.waitForFunction(() => /has expired/.test(document.getElementById('result').textContent), null, { timeout: 10000 });
  assert.equal(await page.isVisible('#result.bad'), true);
  await page.waitForSelector('#decide', { state: 'hidden' });
  assert.notEqual(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'approved');
  // The JSON answer behind it.
  const s = await apiSignIn(alice);
  const r = await uiCall('POST', `/ui/api/approvals/${id}/approve`, { cookie: s.cookie, csrf: s.csrf, body: {} });
  assert.equal(r.status, 409);
  assert.equal(r.json.error, 'conflict');
  assert.match(r.json.error_description, /expired/);
  assert.equal((await collect(id)).json.error, 'expired_token');
  await ctx.close();
});

test('CSRF: cross-origin requests and requests without the token are refused with 403', async () => {
  const id = await ask();
  const s = await apiSignIn(alice);
  const path = `/ui/api/approvals/${id}/approve`;
  const refusals = [
    ['cross-origin Origin', { origin: 'http://evil.example', csrf: s.csrf }],
    ['Origin null', { origin: 'null', csrf: s.csrf }],
    ['cross-site fetch', { site: 'cross-site', csrf: s.csrf }],
    ['same-site fetch', { site: 'same-site', csrf: s.csrf }],
    ['no CSRF token', { origin: b.url, site: 'same-origin' }],
    ['wrong CSRF token', { origin: b.url, csrf: 'A'.repeat(43) }],
    ['another session\'s token', { origin: b.url, csrf: (await apiSignIn(bob)).csrf }],
  ];
  for (const [name, h] of refusals) {
    const r = await uiCall('POST', path, { cookie: s.cookie, body: {}, ...h });
    assert.equal(r.status, 403, name);
    assert.equal(r.json.error, 'forbidden', name);
    assert.ok(r.json.error_description, name);
  }
  // Signing out and signing in are guarded the same way.
  assert.equal((await uiCall('DELETE', '/ui/api/session', { cookie: s.cookie })).status, 403);
  assert.equal((await uiCall('POST', '/ui/api/session', { origin: 'http://evil.example', body: { key: alice } })).status, 403);
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'pending');
  // A form on another site, posted by the browser: the cookie is not even
  // sent (SameSite=Strict), and nothing changes.
  const { ctx, page } = await signedIn(alice);
  const evil = await ctx.newPage();
  const other = b.url.replace('127.0.0.1', 'localhost');
  await evil.route(`${other}/evil`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<form id="f" method="post" enctype="text/plain" action="${b.url}${path}"><input name='{"a":"' value='"}'></form>`,
  }));
  await evil.goto(`${other}/evil`);
  const [resp] = await Promise.all([evil.waitForResponse((x) => x.url().endsWith(path)), evil.evaluate(() => document.getElementById('f').submit())]);
  assert.ok([401, 403].includes(resp.status()), `status ${resp.status()}`);
  assert.equal(b.sql(`SELECT state FROM approval_requests WHERE id = '${id}'`)[0][0], 'pending');
  // The same request from our own page, with the token, goes through: the
  // refusals above are about origin and token, not a broken endpoint.
  const ok = await uiCall('POST', path, { cookie: s.cookie, csrf: s.csrf, origin: b.url, site: 'same-origin', body: {} });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.state, 'approved');
  await ctx.close();
});

test('a narrow phone screen renders the list without sideways scrolling', async () => {
  const id = await ask({ binding_message: 'A long message: ' + 'word '.repeat(60) });
  const { ctx, page } = await signedIn(alice, { width: 375, height: 740 });
  const card = page.locator(`[data-id="${id}"]`);
  await card.waitFor();
  assert.ok(await card.isVisible());
  const box = await card.boundingBox();
  assert.ok(box.width <= 375 && box.x >= 0, JSON.stringify(box));
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(widths[0] <= widths[1], `page is ${widths[0]}px wide in a ${widths[1]}px screen`);
  await page.screenshot({ path: join(ARTIFACTS, 'list-narrow.png'), fullPage: true });
  await card.click();
  await page.waitForSelector('#decide:not([hidden])');
  const approve = await page.locator('#approve').boundingBox();
  assert.ok(approve.x + approve.width <= 375);
  await page.screenshot({ path: join(ARTIFACTS, 'detail-narrow.png'), fullPage: true });
  assertPng(join(ARTIFACTS, 'list-narrow.png'));
  assertPng(join(ARTIFACTS, 'detail-narrow.png'));
  await ctx.close();
});

test('sessions: shared by brokers on one database, ended by sign-out and expiry', async () => {
  // A second broker on the same database and master key accepts the session.
  const b2 = await Broker.start({ db: b.db, migrate: false, env: {
    COUNTERSIGN_MASTER_KEY_FILE: b.env.COUNTERSIGN_MASTER_KEY_FILE } });
  try {
    const { ctx, page } = await signedIn(alice);
    const [c] = await ctx.cookies();
    const cookie = `${c.name}=${c.value}`;
    const r2 = await fetch(`${b2.url}/ui/api/session`, { headers: { cookie } });
    assert.equal(r2.status, 200);
    assert.equal((await r2.json()).approver.name, 'alice');
    const signouts = audit('approver.signed_out', 'approver:alice');
    await page.click('#signout');
    await page.waitForSelector('#signin:not([hidden])');
    assert.equal(audit('approver.signed_out', 'approver:alice'), signouts + 1);
    assert.equal((await fetch(`${b2.url}/ui/api/session`, { headers: { cookie } })).status, 401);
    assert.equal((await uiCall('GET', '/ui/api/approvals', { cookie })).status, 401);
    await ctx.close();
    // An expired session is refused, and the page asks to sign in again.
    const s = await signedIn(bob);
    b.sql("UPDATE ui_sessions SET expires_at = now() - interval '1 second'");
    await s.page.waitForSelector('#signin:not([hidden])', { timeout: 10000 });
    assert.match(await s.page.textContent('#notice'), /session has ended/);
    await s.ctx.close();
    // Disabling the approver ends their sessions too.
    const d = await apiSignIn(bob);
    assert.equal((await uiCall('GET', '/ui/api/session', { cookie: d.cookie })).status, 200);
    b.cliOk('approver', 'disable', 'bob');
    assert.equal((await uiCall('GET', '/ui/api/session', { cookie: d.cookie })).status, 401);
  } finally {
    await b2.stop();
  }
  // Nothing secret in the audit trail: no key, no session id, no CSRF token.
  const s = await apiSignIn(alice);
  const all = b.sql('SELECT details::text FROM audit_events').map((r) => r[0]).join('\n');
  for (const secret of [alice, bob, s.cookie.split('=')[1], s.csrf]) assert.ok(!all.includes(secret));
  assert.ok(!b.logs.includes(s.cookie.split('=')[1]), 'a session id is in the log');
});

test('an unused session ends after ui_session_idle; using it keeps it alive', async () => {
  const s = await apiSignIn(alice);
  const hash = () => b.sql('SELECT encode(id_hash, \'hex\') FROM ui_sessions ORDER BY created_at DESC LIMIT 1')[0][0];
  const mine = hash();
  const seen = () => Number(b.sql(`SELECT extract(epoch FROM now() - last_seen_at) FROM ui_sessions WHERE id_hash = '\\x${mine}'`)[0][0]);
  // Used 20 minutes ago (idle default 30 minutes): still alive, and this use
  // moves last_seen_at.
  b.sql(`UPDATE ui_sessions SET last_seen_at = now() - interval '20 minutes' WHERE id_hash = '\\x${mine}'`);
  assert.equal((await uiCall('GET', '/ui/api/session', { cookie: s.cookie })).status, 200);
  assert.ok(seen() < 60, 'a use counts as activity');
  // Unused for 31 minutes: refused, though its absolute expiry is hours away.
  b.sql(`UPDATE ui_sessions SET last_seen_at = now() - interval '31 minutes' WHERE id_hash = '\\x${mine}'`);
  const r = await uiCall('GET', '/ui/api/session', { cookie: s.cookie });
  assert.equal(r.status, 401);
  assert.equal((await uiCall('GET', '/ui/api/approvals', { cookie: s.cookie })).status, 401);
  // The broker's role may move last_seen_at and nothing else.
  assert.throws(() => sql(b.cluster.urlAs(b.db, 'countersign_broker'),
    "UPDATE ui_sessions SET expires_at = now() + interval '1 year'"), /permission denied/);
});

test('approver rotate-key and signout end a compromised key and its sessions at once, audited', async () => {
  const key1 = b.cliOk('approver', 'add', 'dave', '--groups', 'forum-mods', '--json').json.api_key;
  const bearer = (key) => fetch(`${b.url}/v1/approvals`, { headers: { authorization: `Bearer ${key}` } });
  const s1 = await apiSignIn(key1);
  assert.equal((await bearer(key1)).status, 200);
  const r = b.cliOk('approver', 'rotate-key', 'dave', '--json').json;
  const key2 = r.api_key;
  assert.equal(r.name, 'dave');
  assert.match(key2, /^[A-Za-z0-9_-]{20,}$/);
  assert.notEqual(key2, key1);
  assert.equal((await bearer(key1)).status, 401, 'the old key stops working');
  assert.equal((await bearer(key2)).status, 200);
  assert.equal((await uiCall('GET', '/ui/api/session', { cookie: s1.cookie })).status, 401,
    'a session signed in with the old key ends');
  const [[details]] = b.sql("SELECT details::text FROM audit_events WHERE type = 'approver.key_rotated' " +
    "AND subject = 'approver:dave'");
  assert.equal(JSON.parse(details).sessions_ended, 1);
  // signout ends every web session; the key keeps working.
  const a = await apiSignIn(key2);
  const c = await apiSignIn(key2);
  const out = b.cliOk('approver', 'signout', 'dave', '--json').json;
  assert.deepEqual(out, { name: 'dave', sessions_ended: 2 });
  for (const x of [a, c]) assert.equal((await uiCall('GET', '/ui/api/session', { cookie: x.cookie })).status, 401);
  assert.equal((await bearer(key2)).status, 200);
  assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE type = 'approver.signed_out' " +
    "AND subject = 'approver:dave' AND details->>'via' = 'cli'")[0][0], '1');
  // Unknown or disabled approvers get no key; no key ever reaches the audit log.
  assert.equal(b.cli('approver', 'rotate-key', 'nobody').code, 1);
  b.cliOk('approver', 'disable', 'dave');
  assert.equal(b.cli('approver', 'rotate-key', 'dave').code, 1);
  assert.equal(b.cli('approver', 'signout', 'nobody').code, 1);
  const all = b.sql('SELECT details::text FROM audit_events').map((x) => x[0]).join('\n');
  for (const k of [key1, key2]) assert.ok(!all.includes(k));
});

test('approver keys expire: approver_key_ttl by default, --key-ttl per key; an expired key and its sessions stop, audited', async () => {
  const bearer = (key) => fetch(`${b.url}/v1/approvals`, { headers: { authorization: `Bearer ${key}` } })
    .then(async (r) => ({ status: r.status, json: await r.json() }));
  const listed = (name) => b.cliOk('approver', 'list', '--json').json.find((x) => x.name === name);
  const near = (iso, seconds, slack) => {
    const at = Date.parse(iso);
    assert.ok(Number.isFinite(at), iso);
    assert.ok(Math.abs(at - (Date.now() + seconds * 1000)) <= slack * 1000, `${iso} is not ${seconds}s from now`);
  };

  // A key that lasts 2 seconds works, and so does a session it signs in.
  const made = b.cliOk('approver', 'add', 'erin', '--groups', 'forum-mods', '--key-ttl', '2', '--json').json;
  near(made.key_expires_at, 2, 1);
  assert.equal((await bearer(made.api_key)).status, 200);
  const s = await apiSignIn(made.api_key);
  assert.equal((await uiCall('GET', '/ui/api/session', { cookie: s.cookie })).status, 200);
  assert.equal(listed('erin').key_expired, false);
  await sleep(Math.max(0, Date.parse(made.key_expires_at) - Date.now()) + 300);
  // Then neither does: the key says why, the session ends with it.
  const r = await bearer(made.api_key);
  assert.equal(r.status, 401);
  assert.match(r.json.error_description, /approver key expired/);
  assert.equal((await uiCall('GET', '/ui/api/session', { cookie: s.cookie })).status, 401);
  assert.equal((await uiCall('POST', '/ui/api/session', { body: { key: made.api_key } })).status, 401);
  assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE type = 'approver.auth_failed' " +
    "AND subject = 'approver:erin' AND details->>'reason' = 'key_expired'")[0][0], '2');
  assert.equal(listed('erin').key_expired, true);

  // rotate-key gives a new key with a new lifetime; 0 is no expiry.
  const rot = b.cliOk('approver', 'rotate-key', 'erin', '--key-ttl', '0', '--json').json;
  assert.equal(rot.key_expires_at, null);
  assert.equal((await bearer(rot.api_key)).status, 200);
  assert.deepEqual([listed('erin').key_expires_at, listed('erin').key_expired], [null, false]);
  const [[rotated]] = b.sql("SELECT details::text FROM audit_events WHERE type = 'approver.key_rotated' AND subject = 'approver:erin'");
  assert.equal(JSON.parse(rotated).key_expires_at, null);
  const text = b.cliOk('approver', 'rotate-key', 'erin', '--key-ttl', '12h').stdout;
  assert.match(text, /the key expires at /);
  near(listed('erin').key_expires_at, 12 * 3600, 60);

  // Without --key-ttl, approver_key_ttl: 90 days unless configured.
  const frank = b.cliOk('approver', 'add', 'frank', '--groups', 'forum-mods', '--json').json;
  near(frank.key_expires_at, 90 * 86400, 60);
  const [[created]] = b.sql("SELECT details::text FROM audit_events WHERE type = 'approver.created' AND subject = 'approver:frank'");
  near(JSON.parse(created).key_expires_at, 90 * 86400, 60);
  process.env.COUNTERSIGN_APPROVER_KEY_TTL = '1h';
  try {
    near(b.cliOk('approver', 'rotate-key', 'frank', '--json').json.key_expires_at, 3600, 60);
    process.env.COUNTERSIGN_APPROVER_KEY_TTL = '0';
    assert.equal(b.cliOk('approver', 'rotate-key', 'frank', '--json').json.key_expires_at, null);
    process.env.COUNTERSIGN_APPROVER_KEY_TTL = 'soon';
    const bad = b.cli('approver', 'rotate-key', 'frank');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /approver_key_ttl/);
  } finally {
    delete process.env.COUNTERSIGN_APPROVER_KEY_TTL;
  }
  for (const v of ['400d', 'soon', '-1', '']) {
    const x = b.cli('approver', 'add', 'gina', '--groups', 'forum-mods', '--key-ttl', v);
    assert.equal(x.code, 2, v);
  }
  assert.equal(listed('gina'), undefined);
  const all = b.sql('SELECT details::text FROM audit_events').map((x) => x[0]).join('\n');
  for (const k of [made.api_key, rot.api_key, frank.api_key]) assert.ok(!all.includes(k));
});

test('with ui_cookie_secure the cookie is __Host-, Secure, and only an https Origin passes', async () => {
  const b3 = await Broker.start({ db: b.db, migrate: false, env: {
    COUNTERSIGN_MASTER_KEY_FILE: b.env.COUNTERSIGN_MASTER_KEY_FILE,
    COUNTERSIGN_UI_COOKIE_SECURE: '1', COUNTERSIGN_UI_SESSION_TTL: '10m' } });
  try {
    const host = new URL(b3.url).host;
    const signIn = (origin) => fetch(`${b3.url}/ui/api/session`, { method: 'POST',
      headers: { 'content-type': 'application/json', origin }, body: JSON.stringify({ key: alice }) });
    assert.equal((await signIn(`http://${host}`)).status, 403, 'a plain-http origin');
    const r = await signIn(`https://${host}`);
    assert.equal(r.status, 200);
    const [set] = r.headers.getSetCookie();
    assert.match(set, /^__Host-cs_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=600; HttpOnly; SameSite=Strict; Secure$/);
    const cookie = set.split(';')[0];
    assert.equal((await fetch(`${b3.url}/ui/api/session`, { headers: { cookie } })).status, 200);
    // The plain cookie name is not accepted in its place.
    assert.equal((await fetch(`${b3.url}/ui/api/session`, { headers: { cookie: cookie.replace('__Host-', '') } })).status, 401);
  } finally {
    await b3.stop();
  }
});

// Last: it locks this client address out of sign-in for a minute.
test('repeated failed sign-ins lock the address out (429), even for a right key', async () => {
  let status;
  let tries = 0;
  for (; tries < AUTH_FAILURES + 2; tries++) {
    status = (await uiCall('POST', '/ui/api/session', { body: { key: 'z'.repeat(43) } })).status;
    if (status === 429) break;
    assert.equal(status, 401);
  }
  assert.equal(status, 429, 'no lockout');
  const r = await uiCall('POST', '/ui/api/session', { body: { key: alice } });
  assert.equal(r.status, 429);
  assert.equal(r.json.error, 'rate_limited');
  assert.ok(Number(r.headers.get('retry-after')) > 0);
});
