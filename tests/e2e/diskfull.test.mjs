// End-to-end: PostgreSQL's disk fills up under the broker. Its data
// directory sits on a small tmpfs of its own (so this needs root, or at
// least CAP_SYS_ADMIN to mount; without it the file is skipped with the
// reason), which the test fills to the last byte. The broker must answer
// 503 and hand out no token that is not stored, and serve again, without a
// restart, once space is freed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, openSync, writeSync, closeSync, unlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Broker, Cluster, ROOT, decodeJwt, freePort, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
const PG = join(ROOT, 'deploy', 'pg.sh');
let dir;
let mounted = false;
let cluster;
let b;
let agent;
let skip = false;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cs-pg-full-'));
  mkdirSync(join(dir, 'data'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=160m,mode=0700', 'tmpfs', join(dir, 'data')],
      { stdio: 'pipe' });
    mounted = true;
  } catch (e) {
    skip = `cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): ${String(e.stderr || e.message).trim()}`;
    return;
  }
  execFileSync(PG, ['init', dir, String(await freePort())], { stdio: 'pipe' });
  cluster = new Cluster(dir, false);
  cluster.start();
  b = await Broker.start({ cluster, env: { COUNTERSIGN_DB_CONNECT_TIMEOUT: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  agent = b.agent('full-agent');
  b.cliOk('grant', 'add', 'full-agent', 'forum:read', '--audience', AUD);
});

after(async () => {
  if (b) await b.stop();
  if (cluster) {
    try { cluster.stop('immediate'); } catch { /* already down */ }
  }
  if (mounted) execFileSync('umount', [join(dir, 'data')]);
  rmSync(dir, { recursive: true, force: true });
});

// Write zeros until the file system is full; returns the filler's path.
function fill(path) {
  const fd = openSync(path, 'w');
  for (const size of [1 << 20, 1 << 12, 1]) {
    const chunk = Buffer.alloc(size);
    for (;;) {
      try { writeSync(fd, chunk); } catch (e) {
        if (e.code !== 'ENOSPC') throw e;
        break;
      }
    }
  }
  closeSync(fd);
  return path;
}

const cc = { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD };

test('disk full under PostgreSQL: 503 and no token that is not stored; recovery without restart', async (t) => {
  if (skip) {
    t.skip(skip);
    return;
  }
  const pid = b.proc.pid;
  assert.equal((await b.post('/oauth2/token', cc, { auth: agent })).status, 200);
  const filler = fill(join(dir, 'data', 'filler'));

  // Rows fit in the table's last page for a while; then every insert needs
  // a new page, which the full disk refuses.
  const issued = [];
  let refused = 0;
  let run = 0;
  for (let i = 0; i < 2000 && run < 30; i++) {
    const r = await b.post('/oauth2/token', cc, { auth: agent });
    if (r.status === 200) {
      issued.push(decodeJwt(r.json.access_token).payload.jti);
      run = 0;
    } else {
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.error, 'temporarily_unavailable');
      assert.equal(r.json.access_token, undefined);
      refused++;
      run++;
    }
  }
  assert.equal(run, 30, `30 refusals in a row while the disk is full (${issued.length} issued, ${refused} refused)`);
  const log = readFileSync(join(dir, 'log', 'postgresql.log'), 'utf8');
  assert.match(log, /No space left on device/, 'PostgreSQL saw a full disk');
  t.diagnostic(`disk full: ${issued.length} tokens issued while the last pages filled, then ${refused} refusals; ` +
    `PostgreSQL: ${(log.match(/^.*(ERROR|PANIC|FATAL).*$/m) || ['no error line'])[0]}`);

  // Free the space: the broker serves again by itself.
  unlinkSync(filler);
  let ok = null;
  for (let i = 0; i < 100 && !ok; i++) {
    const r = await b.post('/oauth2/token', cc, { auth: agent });
    if (r.status === 200) ok = r;
    else await sleep(100);
  }
  assert.ok(ok, 'the broker did not recover once space was freed');
  assert.equal(b.proc.pid, pid);
  assert.equal(b.proc.exitCode, null, 'the broker was not restarted');
  issued.push(decodeJwt(ok.json.access_token).payload.jti);
  // Every token a client received is stored, with its audit row.
  const list = issued.map((j) => `'${j}'`).join(',');
  assert.equal(Number(b.sql(`SELECT count(*) FROM tokens WHERE jti IN (${list})`)[0][0]), issued.length);
  assert.equal(Number(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.issued' AND jti IN (${list})`)[0][0]), issued.length);
});
