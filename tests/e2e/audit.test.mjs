// End-to-end: the audit log is append-only by PostgreSQL's own rules,
// hash-chained by the broker's sealer, and `countersign audit verify`
// finds every kind of tampering the maintenance role can do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Broker, Cluster, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
let b;
let agent;

async function setup(env = {}) {
  const br = await Broker.start({ env: { COUNTERSIGN_AUDIT_GAP_GRACE: '1', ...env } });
  br.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  const a = br.agent('auditee');
  br.cliOk('grant', 'add', 'auditee', 'forum:read', '--audience', AUD);
  return { br, a };
}

before(async () => {
  ({ br: b, a: agent } = await setup());
});

after(async () => {
  await b.stop();
});

const token = (br, a) => br.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: a });

// psql as another role of the same database.
function sqlAs(br, role, query) {
  const url = Cluster.shared().urlAs(br.db, role);
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', url, '-c', query],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function sqlAsFails(br, role, query) {
  try {
    sqlAs(br, role, query);
  } catch (e) {
    return e.stderr.toString();
  }
  return null;
}

async function sealed(br) {
  // The sealer runs every 200 ms; wait until every committed event is chained.
  for (let i = 0; i < 50; i++) {
    const [[unsealed]] = br.sql('SELECT count(*) FROM audit_events e LEFT JOIN audit_chain c ON c.seq = e.seq WHERE c.seq IS NULL');
    if (unsealed === '0') return;
    await sleep(100);
  }
  throw new Error('the sealer did not catch up');
}

function verify(br, ...args) {
  const r = br.cli('audit', 'verify', '--json', ...args);
  return { code: r.code, ...(r.json || {}), stderr: r.stderr };
}

test('the broker role cannot UPDATE, DELETE or TRUNCATE audit rows', async () => {
  assert.equal((await token(b, agent)).status, 200);
  for (const q of [
    "UPDATE audit_events SET type = 'x'",
    'DELETE FROM audit_events',
    'TRUNCATE audit_events',
    "UPDATE audit_chain SET kind = 'gap'",
    'DELETE FROM audit_chain',
    'TRUNCATE audit_chain',
  ]) {
    const err = sqlAsFails(b, 'countersign_broker', q);
    assert.ok(err, q);
    assert.match(err, /permission denied/, q);
  }
  // Even the owner (a superuser here) is stopped by the triggers.
  for (const q of ["UPDATE audit_events SET type = 'x'", 'DELETE FROM audit_events', 'TRUNCATE audit_events']) {
    const err = sqlAsFails(b, 'postgres', q);
    assert.match(err || '', /append-only/, q);
  }
  // The auditor may read, and nothing else.
  assert.ok(Number(sqlAs(b, 'countersign_auditor', 'SELECT count(*) FROM audit_events')) > 0);
  assert.match(sqlAsFails(b, 'countersign_auditor', "INSERT INTO audit_events (type, actor) VALUES ('x','y')"), /permission denied/);
});

test('every event is chained and verify passes', async () => {
  for (let i = 0; i < 10; i++) assert.equal((await token(b, agent)).status, 200);
  await sealed(b);
  const r = verify(b);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.ok, true);
  const [[events]] = b.sql('SELECT count(*) FROM audit_events');
  const [[links]] = b.sql("SELECT count(*) FROM audit_chain WHERE kind = 'event'");
  assert.equal(links, events);
  assert.ok(r.checked >= Number(events));
  assert.match(r.head_hash, /^[0-9a-f]{64}$/);
  // --from starts later and trusts the link before it.
  const mid = Math.floor(r.head_seq / 2);
  const partial = verify(b, '--from', String(mid));
  assert.equal(partial.ok, true);
  assert.equal(partial.checked, r.checked - mid + 1);
  // Human output.
  const h = b.cli('audit', 'verify');
  assert.equal(h.code, 0);
  assert.match(h.stdout, /audit chain ok/);
});

async function tampered(mutate, expectProblem) {
  const { br, a } = await setup();
  try {
    for (let i = 0; i < 6; i++) assert.equal((await token(br, a)).status, 200);
    await sealed(br);
    assert.equal(verify(br).ok, true);
    const seqs = br.sql("SELECT seq FROM audit_events WHERE type = 'token.issued' ORDER BY seq").map((r) => Number(r[0]));
    const target = seqs[2];
    mutate(br, target, seqs);
    const r = verify(br);
    assert.equal(r.code, 3, JSON.stringify(r));
    assert.equal(r.ok, false);
    assert.equal(r.bad_seq, target, r.problem);
    assert.match(r.problem, expectProblem);
    const h = br.cli('audit', 'verify');
    assert.equal(h.code, 3);
    assert.match(h.stdout, new RegExp(`BROKEN at seq ${target}`));
  } finally {
    await br.stop();
  }
}

test('an edited event is detected', () => tampered((br, seq) => {
  sqlAs(br, 'countersign_maintenance', `UPDATE audit_events SET details = details || '{"ttl": 3600}' WHERE seq = ${seq}`);
}, /altered/));

test('a deleted event is detected', () => tampered((br, seq) => {
  sqlAs(br, 'countersign_maintenance', `DELETE FROM audit_events WHERE seq = ${seq}`);
}, /deleted/));

test('reordered events are detected', () => tampered((br, seq, seqs) => {
  // Swap the contents of two events (same type, different jti and time).
  const other = seqs[3];
  sqlAs(br, 'countersign_maintenance', `UPDATE audit_events a SET jti = b.jti, time = b.time, details = b.details
    FROM audit_events b WHERE (a.seq, b.seq) IN ((${seq}, ${other}), (${other}, ${seq}))`);
}, /altered or reordered/));

test('a deleted chain link is detected', () => tampered((br, seq) => {
  sqlAs(br, 'countersign_maintenance', `DELETE FROM audit_chain WHERE seq = ${seq}`);
}, /missing/));

test('an event inserted where the chain recorded a gap is detected', async () => {
  const { br, a } = await setup();
  try {
    assert.equal((await token(br, a)).status, 200);
    // Burn a sequence number, as a rolled-back transaction does.
    const [[gap]] = br.sql("SELECT nextval('audit_events_seq_seq')");
    for (let i = 0; i < 3; i++) assert.equal((await token(br, a)).status, 200);
    await sleep(1500);	// past the 1 s gap grace of this broker
    await sealed(br);
    const [[kind]] = br.sql(`SELECT kind FROM audit_chain WHERE seq = ${gap}`);
    assert.equal(kind, 'gap');
    assert.equal(verify(br).ok, true, 'a gap is explained, not an error');
    sqlAs(br, 'countersign_maintenance', `INSERT INTO audit_events (seq, type, actor) VALUES (${gap}, 'token.issued', 'agent:auditee')`);
    const r = verify(br);
    assert.equal(r.ok, false);
    assert.equal(r.bad_seq, Number(gap));
    assert.match(r.problem, /inserted/);
  } finally {
    await br.stop();
  }
});

test('a checkpoint proves the log was not rewritten afterwards', async () => {
  const { br, a } = await setup();
  try {
    for (let i = 0; i < 5; i++) assert.equal((await token(br, a)).status, 200);
    await sealed(br);
    const cp = br.cliOk('audit', 'checkpoint', '--json').json;
    assert.match(cp.checkpoint, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const jwks = (await br.get('/.well-known/jwks.json')).json.keys;
    assert.ok(jwks.some((k) => k.kid === cp.kid));
    assert.equal(decodeJwt(cp.checkpoint).header.typ, 'audit-checkpoint+jwt');
    assert.equal(br.sql("SELECT count(*) FROM audit_events WHERE type = 'audit.checkpoint'")[0][0], '1');
    assert.equal(verify(br, '--checkpoint', cp.checkpoint).ok, true);
    // An attacker with the maintenance role edits an old event and rebuilds
    // the chain after it, so the chain alone verifies again...
    const [[seq]] = br.sql("SELECT min(seq) FROM audit_events WHERE type = 'token.issued'");
    sqlAs(br, 'countersign_maintenance', `UPDATE audit_events SET details = '{}' WHERE seq = ${seq}`);
    sqlAs(br, 'countersign_maintenance', `DELETE FROM audit_chain WHERE seq >= ${seq}`);
    await sealed(br);
    assert.equal(verify(br).ok, true);
    // ...but not against the checkpoint.
    const r = verify(br, '--checkpoint', cp.checkpoint);
    assert.equal(r.code, 3);
    assert.match(r.checkpoint_problem, /rewritten/);
    // A forged checkpoint does not verify at all.
    const [h, p] = cp.checkpoint.split('.');
    const forged = verify(br, '--checkpoint', `${h}.${p}.${'A'.repeat(86)}`);
    assert.match(forged.checkpoint_problem, /signature/);
  } finally {
    await br.stop();
  }
});

test('two broker processes appending concurrently leave one clean chain', async () => {
  const { br, a } = await setup();
  // A second broker process on the same database.
  const second = new Broker({ ...br, proc: undefined, port: undefined });
  const { freePort } = await import('./lib.mjs');
  second.port = await freePort();
  second.url = `http://127.0.0.1:${second.port}`;
  second.env = { ...br.env, COUNTERSIGN_LISTEN: `127.0.0.1:${second.port}` };
  second.dir = br.dir + '-second';
  execFileSync('mkdir', ['-p', second.dir]);
  await second.spawn();
  try {
    const jobs = [];
    for (let i = 0; i < 150; i++) jobs.push(token(i % 2 ? br : second, a));
    const results = await Promise.all(jobs);
    assert.ok(results.every((r) => r.status === 200));
    await sealed(br);
    const r = verify(br);
    assert.equal(r.ok, true, r.problem);
    const [[issued]] = br.sql("SELECT count(*) FROM audit_events WHERE type = 'token.issued'");
    assert.equal(Number(issued), 150);
    // No forks (seq is the chain's primary key) and no unexplained gaps.
    const [[links, minSeq, maxSeq]] = br.sql('SELECT count(*), min(seq), max(seq) FROM audit_chain');
    assert.equal(Number(links), Number(maxSeq) - Number(minSeq) + 1);
  } finally {
    await second.stop();
    await br.stop();
  }
});

test('export streams JSON Lines with filters; the per-token trail', async () => {
  const r = await token(b, agent);
  const { jti } = decodeJwt(r.json.access_token).payload;
  await b.post('/oauth2/revoke', { token: r.json.access_token }, { auth: agent });
  await sealed(b);
  const trail = b.cliOk('audit', 'export', '--jti', jti).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(trail.map((e) => e.type), ['token.issued', 'token.revoked']);
  for (const e of trail) {
    assert.deepEqual(Object.keys(e).sort(), ['actor', 'details', 'hash', 'jti', 'seq', 'subject', 'time', 'type']);
    assert.equal(e.jti, jti);
    assert.match(e.hash, /^[0-9a-f]{64}$/);
    assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  }
  const types = b.cliOk('audit', 'export', '--type', 'grant.created').stdout.trim().split('\n');
  assert.ok(types.length >= 1 && types.every((l) => JSON.parse(l).type === 'grant.created'));
  const byAgent = b.cliOk('audit', 'export', '--agent', 'auditee').stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(byAgent.every((e) => e.actor === 'agent:auditee' || e.subject === 'agent:auditee'));
  const future = b.cliOk('audit', 'export', '--since', '2999-01-01T00:00:00Z').stdout;
  assert.equal(future, '');
  const tail = b.cliOk('audit', 'tail', '--lines', '3').stdout.trim().split('\n');
  assert.equal(tail.length, 3);
  assert.equal(b.cli('audit', 'export', '--since', 'yesterday').code, 2);
});

test('GET /v1/audit pages through events for auditors only', async () => {
  const auditor = b.cliOk('approver', 'add', 'ada', '--groups', 'auditor', '--json').json.api_key;
  const approver = b.cliOk('approver', 'add', 'notauditor', '--groups', 'ops', '--json').json.api_key;
  const get = (key, q) => fetch(`${b.url}/v1/audit${q}`, { headers: { authorization: `Bearer ${key}` } })
    .then(async (r) => ({ status: r.status, json: await r.json() }));
  assert.equal((await get(approver, '')).status, 403);
  assert.equal((await fetch(`${b.url}/v1/audit`)).status, 401);
  const r = await token(b, agent);
  const { jti } = decodeJwt(r.json.access_token).payload;
  let page = await get(auditor, `?jti=${jti}`);
  assert.equal(page.status, 200);
  assert.deepEqual(page.json.events.map((e) => e.type), ['token.issued']);
  assert.equal(page.json.next_after, null);
  // Paging: three at a time until the end, with no event twice.
  const seen = new Set();
  let after = 0;
  for (let i = 0; i < 100; i++) {
    page = await get(auditor, `?limit=3&after=${after}&type=token.issued`);
    assert.equal(page.status, 200);
    for (const e of page.json.events) {
      assert.ok(!seen.has(e.seq));
      seen.add(e.seq);
      assert.equal(e.type, 'token.issued');
    }
    if (page.json.next_after === null) break;
    after = page.json.next_after;
  }
  const [[issued]] = b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.issued'");
  assert.equal(seen.size, Number(issued));
  for (const q of ['?limit=0', '?limit=5000', '?after=-1', '?since=yesterday', "?agent=x'y", '?jti=%00']) {
    assert.equal((await get(auditor, q)).status, 400, q);
  }
});
