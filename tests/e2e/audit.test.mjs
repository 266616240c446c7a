// End-to-end: the audit log is append-only by PostgreSQL's own rules,
// hash-chained by the broker's sealer, and `countersign audit verify`
// finds every kind of tampering the maintenance role can do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { BIN, Broker, Cluster, decodeJwt, sleep } from './lib.mjs';

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
  // Someone tries the agent's client id with a wrong secret: that belongs
  // to the agent's trail too.
  const wrong = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD },
    { auth: { id: 'auditee', secret: 'not-the-secret' } });
  assert.equal(wrong.status, 401);
  const byAgent = b.cliOk('audit', 'export', '--agent', 'auditee').stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(byAgent.every((e) => e.actor === 'agent:auditee' || e.subject === 'agent:auditee' ||
    (e.type === 'client.auth_failed' && e.subject === 'auditee')), JSON.stringify(byAgent.map((e) => [e.type, e.actor, e.subject])));
  assert.ok(byAgent.some((e) => e.type === 'client.auth_failed' && e.details.reason === 'bad_secret'));
  const future = b.cliOk('audit', 'export', '--since', '2999-01-01T00:00:00Z').stdout;
  assert.equal(future, '');
  // Two sequence numbers drawn by transactions that rolled back: tail
  // still shows the last three events, not the last three numbers.
  for (let i = 0; i < 2; i++) {
    b.sql("BEGIN; INSERT INTO audit_events (type, actor) VALUES ('test.rolled_back', 'test'); ROLLBACK");
  }
  b.cliOk('scope', 'add', 'tail:last', '--kind', 'read');
  const tail = b.cliOk('audit', 'tail', '--lines', '3').stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(tail.length, 3);
  assert.equal(tail[2].type, 'scope.created');
  assert.deepEqual(tail.map((e) => e.seq), b.sql('SELECT seq FROM audit_events ORDER BY seq DESC LIMIT 3').map((r) => Number(r[0])).reverse());
  assert.equal(b.cliOk('audit', 'tail', '--lines', '0').stdout, '');
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

// `countersign audit tail -f ...` as a child process. events() is what it
// has printed so far (complete lines only).
function follow(br, env, ...args) {
  const child = spawn(BIN, ['audit', 'tail', ...args], {
    env: { ...process.env, ...br.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    events: () => out.split('\n').slice(0, -1).map((l) => JSON.parse(l)),
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function waitFor(what, cond, ms = 10000) {
  for (let waited = 0; waited < ms; waited += 100) {
    const v = cond();
    if (v) return v;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('audit tail -f prints new events as they happen', async () => {
  // The auditor's read-only role cannot seal; it follows what the
  // broker's sealer has sealed.
  const auditor = { COUNTERSIGN_DATABASE_URL: Cluster.shared().urlAs(b.db, 'countersign_auditor') };
  for (const [flag, env] of [['-f', {}], ['--follow', {}], ['-f', auditor]]) {
    const f = follow(b, env, flag, '--lines', '1');
    try {
      // The backlog line says the follower has started.
      await waitFor('the backlog', () => f.events().length >= 1);
      const name = `tailed${flag.length}${env === auditor ? 'a' : ''}:read`;
      b.cliOk('scope', 'add', name, '--kind', 'read');
      const e = await waitFor(`scope.created for ${name}`,
        () => f.events().find((x) => x.subject === `scope:${name}`));
      assert.equal(e.type, 'scope.created');
      assert.match(e.actor, /^admin:/);
      // Followed events are sealed: each carries its chain hash.
      assert.match(e.hash, /^[0-9a-f]{64}$/);
      const seqs = f.events().map((x) => x.seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in seq order');
      assert.equal(new Set(seqs).size, seqs.length, 'no event twice');
    } finally {
      await f.stop();
    }
    assert.equal(f.stderr(), '');
  }
  // -f is only an option where --follow is.
  assert.equal(b.cli('agent', 'list', '-f').code, 2);
});

test('audit tail -f does not skip an event that commits after a later one', async () => {
  // A long grace, so the open transaction's number is waited for rather
  // than sealed as a gap while this test holds it.
  const { br } = await setup({ COUNTERSIGN_AUDIT_GAP_GRACE: '60' });
  const f = follow(br, {}, '-f', '--lines', '1');
  const url = Cluster.shared().urlAs(br.db, 'countersign_broker');
  const psql = spawn('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', url], { stdio: ['pipe', 'pipe', 'pipe'] });
  let psqlOut = '';
  psql.stdout.on('data', (d) => { psqlOut += d; });
  const psqlDone = new Promise((r) => psql.on('exit', r));
  try {
    await waitFor('the backlog', () => f.events().length >= 1);
    // This transaction draws its seq now and commits last.
    psql.stdin.write("BEGIN;\nINSERT INTO audit_events (type, actor, subject) VALUES ('scope.created', 'admin:late', 'scope:late') RETURNING seq;\n");
    const lateSeq = Number(await waitFor('the late insert', () => psqlOut.trim()));
    br.cliOk('scope', 'add', 'early:read', '--kind', 'read');
    const [[earlySeq]] = br.sql("SELECT seq FROM audit_events WHERE subject = 'scope:early:read'");
    assert.ok(Number(earlySeq) > lateSeq);
    // The later event is committed but waits behind the open number.
    await sleep(2500);
    assert.ok(!f.events().some((e) => e.subject === 'scope:early:read'), 'printed past an uncommitted number');
    psql.stdin.end('COMMIT;\n');
    assert.equal(await psqlDone, 0);
    await waitFor('both events', () => f.events().some((e) => e.subject === 'scope:early:read'));
    const printed = f.events().filter((e) => e.seq >= lateSeq).map((e) => [e.seq, e.subject]);
    assert.deepEqual(printed, [[lateSeq, 'scope:late'], [Number(earlySeq), 'scope:early:read']]);
  } finally {
    if (psql.exitCode === null) psql.kill();
    await f.stop();
    await br.stop();
  }
});

test('audit_events is partitioned by month, and the broker role cannot touch a partition either', async () => {
  const [[cur, next]] = b.sql(`SELECT to_char(date_trunc('month', now()), 'YYYY_MM'),
                                      to_char(date_trunc('month', now()) + interval '1 month', 'YYYY_MM')`);
  const parts = b.sql(`SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
                       JOIN pg_class c ON c.oid = i.inhrelid
                       WHERE i.inhparent = 'audit_events'::regclass ORDER BY c.relname`);
  const names = parts.map((p) => p[0]);
  assert.ok(names.includes('audit_events_default'), names.join());
  for (const m of [cur, next]) {
    const p = parts.find((x) => x[0] === `audit_events_${m}`);
    assert.ok(p, `a partition for ${m}: ${names.join()}`);
    const [y, mo] = m.split('_');
    assert.match(p[1], new RegExp(`^FOR VALUES FROM \\('${y}-${mo}-01 `));
  }
  // Today's events land in this month's partition, none in the default.
  assert.equal((await token(b, agent)).status, 200);
  const where = b.sql('SELECT tableoid::regclass::text, count(*) FROM audit_events GROUP BY 1');
  assert.deepEqual(where.map((r) => r[0]), [`audit_events_${cur}`]);
  // A partition the broker creates later (it keeps two months ahead) is
  // guarded like the ones the migration made.
  assert.equal(sqlAs(b, 'countersign_broker', 'SELECT audit_ensure_partitions(3)'), '1');
  const [[later]] = b.sql("SELECT to_char(date_trunc('month', now()) + interval '3 months', 'YYYY_MM')");
  for (const part of [`audit_events_${cur}`, `audit_events_${next}`, `audit_events_${later}`, 'audit_events_default']) {
    for (const q of [
      `UPDATE ${part} SET type = 'x'`,
      `DELETE FROM ${part}`,
      `TRUNCATE ${part}`,
      `INSERT INTO ${part} (type, actor, time) VALUES ('x', 'y', now())`,
      `DROP TABLE ${part}`,
      `ALTER TABLE audit_events DETACH PARTITION ${part}`,
    ]) {
      const err = sqlAsFails(b, 'countersign_broker', q);
      assert.match(err || 'it worked', /permission denied|must be owner/, q);
    }
    // The owner is stopped by the triggers on each partition too (the
    // row triggers fire on rows, so UPDATE and DELETE are tried where
    // there are some).
    assert.match(sqlAsFails(b, 'postgres', `TRUNCATE ${part}`) || 'it worked', /append-only/, part);
  }
  for (const q of [`UPDATE audit_events_${cur} SET type = 'x'`, `DELETE FROM audit_events_${cur}`]) {
    assert.match(sqlAsFails(b, 'postgres', q) || 'it worked', /append-only/, q);
  }
  assert.equal(verify(b).ok, true);
});

test('an event in the default partition does not stop later months from getting theirs', async () => {
  const { br } = await setup();
  try {
    const month = (n) => br.sql(`SELECT to_char(date_trunc('month', now()) + interval '${n} months', 'YYYY_MM')`)[0][0];
    const partitions = () => br.sql(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                     WHERE i.inhparent = 'audit_events'::regclass`).map((r) => r[0]);
    assert.ok(!partitions().includes(`audit_events_${month(3)}`));
    // An event dated in a month without a partition lands in the default
    // one (here by hand; a clock far ahead or a broker down for months
    // does the same).
    sqlAs(br, 'countersign_broker', `INSERT INTO audit_events (type, actor, subject, time)
      VALUES ('scope.created', 'admin:early', 'scope:early', date_trunc('month', now()) + interval '3 months 1 day')`);
    assert.equal(br.sql('SELECT count(*) FROM audit_events_default')[0][0], '1');
    // That month's partition cannot be made without moving the row, so it
    // is left to the default partition; the months after it still come.
    assert.equal(sqlAs(br, 'countersign_broker', 'SELECT audit_ensure_partitions(5)'), '2');
    const names = partitions();
    assert.ok(!names.includes(`audit_events_${month(3)}`));
    assert.ok(names.includes(`audit_events_${month(4)}`) && names.includes(`audit_events_${month(5)}`), names.join());
    assert.match(sqlAsFails(br, 'postgres', `TRUNCATE audit_events_${month(5)}`) || 'it worked', /append-only/);
    assert.equal(br.sql("SELECT count(*) FROM audit_events WHERE subject = 'scope:early'")[0][0], '1');
    await sealed(br);
    assert.equal(verify(br).ok, true);
  } finally {
    await br.stop();
  }
});

// The second after the newest event so far, as RFC 3339, once the
// database clock has passed it: events before it and after it.
async function boundary(br) {
  const [[t]] = br.sql(`SELECT to_char((date_trunc('second', max(time)) + interval '1 second') AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS"Z"') FROM audit_events`);
  await waitFor('the boundary', () => br.sql(`SELECT now() > '${t}'::timestamptz`)[0][0] === 't', 5000);
  return t;
}

test('export --since and --until cut at a time, combined with --type', async () => {
  b.cliOk('scope', 'add', 'before:a', '--kind', 'read');
  b.cliOk('scope', 'add', 'before:b', '--kind', 'read');
  const t = await boundary(b);
  b.cliOk('scope', 'add', 'after:a', '--kind', 'read');
  assert.equal((await token(b, agent)).status, 200);
  // An export carries each event's chain hash once it is sealed; wait for
  // the sealer so that two exports of the same events compare equal.
  await sealed(b);
  const ours = /^scope:(before|after):/;
  const exp = (...args) => b.cliOk('audit', 'export', ...args).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const subjects = (events) => events.filter((e) => ours.test(e.subject)).map((e) => e.subject);

  const untilT = exp('--type', 'scope.created', '--until', t);
  assert.ok(untilT.every((e) => e.type === 'scope.created' && Date.parse(e.time) < Date.parse(t)));
  assert.deepEqual(subjects(untilT), ['scope:before:a', 'scope:before:b']);

  const sinceT = exp('--type', 'scope.created', '--since', t);
  assert.ok(sinceT.every((e) => e.type === 'scope.created' && Date.parse(e.time) >= Date.parse(t)));
  assert.deepEqual(subjects(sinceT), ['scope:after:a']);
  // The token was issued after the boundary too, but is another type.
  assert.equal(exp('--type', 'token.issued', '--since', t).length, 1);

  // A past --since keeps everything of the type; with --until, the part before.
  const past = '2000-01-01T00:00:00Z';
  const all = exp('--since', past, '--type', 'scope.created');
  const [[scopes]] = b.sql("SELECT count(*) FROM audit_events WHERE type = 'scope.created'");
  assert.equal(all.length, Number(scopes));
  assert.deepEqual(subjects(all), ['scope:before:a', 'scope:before:b', 'scope:after:a']);
  assert.deepEqual(exp('--since', past, '--until', t, '--type', 'scope.created'), untilT);
  assert.deepEqual(exp('--since', t, '--until', t, '--type', 'scope.created'), []);
  assert.deepEqual(exp('--until', past), []);
  assert.equal(b.cli('audit', 'export', '--until', 'tomorrow').code, 2);
});

test('one token\'s trail: issued, used twice, revoked, refused', async () => {
  const s = b.cliOk('service', 'add', 'trail-svc', '--audience', AUD, '--json').json;
  const svc = { id: s.client_id, secret: s.client_secret };
  const r = await token(b, agent);
  assert.equal(r.status, 200);
  const { jti } = decodeJwt(r.json.access_token).payload;
  const introspect = () => b.post('/oauth2/introspect', { token: r.json.access_token }, { auth: svc });
  assert.equal((await introspect()).json.active, true);
  assert.equal((await introspect()).json.active, true);
  assert.equal((await b.post('/oauth2/revoke', { token: r.json.access_token }, { auth: agent })).status, 200);
  assert.deepEqual((await introspect()).json, { active: false });
  await sealed(b);
  const trail = b.cliOk('audit', 'export', '--jti', jti).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.deepEqual(trail.map((e) => [e.type, e.actor, e.details.result ?? null, e.details.active ?? null]), [
    ['token.issued', 'agent:auditee', null, null],
    ['token.used', 'service:trail-svc', 'active', true],
    ['token.used', 'service:trail-svc', 'active', true],
    ['token.revoked', 'agent:auditee', null, null],
    ['token.used', 'service:trail-svc', 'revoked', false],
  ]);
  assert.ok(trail.every((e) => e.jti === jti && /^[0-9a-f]{64}$/.test(e.hash)));
  for (let i = 1; i < trail.length; i++) assert.ok(trail[i].seq > trail[i - 1].seq);
  // The API gives the same trail.
  const auditor = b.cliOk('approver', 'add', 'trail-auditor', '--groups', 'auditor', '--json').json.api_key;
  const page = await fetch(`${b.url}/v1/audit?jti=${jti}`, { headers: { authorization: `Bearer ${auditor}` } }).then((x) => x.json());
  assert.deepEqual(page.events, trail);
});

test('verify --json reports the unsealed tail and its age', async () => {
  // No sealer in the daemon, and a long grace: only verify seals here.
  const { br, a } = await setup({ COUNTERSIGN_AUDIT_SEAL: '0', COUNTERSIGN_AUDIT_GAP_GRACE: '60' });
  try {
    const [[events]] = br.sql('SELECT count(*) FROM audit_events');
    assert.equal(br.sql('SELECT count(*) FROM audit_chain')[0][0], '0');
    // Export shows unsealed events with a null hash (docs/audit.md).
    const unsealedExport = br.cliOk('audit', 'export').stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    assert.equal(unsealedExport.length, Number(events));
    assert.ok(unsealedExport.every((e) => e.hash === null && 'hash' in e));
    // An auditor cannot seal: verify checks what is sealed (nothing) and
    // reports every event as unsealed.
    const asAuditor = { ...br.env, COUNTERSIGN_DATABASE_URL: Cluster.shared().urlAs(br.db, 'countersign_auditor') };
    const saved = br.env;
    br.env = asAuditor;
    let r = verify(br);
    br.env = saved;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', 'an auditor verifies without a database error');
    assert.equal(r.ok, true);
    assert.equal(r.checked, 0);
    assert.equal(r.head_seq, 0);
    assert.equal(r.unsealed, Number(events));
    assert.ok(r.unsealed_age >= 0);
    // The broker's role seals what is committed first: nothing is left.
    r = verify(br);
    assert.equal(r.ok, true);
    assert.equal(r.unsealed, 0);
    assert.equal(r.unsealed_age, 0);
    const [[maxSeq]] = br.sql('SELECT max(seq) FROM audit_events');
    assert.equal(r.head_seq, Number(maxSeq));
    // A number drawn and not (yet) committed holds the events after it
    // back until the grace has passed.
    const [[gap]] = br.sql("SELECT nextval('audit_events_seq_seq')");
    assert.equal((await token(br, a)).status, 200);
    assert.equal((await token(br, a)).status, 200);
    await sleep(2100);
    r = verify(br);
    assert.equal(r.ok, true);
    assert.equal(r.head_seq, Number(gap) - 1);
    assert.equal(r.unsealed, 2);
    assert.ok(r.unsealed_age >= 2 && r.unsealed_age < 60, String(r.unsealed_age));
    assert.match(br.cliOk('audit', 'verify').stdout, /2 newer events not sealed yet \(oldest \d+s\)/);
    // Past the grace the number is sealed as a gap and the tail is empty.
    br.env = { ...saved, COUNTERSIGN_AUDIT_GAP_GRACE: '1' };
    r = verify(br);
    br.env = saved;
    assert.equal(r.ok, true);
    assert.equal(r.unsealed, 0);
    assert.equal(r.unsealed_age, 0);
    assert.equal(r.head_seq, Number(gap) + 2);
    assert.equal(br.sql(`SELECT kind FROM audit_chain WHERE seq = ${gap}`)[0][0], 'gap');
  } finally {
    await br.stop();
  }
});
