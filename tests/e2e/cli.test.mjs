// End-to-end: the admin CLI against a real database. Every change writes an
// audit event; mistakes exit non-zero with a message and change nothing.
// Settings from a --config file, and the environment over it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, Broker, Cluster, ROOT, freePort, sleep, sql } from './lib.mjs';

let b;

before(async () => {
  b = await Broker.start();
});

after(async () => {
  await b.stop();
});

const count = (q) => Number(b.sql(q)[0][0]);

// Not dumpable: no core file, and no other process of the same user can
// read its memory or environment (/proc/PID/mem, environ), because the
// kernel hands the process's /proc entries to root. main() clears the flag
// before anything secret is read, for serve and every CLI command alike.
// Seen from outside: a process of user U whose /proc entries belong to
// root. As root (CI) both would be root's, so the processes then run as
// nobody, from a copy of the binary that nobody may execute.
test('countersign processes are not dumpable: their /proc entries belong to root', async () => {
  const root = process.getuid() === 0;
  const user = root ? 65534 : process.getuid();
  const dir = mkdtempSync(join(tmpdir(), 'cs-dump-'));
  const procs = [];
  try {
    chmodSync(dir, 0o755);
    const bin = join(dir, 'countersign');
    copyFileSync(BIN, bin);
    chmodSync(bin, 0o755);
    const run = (cmd, args) => {
      const p = root
        ? spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', cmd, ...args], { env: { ...process.env, ...b.env }, stdio: 'ignore' })
        : spawn(cmd, args, { env: { ...process.env, ...b.env }, stdio: 'ignore' });
      procs.push(p);
      return p;
    };
    // Wait until the process runs the named program (after setpriv's exec).
    const running = async (p, comm) => {
      for (let i = 0; i < 100; i++) {
        try {
          if (readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim() === comm) return;
        } catch { /* not there yet */ }
        await sleep(20);
      }
      assert.fail(`${comm} did not start`);
    };
    const control = run('sleep', ['30']);
    const cli = run(bin, ['audit', 'tail', '--follow']);
    await running(control, 'sleep');
    await running(cli, 'countersign');
    await sleep(200);	// past main()'s first lines
    assert.ok(existsSync(`/proc/${cli.pid}`), 'audit tail --follow exited');
    assert.equal(statSync(`/proc/${cli.pid}/status`).uid, 0);
    // The control: an ordinary process of the same user keeps its own.
    assert.equal(statSync(`/proc/${control.pid}/status`).uid, user);
    assert.equal(statSync(`/proc/${control.pid}/environ`).uid, user);
    assert.equal(statSync(`/proc/${cli.pid}/environ`).uid, 0);
    if (!root) {
      // The broker under test runs as this user too.
      assert.equal(statSync(`/proc/${b.proc.pid}/environ`).uid, 0);
      assert.throws(() => readFileSync(`/proc/${b.proc.pid}/environ`), /EACCES/);
      assert.ok(readFileSync(`/proc/${control.pid}/environ`).length > 0);
    }
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('migrate is idempotent and recorded', () => {
  const r = b.cliOk('migrate');
  assert.match(r.stdout, /0 applied/);
  const files = readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith('.sql')).sort();
  assert.ok(files.length >= 2);
  assert.deepEqual(b.sql('SELECT version FROM schema_migrations ORDER BY version').map((r) => r[0]), files);
  assert.equal(count("SELECT count(*) FROM audit_events WHERE type = 'schema.migrated'"), files.length);
});

// A psql session kept open, to hold locks across steps.
function session(url) {
  const p = spawn('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', url], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let n = 0;
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  return {
    // Run q; resolve with what it printed.
    async run(q) {
      const mark = `--done-${++n}--`;
      const from = out.length;
      p.stdin.write(`${q}\n\\echo ${mark}\n`);
      for (let i = 0; i < 1000 && !out.includes(mark, from); i++) await sleep(10);
      assert.ok(out.includes(mark, from), `psql: ${q}: ${out.slice(from)}`);
      return out.slice(from, out.indexOf(mark, from)).trim();
    },
    end() { p.stdin.end(); },
  };
}

// Roles are cluster-wide and the migration lock is per database, so two
// databases migrated at once on a fresh cluster can both find a role
// missing and both create it. The test lines four migrations up at that
// very point: each waits on its database's migration lock, then on a lock
// of pg_authid (the roles) taken meanwhile, and all are let go together.
test('several databases of one fresh cluster migrate at once', async () => {
  const LOCK = '7166434502651474';	// broker/migrate.c, MIGRATE_LOCK
  const cluster = await Cluster.private();
  const sessions = [];
  try {
    const dbs = [1, 2, 3, 4].map(() => cluster.createDb('race'));
    const gates = dbs.map((db) => session(cluster.url(db)));
    sessions.push(...gates);
    for (const g of gates) await g.run(`SELECT pg_advisory_lock(${LOCK});`);
    const migrate = (db) => new Promise((resolve) => {
      const p = spawn(BIN, ['migrate'], {
        env: { ...process.env, COUNTERSIGN_MIGRATE_DATABASE_URL: cluster.url(db),
          COUNTERSIGN_DATABASE_URL: cluster.urlAs(db, 'countersign_broker') },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      p.stderr.on('data', (d) => { err += d; });
      p.on('close', (code) => resolve({ code, err }));
    });
    const running = Promise.all(dbs.map(migrate));
    const holder = session(cluster.url(dbs[0]));
    sessions.push(holder);
    const waiting = async (what, cond, want) => {
      for (let i = 0; i < 500; i++) {
        if (Number(await holder.run(`SELECT count(*) FROM pg_locks WHERE NOT granted AND ${cond};`)) >= want) return;
        await sleep(20);
      }
      assert.fail(`the migrations never all waited on ${what}`);
    };
    await waiting('the migration lock', "locktype = 'advisory'", 4);
    await holder.run('BEGIN; LOCK TABLE pg_authid IN ACCESS EXCLUSIVE MODE;');
    for (const g of gates) await g.run(`SELECT pg_advisory_unlock(${LOCK});`);
    await waiting('pg_authid', "relation = 'pg_authid'::regclass", 4);
    await holder.run('COMMIT;');
    const results = await running;
    for (const r of results) assert.equal(r.code, 0, r.err);
    const files = readdirSync(join(ROOT, 'migrations')).filter((f) => f.endsWith('.sql'));
    for (const db of dbs) {
      assert.equal(sql(cluster.url(db), 'SELECT count(*) FROM schema_migrations')[0][0], String(files.length));
    }
  } finally {
    for (const x of sessions) x.end();
    cluster.destroy();
  }
});

test('agent add prints credentials once and stores only a hash', () => {
  const r = b.cliOk('agent', 'add', 'cli-agent', '--owner', 'bob@example.com', '--json');
  assert.equal(r.json.client_id, 'cli-agent');
  assert.match(r.json.client_secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(r.json.owner, 'bob@example.com');
  const rows = b.sql("SELECT owner, octet_length(secret_hash) FROM agents WHERE name = 'cli-agent'");
  assert.deepEqual(rows, [['bob@example.com', '32']]);
  const dump = b.sql('SELECT string_agg(a::text, \'\') FROM agents a')[0][0];
  assert.ok(!dump.includes(r.json.client_secret));
  assert.equal(count("SELECT count(*) FROM audit_events WHERE type = 'agent.created' AND subject = 'agent:cli-agent'"), 1);
  // Without --json: human output, secret still shown once.
  const h = b.cliOk('agent', 'add', 'cli-agent2');
  assert.match(h.stdout, /client_secret: [A-Za-z0-9_-]{43}/);
});

test('mistakes exit non-zero and change nothing', () => {
  const events = count('SELECT count(*) FROM audit_events');
  const cases = [
    [['agent', 'add', 'cli-agent'], 1, /already exists/],
    [['agent', 'add', 'bad name'], 1, /name/],
    [['agent', 'add', "x';--"], 1, /name/],
    [['agent', 'add'], 2, /usage/],
    [['agent', 'disable', 'ghost'], 1, /no agent/],
    [['scope', 'add', 'x:y', '--kind', 'admin'], 1, /read or write/],
    [['scope', 'add', 'x:y'], 2, /usage/],
    [['scope', 'add', 'has space', '--kind', 'read'], 1, /scope/],
    [['scope', 'add', 'x:z', '--kind', 'read', '--max-ttl', 'forever'], 2, /duration/],
    [['grant', 'add', 'cli-agent', 'nope:scope', '--audience', 'a'], 1, /no scope/],
    [['grant', 'add', 'ghost', 'x', '--audience', 'a'], 1, /no agent/],
    [['grant', 'add', 'cli-agent', 'x'], 2, /usage/],
    [['grant', 'add', 'cli-agent', 'x', '--audience', 'a', '--expires-at', 'tomorrow'], 2, /RFC 3339/],
    [['grant', 'add', 'cli-agent', 'x', '--audience', 'a', '--expires-at', '2001-01-01T00:00:00Z'], 1, /past/],
    [['grant', 'revoke', '999999'], 1, /no live grant/],
    [['grant', 'revoke', 'abc'], 2, /usage/],
    [['agent', 'add', 'y', '--bogus'], 2, /unknown option/],
    // After "--" a value that looks like an option is a positional (a jti
    // may begin with "-" or "--").
    [['token', 'revoke', '--', '--bogus'], 1, /no live token with jti --bogus/],
    [['token', 'revoke', '--bogus'], 2, /unknown option/],
    [['frobnicate'], 2, /usage/],
  ];
  for (const [args, code, re] of cases) {
    const r = b.cli(...args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  assert.equal(count('SELECT count(*) FROM audit_events'), events);
});

test('scopes and grants: add, list, revoke by id and by name, all audited', () => {
  b.cliOk('scope', 'add', 'docs:read', '--kind', 'read', '--max-ttl', '10m');
  b.cliOk('scope', 'add', 'docs:write', '--kind', 'write');
  const scopes = b.cliOk('scope', 'list', '--json').json;
  assert.deepEqual(scopes.find((s) => s.name === 'docs:read'), {
    name: 'docs:read', kind: 'read', max_ttl: 600, approvals: null, approver_group: null,
    owner_may_approve: null, max_uses: null, require_dpop: false,
  });
  assert.deepEqual(scopes.find((s) => s.name === 'docs:write'), {
    name: 'docs:write', kind: 'write', max_ttl: null, approvals: 1, approver_group: null,
    owner_may_approve: false, max_uses: 1, require_dpop: true,
  });
  b.cliOk('agent', 'add', 'granted', '--json');
  const g1 = b.cliOk('grant', 'add', 'granted', 'docs:read', '--audience', 'https://docs.example',
    '--max-ttl', '5m', '--expires-at', '2099-01-01T00:00:00Z', '--json').json;
  assert.equal(g1.agent, 'granted');
  const dup = b.cli('grant', 'add', 'granted', 'docs:read', '--audience', 'https://docs.example');
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /already has a live grant/);
  b.cliOk('grant', 'add', 'granted', 'docs:write', '--audience', 'https://docs.example');
  let list = b.cliOk('grant', 'list', 'granted', '--json').json;
  assert.equal(list.length, 2);
  assert.equal(list[0].max_ttl, 300);
  assert.equal(list[0].live, true);
  b.cliOk('grant', 'revoke', String(g1.id));
  b.cliOk('grant', 'revoke', 'granted', 'docs:write', '--audience', 'https://docs.example');
  list = b.cliOk('grant', 'list', 'granted', '--json').json;
  assert.ok(list.every((g) => g.live === false && g.revoked_at));
  // A revoked grant can be granted again.
  b.cliOk('grant', 'add', 'granted', 'docs:read', '--audience', 'https://docs.example');
  assert.equal(count("SELECT count(*) FROM audit_events WHERE type = 'grant.created' AND subject = 'agent:granted'"), 3);
  assert.equal(count("SELECT count(*) FROM audit_events WHERE type = 'grant.revoked' AND subject = 'agent:granted'"), 2);
  assert.equal(count("SELECT count(*) FROM audit_events WHERE type = 'scope.created' AND subject LIKE 'scope:docs:%'"), 2);
  const agents = b.cliOk('agent', 'list', '--json').json;
  assert.ok(agents.some((a) => a.name === 'granted' && a.disabled === false));
  assert.ok(agents.every((a) => a.client_secret === undefined && a.secret_hash === undefined));
});

test('grant list without an agent lists the grants of every agent', () => {
  b.cliOk('scope', 'add', 'list:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'list:write', '--kind', 'write');
  b.cliOk('agent', 'add', 'lister-a', '--json');
  b.cliOk('agent', 'add', 'lister-b', '--json');
  const ga = b.cliOk('grant', 'add', 'lister-a', 'list:read', '--audience', 'https://a.example', '--json').json;
  const gb1 = b.cliOk('grant', 'add', 'lister-b', 'list:read', '--audience', 'https://b.example', '--json').json;
  const gb2 = b.cliOk('grant', 'add', 'lister-b', 'list:write', '--audience', 'https://b.example', '--json').json;
  b.cliOk('grant', 'revoke', String(gb2.id));

  const all = b.cliOk('grant', 'list', '--json').json;
  const mine = all.filter((g) => g.agent.startsWith('lister-'));
  // Both agents, in grant order, revoked grants included.
  assert.deepEqual(mine.map((g) => [g.id, g.agent, g.scope, g.audience, g.live]), [
    [ga.id, 'lister-a', 'list:read', 'https://a.example', true],
    [gb1.id, 'lister-b', 'list:read', 'https://b.example', true],
    [gb2.id, 'lister-b', 'list:write', 'https://b.example', false],
  ]);
  // Every grant in the database, not just these.
  assert.equal(all.length, count('SELECT count(*) FROM grants'));
  assert.deepEqual(all.map((g) => g.id), [...all.map((g) => g.id)].sort((x, y) => x - y));
  // With an agent, only that agent's.
  assert.deepEqual(b.cliOk('grant', 'list', 'lister-a', '--json').json.map((g) => g.id), [ga.id]);
  assert.deepEqual(b.cliOk('grant', 'list', 'nobody', '--json').json, []);
  // Without --json: one JSON object a line, both agents there.
  const lines = b.cliOk('grant', 'list').stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((g) => g.id), all.map((g) => g.id));
  assert.ok(lines.some((g) => g.agent === 'lister-a') && lines.some((g) => g.agent === 'lister-b'));
  assert.equal(b.cli('grant', 'list', 'lister-a', 'lister-b').code, 2);
});

// The environment of the test process without any COUNTERSIGN_* variable,
// so that only the config file (and what a test adds) configures the binary.
function bareEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('COUNTERSIGN_')));
  return { ...env, ...extra };
}

// `countersign serve --config FILE` with env; resolves once url answers
// /healthz. stop() sends SIGTERM and expects a clean exit.
async function serveWithConfig(file, env, url) {
  const proc = spawn(BIN, ['serve', '--config', file], { env: bareEnv(env), stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  proc.stderr.on('data', (d) => { logs += d.toString(); });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const r = await exited;
    assert.deepEqual(r, { code: 0, sig: null }, logs.slice(-2000));
  };
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) return { stop, logs: () => logs };
    } catch { /* not up yet */ }
    if (proc.exitCode !== null) break;
    await sleep(50);
  }
  await stop().catch(() => {});
  throw new Error(`broker did not start on ${url}:\n${logs}`);
}

test('serve --config FILE: settings from the file alone, the environment over the file', async () => {
  // A second broker on this database, configured by a file only.
  b.cliOk('scope', 'add', 'conf:read', '--kind', 'read');
  const agent = b.agent('conf-agent');
  b.cliOk('grant', 'add', 'conf-agent', 'conf:read', '--audience', 'https://conf.example');
  const dir = mkdtempSync(join(tmpdir(), 'cs-conf-'));
  const filePort = await freePort();
  const envPort = await freePort();
  const file = join(dir, 'countersign.conf');
  writeFileSync(file, [
    '# every setting this broker needs, and none from the environment',
    `listen = 127.0.0.1:${filePort}`,
    'issuer = "https://file.example"',
    `database_url = ${b.env.COUNTERSIGN_DATABASE_URL}`,
    `master_key_file = ${b.env.COUNTERSIGN_MASTER_KEY_FILE}`,
    'default_ttl = 2m',
    'threads = 4',
    '',
  ].join('\n'));
  const fileUrl = `http://127.0.0.1:${filePort}`;
  const envUrl = `http://127.0.0.1:${envPort}`;
  const token = async (url) => {
    const r = await fetch(`${url}/oauth2/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: 'Basic ' + Buffer.from(`${agent.id}:${agent.secret}`).toString('base64'),
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'conf:read', resource: 'https://conf.example' }),
    });
    const json = await r.json();
    assert.equal(r.status, 200, JSON.stringify(json));
    return json;
  };
  const metadata = async (url) => (await (await fetch(`${url}/.well-known/oauth-authorization-server`)).json());
  try {
    let s = await serveWithConfig(file, {}, fileUrl);
    try {
      const m = await metadata(fileUrl);
      assert.equal(m.issuer, 'https://file.example');
      assert.equal(m.token_endpoint, 'https://file.example/oauth2/token');
      const t = await token(fileUrl);
      assert.equal(t.expires_in, 120, 'default_ttl from the file');
      const claims = JSON.parse(Buffer.from(t.access_token.split('.')[1], 'base64url').toString());
      assert.equal(claims.iss, 'https://file.example');
    } finally {
      await s.stop();
    }

    // Each variable overrides its own setting only: listen, issuer and
    // default_ttl from the environment, the database and the master key
    // still from the file.
    s = await serveWithConfig(file, {
      COUNTERSIGN_LISTEN: `127.0.0.1:${envPort}`,
      COUNTERSIGN_ISSUER: 'https://env.example/',
      COUNTERSIGN_DEFAULT_TTL: '90',
    }, envUrl);
    try {
      assert.equal((await metadata(envUrl)).issuer, 'https://env.example', 'a trailing / is removed');
      assert.equal((await token(envUrl)).expires_in, 90);
      await assert.rejects(fetch(`${fileUrl}/healthz`), 'nothing listens on the file\'s address');
    } finally {
      await s.stop();
    }

    // The CLI reads the same file, wherever --config stands.
    const r = spawnSync(BIN, ['agent', 'list', '--json', '--config', file], { env: bareEnv(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).some((a) => a.name === 'conf-agent'));

    // Mistakes in the file stop the binary with status 2, naming the file
    // and line; a valid environment does not paper over them.
    const bad = join(dir, 'bad.conf');
    for (const [text, re] of [
      ['listen = 127.0.0.1:1\nmax_ttll = 1h\n', /bad\.conf:2: unknown setting 'max_ttll'/],
      ['max_ttl = forever\n', /bad\.conf:1: max_ttl: expected a duration/],
      ['just words\n', /bad\.conf:1: expected key = value/],
    ]) {
      writeFileSync(bad, text);
      const x = spawnSync(BIN, ['serve', '--config', bad], {
        env: bareEnv({ COUNTERSIGN_MAX_TTL: '1h' }), encoding: 'utf8', timeout: 10000,
      });
      assert.equal(x.status, 2, `${text}: ${x.stderr}`);
      assert.match(x.stderr, re);
    }
    const missing = spawnSync(BIN, ['serve', '--config', join(dir, 'missing.conf')], { env: bareEnv(), encoding: 'utf8' });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /cannot read config file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keys rotate makes a new current key and both stay published', async () => {
  const before = (await b.get('/.well-known/jwks.json')).json.keys.map((k) => k.kid);
  const r = b.cliOk('keys', 'rotate', '--json');
  assert.match(r.json.kid, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(count(`SELECT count(*) FROM audit_events WHERE type = 'key.rotated' AND subject = '${r.json.kid}'`), 1);
  const [[state]] = b.sql(`SELECT state FROM signing_keys WHERE kid = '${r.json.kid}'`);
  assert.equal(state, 'current');
  // The broker picks the new key up within its refresh interval (2 s in tests).
  let kids = [];
  for (let i = 0; i < 40; i++) {
    kids = (await b.get('/.well-known/jwks.json')).json.keys.map((k) => k.kid);
    if (kids.includes(r.json.kid)) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(kids.includes(r.json.kid));
  for (const k of before) assert.ok(kids.includes(k));
  // The private half is stored encrypted, never as PEM or raw DER.
  const [[enc]] = b.sql(`SELECT encode(private_enc, 'escape') FROM signing_keys WHERE kid = '${r.json.kid}'`);
  assert.ok(!enc.includes('PRIVATE KEY'));
});
