// End-to-end: what a newcomer runs first. deploy/run.sh (behind `make run`)
// brings up PostgreSQL and the broker in a folder of its own and prints a
// curl that works; deploy/demo.sh (behind `make demo`) then plays the forum
// story against that broker, asserting every step itself, and can be run
// again; `deploy/run.sh stop` stops everything. Run here in a temporary
// folder (COUNTERSIGN_VAR) on free ports, with the binaries under test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { ROOT, BIN, freePort } from './lib.mjs';

let dir;
let env;
let listen;

// Run a script to its end; resolves {code, out} (stdout and stderr
// together, in order, as a person would see them).
function script(path, args = [], timeoutMs = 240000) {
  return new Promise((resolve) => {
    const p = spawn(path, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('close', (code) => { clearTimeout(t); resolve({ code, out }); });
  });
}

// The curl commands run.sh printed, each joined onto one line.
function curls(out) {
  return out.split(/\n\s*\n/).map((block) => block.trim())
    .filter((block) => block.startsWith('curl '))
    .map((block) => block.replace(/\\\n\s*/g, ''));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-quickstart-'));
  listen = `127.0.0.1:${await freePort()}`;
  env = {
    ...process.env,
    COUNTERSIGN_VAR: dir,
    COUNTERSIGN_LISTEN: listen,
    PG_PORT: String(await freePort()),
    CS_BIN: BIN,
    FORUM_BIN: join(dirname(BIN), 'forum'),
  };
  for (const k of Object.keys(env)) {
    // The settings of the suite's own broker must not leak into these.
    if (k.startsWith('COUNTERSIGN_') && !['COUNTERSIGN_VAR', 'COUNTERSIGN_LISTEN'].includes(k)) delete env[k];
  }
});

after(async () => {
  if (dir) {
    await script(join(ROOT, 'deploy', 'run.sh'), ['stop'], 60000);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('make run: PostgreSQL and the broker come up in var/, and the printed curl gets a token', async () => {
  const r = await script(join(ROOT, 'deploy', 'run.sh'));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`Countersign is running on http://${listen.replace(/\./g, '\\.')}`));
  for (const f of ['countersign.conf', 'master.key', 'broker.pid', 'demo-agent.json']) {
    assert.ok(existsSync(join(dir, f)), f);
  }
  assert.equal(statSync(join(dir, 'master.key')).mode & 0o077, 0, 'the master key is private');
  assert.equal(statSync(join(dir, 'demo-agent.json')).mode & 0o077, 0, 'the agent secret is private');
  assert.match(readFileSync(join(dir, 'countersign.conf'), 'utf8'), /database_url = .*countersign_broker@/,
    'the broker connects as the role that cannot change the audit log');
  const [read, write] = curls(r.out);
  assert.ok(read && write, r.out);
  const got = JSON.parse(spawnSync('bash', ['-c', read], { encoding: 'utf8' }).stdout);
  assert.equal(got.token_type, 'Bearer');
  assert.equal(got.scope, 'forum:read');
  assert.match(got.access_token, /^eyJ/);
  const refused = JSON.parse(spawnSync('bash', ['-c', write], { encoding: 'utf8' }).stdout);
  assert.equal(refused.error, 'invalid_scope');
  assert.match(refused.error_description, /bc-authorize/);
  assert.equal(refused.access_token, undefined);
  // Running it again keeps the data and restarts the broker.
  const again = await script(join(ROOT, 'deploy', 'run.sh'));
  assert.equal(again.code, 0, again.out);
  assert.match(again.out, /restarting it/);
  const status = await script(join(ROOT, 'deploy', 'run.sh'), ['status']);
  assert.match(status.out, /broker running/);
  assert.match(status.out, /postgresql running/);
});

test('make demo: the seven steps of the forum story pass against that broker, twice', async () => {
  for (const round of [1, 2]) {
    const r = await script(join(ROOT, 'deploy', 'demo.sh'));
    assert.equal(r.code, 0, `round ${round}:\n${r.out}`);
    assert.doesNotMatch(r.out, /UNEXPECTED/);
    assert.match(r.out, /Using the broker that `make run` started/);
    for (let step = 1; step <= 7; step++) assert.match(r.out, new RegExp(`^${step}/7 `, 'm'), `step ${step}`);
    assert.equal((r.out.match(/\[ok\]/g) || []).length, 12, r.out);
    assert.match(r.out, new RegExp(`Approvers decide in the browser at http://${listen.replace(/\./g, '\\.')}/ui/`));
    assert.match(r.out, /exact reply \(the broker checked: its SHA-256 is sha256:[0-9a-f]{64}\)/);
    assert.match(r.out, /countersign audit verify: .*ok/);
    assert.match(r.out, /token\.used +agent:forum-agent|token\.used .*active/);
    if (round === 1) assert.match(r.out, /Created the agent forum-agent/);
    else assert.doesNotMatch(r.out, /Created the agent/, 'the second run reuses what the first created');
  }
  // The forum's log names agents and jtis, never a token.
  const log = readFileSync(join(dir, 'demo', 'forum.log'), 'utf8');
  assert.match(log, /"msg":"request"/);
  assert.doesNotMatch(log, /eyJ[A-Za-z0-9_-]{20,}\.eyJ/);
});

test('make stop: the broker and PostgreSQL stop', async () => {
  const r = await script(join(ROOT, 'deploy', 'run.sh'), ['stop'], 60000);
  assert.equal(r.code, 0, r.out);
  const status = await script(join(ROOT, 'deploy', 'run.sh'), ['status']);
  assert.match(status.out, /broker not running/);
  assert.match(status.out, /postgresql not running/);
});
