// End-to-end: tripwires suspend an agent whose behaviour looks like a
// compromise (too many write requests, a never-seen audience, too many
// refusals), across broker processes; approvers hear of it by webhook; an
// operator resumes it. And per-scope rate limits answer 429.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Broker, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const WIKI = 'https://wiki.example';
let b;
let svc;
const hooks = [];
let hookServer;

before(async () => {
  hookServer = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      hooks.push({ raw: body, json: JSON.parse(body) });
      res.end('ok');
    });
  });
  await new Promise((r) => hookServer.listen(0, '127.0.0.1', r));
  b = await Broker.start({
    env: {
      COUNTERSIGN_WEBHOOK_URL: `http://127.0.0.1:${hookServer.address().port}/hook`,
      COUNTERSIGN_RATE_SCOPES: 'forum:search=3,wiki:read=1000',
    },
  });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:search', '--kind', 'read');
  b.cliOk('scope', 'add', 'wiki:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  const s = b.cliOk('service', 'add', 'forum', '--audience', `${AUD},${WIKI}`, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
});

after(async () => {
  await b.stop();
  hookServer.close();
});

function makeAgent(name) {
  const a = b.agent(name);
  for (const sc of ['forum:read', 'forum:search', 'forum:post']) b.cliOk('grant', 'add', name, sc, '--audience', AUD);
  b.cliOk('grant', 'add', name, 'wiki:read', '--audience', WIKI);
  return a;
}

const token = (who, extra = {}, broker = b) => broker.post('/oauth2/token', {
  grant_type: 'client_credentials', scope: 'forum:read', resource: AUD, ...extra,
}, { auth: who });

const askWrite = (who) => b.post('/oauth2/bc-authorize', {
  scope: 'forum:post', resource: AUD, binding_message: 'post a reply',
}, { auth: who });

const introspect = (t) => b.post('/oauth2/introspect', { token: t }, { auth: svc });

function addRule(...args) {
  const r = b.cliOk('tripwire', 'add', ...args, '--json');
  return r.json.id;
}

// The request path reads rules through a one-second cache.
const ruleCache = () => sleep(1100);

function suspension(name) {
  return b.sql(`SELECT actor, details->>'rule', details->>'kind', details->>'observed', details->>'audience',
                       details->>'tokens_revoked'
                FROM audit_events WHERE type = 'agent.suspended' AND subject = 'agent:${name}' ORDER BY seq`);
}

async function hookFor(name) {
  for (let i = 0; i < 50; i++) {
    const h = hooks.find((x) => x.json.event === 'agent.suspended' && x.json.data.agent === name);
    if (h) return h;
    await sleep(100);
  }
  return undefined;
}

async function assertSuspended(who, liveToken) {
  const r = await token(who);
  assert.equal(r.status, 401, r.text);
  assert.equal(r.json.error, 'invalid_client');
  const w = await askWrite(who);
  assert.equal(w.status, 401);
  assert.equal(w.json.error, 'invalid_client');
  if (liveToken) assert.deepEqual((await introspect(liveToken)).json, { active: false });
}

test('write_requests: asking for more write approvals than allowed suspends the agent', async () => {
  const w = makeAgent('writer');
  const id = addRule('write_requests', '--threshold', '2', '--window', '10m', '--agent', 'writer');
  await ruleCache();
  const live = (await token(w)).json.access_token;
  assert.equal((await introspect(live)).json.active, true);
  assert.equal((await askWrite(w)).status, 200);
  assert.equal((await askWrite(w)).status, 200);
  const third = await askWrite(w);
  assert.equal(third.status, 401, third.text);
  assert.equal(third.json.error, 'invalid_client');
  // The third request was refused before it reached any approver.
  assert.equal(b.sql(`SELECT count(*) FROM approval_requests r JOIN agents a ON a.id = r.agent_id
                      WHERE a.name = 'writer'`)[0][0], '2');
  await assertSuspended(w, live);
  const ev = suspension('writer');
  assert.equal(ev.length, 1);
  assert.deepEqual(ev[0].slice(0, 4), [`tripwire:${id}`, String(id), 'write_requests', '3']);
  assert.equal(ev[0][5], '1', 'the live token was revoked');
  const list = b.cliOk('agent', 'list', '--json').json.find((a) => a.name === 'writer');
  assert.equal(list.suspended, true);
  assert.equal(list.disabled, true);
  // Approvers hear of it; the payload carries no token.
  const h = await hookFor('writer');
  assert.ok(h, 'webhook received');
  assert.equal(h.json.data.rule, id);
  assert.equal(h.json.data.kind, 'write_requests');
  assert.match(h.json.text, /agent resume writer/);
  assert.equal(h.raw.includes(live.split('.')[2]), false);
});

test('agent resume lifts a suspension, audited, and the counting starts afresh', async () => {
  const r = b.cliOk('agent', 'resume', 'writer', '--json');
  assert.equal(r.json.resumed, true);
  const ev = b.sql(`SELECT actor, details->>'rule' FROM audit_events WHERE type = 'agent.resumed' AND subject = 'agent:writer'`);
  assert.equal(ev.length, 1);
  assert.match(ev[0][0], /^admin:/);
  assert.equal(b.cliOk('agent', 'list', '--json').json.find((a) => a.name === 'writer').suspended, false);
  // Resuming again, or resuming an agent that is not suspended, fails.
  assert.notEqual(b.cli('agent', 'resume', 'writer').code, 0);
  assert.notEqual(b.cli('agent', 'resume', 'no-such-agent').code, 0);
});

test('a resumed agent authenticates and mints again; old tokens stay revoked', async () => {
  const a = makeAgent('resumable');
  addRule('denials', '--threshold', '0', '--window', '10m', '--agent', 'resumable');
  await ruleCache();
  const live = (await token(a)).json.access_token;
  const bad = await token(a, { scope: 'forum:nope' });
  assert.equal(bad.status, 400);
  await assertSuspended(a, live);
  b.cliOk('agent', 'resume', 'resumable');
  const again = await token(a);
  assert.equal(again.status, 200, again.text);
  assert.equal((await introspect(again.json.access_token)).json.active, true);
  assert.deepEqual((await introspect(live)).json, { active: false });
  // The refusal before the resumption no longer counts; a new one does.
  assert.equal((await token(a)).status, 200);
  assert.equal((await token(a, { scope: 'forum:nope' })).status, 400);
  assert.equal((await token(a)).status, 401);
  assert.equal(suspension('resumable').length, 2);
});

test('an operator-disabled agent is not resumed, and disabling a suspended one sticks', async () => {
  makeAgent('killed');
  b.cliOk('agent', 'disable', 'killed');
  const r = b.cli('agent', 'resume', 'killed');
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /disabled by an operator/);
  const s = makeAgent('both');
  addRule('denials', '--threshold', '0', '--window', '1h', '--agent', 'both');
  await ruleCache();
  await token(s, { scope: 'forum:nope' });
  assert.equal((await token(s)).status, 401);
  b.cliOk('agent', 'disable', 'both');
  assert.notEqual(b.cli('agent', 'resume', 'both').code, 0);
  assert.equal((await token(s)).status, 401);
});

test('new_audience: a first-ever audience suspends an agent with history; resume accepts it', async () => {
  const n = makeAgent('navigator');
  addRule('new_audience', '--agent', 'navigator');
  await ruleCache();
  // The very first token is the baseline, not a deviation.
  const first = await token(n);
  assert.equal(first.status, 200, first.text);
  assert.equal((await token(n)).status, 200);
  const wiki = await token(n, { scope: 'wiki:read', resource: WIKI });
  assert.equal(wiki.status, 401, wiki.text);
  assert.equal(wiki.json.error, 'invalid_client');
  await assertSuspended(n, first.json.access_token);
  const ev = suspension('navigator');
  assert.equal(ev.length, 1);
  assert.equal(ev[0][2], 'new_audience');
  assert.equal(ev[0][4], WIKI);
  const h = await hookFor('navigator');
  assert.equal(h.json.data.audience, WIKI);
  b.cliOk('agent', 'resume', 'navigator');
  const ok = await token(n, { scope: 'wiki:read', resource: WIKI });
  assert.equal(ok.status, 200, ok.text);
  assert.equal((await token(n)).status, 200);
});

test('new_audience applies to agents it names only, and a rule for all agents catches others', async () => {
  const o = makeAgent('other');
  await ruleCache();
  assert.equal((await token(o)).status, 200);
  assert.equal((await token(o, { scope: 'wiki:read', resource: WIKI })).status, 200, 'no rule for this agent');
  const g = makeAgent('global-one');
  const id = addRule('new_audience');
  await ruleCache();
  assert.equal((await token(g)).status, 200);
  assert.equal((await token(g, { scope: 'wiki:read', resource: WIKI })).status, 401);
  b.cliOk('tripwire', 'remove', String(id));
  assert.equal(b.cliOk('tripwire', 'list', '--json').json.some((r) => r.id === id), false);
});

test('denials: more refusals than the threshold suspends the agent, counted across two brokers', async () => {
  const d = makeAgent('prober');
  const id = addRule('denials', '--threshold', '2', '--window', '5m', '--agent', 'prober');
  const b2 = await Broker.start({
    db: b.db, migrate: false,
    env: {
      COUNTERSIGN_MASTER_KEY_FILE: b.env.COUNTERSIGN_MASTER_KEY_FILE,
      COUNTERSIGN_RATE_SCOPES: 'forum:search=3',
    },
  });
  try {
    await ruleCache();
    const live = (await token(d)).json.access_token;
    assert.equal((await token(d, { scope: 'forum:delete' })).status, 400);
    assert.equal((await token(d, { resource: 'https://evil.example' })).status, 400);
    // Two refusals so far: not more than 2.
    assert.equal((await token(d, {}, b2)).status, 200);
    // The third, at the other broker, trips the rule.
    const third = await token(d, { scope: 'forum:post' }, b2);
    assert.equal(third.status, 400);
    await assertSuspended(d, live);
    const r = await token(d, {}, b2);
    assert.equal(r.status, 401);
    const ev = suspension('prober');
    assert.equal(ev.length, 1);
    assert.equal(ev[0][1], String(id));
    assert.equal(ev[0][3], '3');
  } finally {
    await b2.stop();
  }
});

test('exchange refusals count as denials too', async () => {
  const x = makeAgent('exchanger');
  addRule('denials', '--threshold', '1', '--window', '5m', '--agent', 'exchanger');
  await ruleCache();
  const t = (await token(x)).json.access_token;
  const ex = (scope) => b.post('/oauth2/token', {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: t,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope,
  }, { auth: x });
  assert.equal((await ex('forum:post')).status, 400);
  assert.equal((await ex('forum:search')).status, 400);
  assert.equal((await ex('forum:read')).status, 401);
  assert.equal(suspension('exchanger').length, 1);
});

test('tripwire CLI refuses bad rules', async () => {
  for (const args of [
    ['bogus_kind', '--threshold', '1', '--window', '1m'],
    ['denials', '--threshold', '1'],
    ['denials', '--threshold', '-1', '--window', '1m'],
    ['denials', '--threshold', 'x', '--window', '1m'],
    ['write_requests', '--threshold', '1', '--window', 'forever'],
    ['new_audience', '--threshold', '3'],
    ['denials', '--threshold', '1', '--window', '1m', '--agent', 'nobody'],
  ]) {
    const r = b.cli('tripwire', 'add', ...args);
    assert.notEqual(r.code, 0, args.join(' '));
  }
  assert.notEqual(b.cli('tripwire', 'remove', '999999').code, 0);
  assert.notEqual(b.cli('tripwire', 'remove', 'abc').code, 0);
  const id = addRule('denials', '--threshold', '5', '--window', '1h');
  const listed = b.cliOk('tripwire', 'list', '--json').json.find((r) => r.id === id);
  assert.deepEqual({ ...listed, created_at: undefined },
    { id, kind: 'denials', threshold: 5, window_seconds: 3600, agent: null, created_at: undefined });
  b.cliOk('tripwire', 'remove', String(id));
  const audit = b.sql(`SELECT type FROM audit_events WHERE subject = 'tripwire:${id}' ORDER BY seq`).map((r) => r[0]);
  assert.deepEqual(audit, ['tripwire.created', 'tripwire.removed']);
});

test('a per-scope limit answers 429 with Retry-After, for that scope and agent only', async () => {
  const r1 = makeAgent('searcher');
  const r2 = makeAgent('searcher2');
  for (let i = 0; i < 3; i++) {
    const r = await token(r1, { scope: 'forum:search' });
    assert.equal(r.status, 200, r.text);
  }
  const limited = await token(r1, { scope: 'forum:read forum:search' });
  assert.equal(limited.status, 429);
  assert.equal(limited.json.error, 'rate_limited');
  assert.match(limited.json.error_description, /forum:search/);
  const ra = Number(limited.headers.get('retry-after'));
  assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 60, `Retry-After ${ra}`);
  // Another scope, and another agent, are unaffected.
  assert.equal((await token(r1, { scope: 'forum:read' })).status, 200);
  assert.equal((await token(r2, { scope: 'forum:search' })).status, 200);
  // bc-authorize naming the scope draws from the same budget.
  const bc = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:search', resource: AUD, binding_message: 'x',
  }, { auth: r1 });
  assert.equal(bc.status, 429);
  const ev = b.sql(`SELECT details->>'limit' FROM audit_events WHERE type = 'rate.limited'
                    AND subject = 'searcher' ORDER BY seq DESC LIMIT 1`);
  assert.equal(ev[0][0], 'scope forum:search');
});

test('a bad rate_scopes setting stops the broker at start', async () => {
  const bad = await Broker.start({ db: b.db, migrate: false,
    env: { COUNTERSIGN_MASTER_KEY_FILE: b.env.COUNTERSIGN_MASTER_KEY_FILE, COUNTERSIGN_RATE_SCOPES: 'forum:search=lots' } })
    .then((x) => x, (e) => e);
  assert.ok(bad instanceof Error, 'the broker must refuse to start');
  assert.match(bad.message, /rate_scopes/);
});
