// Shared helpers for the end-to-end tests: a real PostgreSQL (started by
// tests/run.sh, or a private cluster per test file for fault tests) and
// the real countersign binary, driven over HTTP and its CLI.
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.CS_BIN || join(ROOT, 'build', 'countersign');
const PG = join(ROOT, 'deploy', 'pg.sh');

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

export async function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function pg(...args) {
  return execFileSync(PG, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

// A PostgreSQL cluster: the shared one named by CS_PGDIR, or a private one.
export class Cluster {
  constructor(dir, owned) {
    this.dir = dir;
    this.owned = owned;
  }
  static shared() {
    if (!process.env.CS_PGDIR) throw new Error('CS_PGDIR not set: run the tests through tests/run.sh');
    return new Cluster(process.env.CS_PGDIR, false);
  }
  static async private() {
    const dir = mkdtempSync(join(tmpdir(), 'cs-pg-'));
    const port = await freePort();
    pg('init', dir, String(port));
    pg('start', dir);
    return new Cluster(dir, true);
  }
  // A fresh database with a unique name.
  createDb(prefix = 't') {
    const name = `${prefix}_${randomBytes(5).toString('hex')}`;
    pg('createdb', this.dir, name);
    return name;
  }
  // The owner's URL (user postgres), for migrations and for tests that
  // inspect or tamper with the database.
  url(db) {
    return pg('url', this.dir, db);
  }
  // The same database as another role.
  urlAs(db, role) {
    return this.url(db).replace('postgresql://postgres@', `postgresql://${role}@`);
  }
  stop(mode = 'fast') {
    pg('stop', this.dir, mode);
  }
  start() {
    pg('start', this.dir);
  }
  destroy() {
    if (!this.owned) return;
    try { pg('stop', this.dir, 'immediate'); } catch { /* already down */ }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// psql against a database; returns rows as arrays of strings.
export function sql(url, query) {
  const args = ['-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', url, '-c', query];
  const out = execFileSync('psql', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
}

// A broker process with its own database, master key and port.
export class Broker {
  constructor(opts) {
    Object.assign(this, opts);
    this.logs = '';
  }

  // tls: {cert, key, ca} file paths to serve HTTPS; url is then https://
  // and the start-up probe trusts ca.
  // serveEnv: extra environment for the daemon only, not for the CLI
  // (e.g. a libfaketime clock for `serve` while the CLI keeps the true one).
  // ipv6: listen on [::1] instead of 127.0.0.1.
  static async start({ cluster = Cluster.shared(), env = {}, serveEnv = {}, migrate = true, db, tls, ipv6 = false } = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'cs-broker-'));
    const keyFile = join(dir, 'master.key');
    writeFileSync(keyFile, randomBytes(32).toString('base64') + '\n', { mode: 0o600 });
    const dbName = db || cluster.createDb();
    const port = await freePort();
    const b = new Broker({
      dir, cluster, db: dbName, port, serveEnv,
      url: `${tls ? 'https' : 'http'}://${ipv6 ? '[::1]' : '127.0.0.1'}:${port}`,
      ca: tls ? readFileSync(tls.ca) : undefined,
      dbUrl: cluster.url(dbName),
      env: {
        ...(tls ? { COUNTERSIGN_TLS_CERT_FILE: tls.cert, COUNTERSIGN_TLS_KEY_FILE: tls.key } : {}),
        COUNTERSIGN_DATABASE_URL: cluster.urlAs(dbName, 'countersign_broker'),
        COUNTERSIGN_MIGRATE_DATABASE_URL: cluster.url(dbName),
        COUNTERSIGN_MASTER_KEY_FILE: keyFile,
        COUNTERSIGN_LISTEN: ipv6 ? `[::1]:${port}` : `127.0.0.1:${port}`,
        COUNTERSIGN_THREADS: '4',
        COUNTERSIGN_KEY_REFRESH: '2',
        // Functional tests make many requests per agent; limits.test.mjs
        // checks the limits themselves with the real defaults' shape.
        COUNTERSIGN_RATE_BC_AUTHORIZE: '100000',
        COUNTERSIGN_RATE_TOKEN: '100000',
        ...env,
      },
    });
    if (migrate) b.cliOk('migrate');
    await b.spawn();
    return b;
  }

  async spawn() {
    this.proc = spawn(BIN, ['serve'], {
      env: { ...process.env, ...this.env, ...this.serveEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.proc.stderr.on('data', (d) => { this.logs += d.toString(); });
    this.exited = new Promise((r) => this.proc.on('exit', (code, sig) => r({ code, sig })));
    for (let i = 0; i < 100; i++) {
      try {
        const r = this.ca ? await httpsGet(`${this.url}/healthz`, { ca: this.ca })
          : await fetch(`${this.url}/healthz`);
        if (r.status === 200) return;
      } catch { /* not up yet */ }
      if (this.proc.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`broker did not start:\n${this.logs}`);
  }

  // Another broker process on the same database and master key, on its
  // own port: a second replica. env overrides this one's settings.
  async sibling(env = {}) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'cs-broker-'));
    const b = new Broker({
      ...this, proc: undefined, logs: '', dir, port,
      url: `${this.ca ? 'https' : 'http'}://127.0.0.1:${port}`,
      env: { ...this.env, COUNTERSIGN_LISTEN: `127.0.0.1:${port}`, ...env },
    });
    await b.spawn();
    return b;
  }

  cli(...args) {
    const r = spawnSync(BIN, args, {
      env: { ...process.env, ...this.env },
      encoding: 'utf8',
    });
    let json;
    try { json = JSON.parse(r.stdout); } catch { json = undefined; }
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, json };
  }

  cliOk(...args) {
    const r = this.cli(...args);
    if (r.code !== 0) throw new Error(`countersign ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
    return r;
  }

  sql(query) {
    return sql(this.dbUrl, query);
  }

  // POST a form to an endpoint. auth: {id, secret, method: 'basic'|'post'}.
  async post(path, form = {}, { auth, headers = {} } = {}) {
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) {
      if (Array.isArray(v)) v.forEach((x) => body.append(k, x));
      else if (v !== undefined) body.append(k, v);
    }
    const h = { 'content-type': 'application/x-www-form-urlencoded', ...headers };
    if (auth && auth.method !== 'post') {
      h.authorization = 'Basic ' + Buffer.from(
        `${encodeURIComponent(auth.id)}:${encodeURIComponent(auth.secret)}`).toString('base64');
    } else if (auth) {
      body.append('client_id', auth.id);
      body.append('client_secret', auth.secret);
    }
    const r = await fetch(this.url + path, { method: 'POST', headers: h, body: body.toString() });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, headers: r.headers, text, json };
  }

  async get(path, headers = {}) {
    const r = await fetch(this.url + path, { headers });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, headers: r.headers, text, json };
  }

  // Create an agent and return {id, secret}.
  agent(name, ...extra) {
    const r = this.cliOk('agent', 'add', name, '--json', ...extra);
    return { id: r.json.client_id, secret: r.json.client_secret };
  }

  // Stop with SIGTERM. A broker that does not exit cleanly (a crash, or a
  // leak report under the sanitizer build) fails the test file.
  async stop() {
    let result = null;
    if (this.proc) {
      if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
      result = await this.exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
    if (result && !this.killed && (result.code !== 0 || result.sig !== null)) {
      throw new Error(`broker exited with ${result.code ?? result.sig}:\n${this.logs.slice(-4000)}`);
    }
  }

  // kill -9, for crash tests; stop() then accepts the outcome.
  async kill() {
    this.killed = true;
    this.proc.kill('SIGKILL');
    await this.exited;
  }
}

// GET over HTTPS trusting only opts.ca; resolves {status, text, cert}
// where cert is the server's leaf certificate (getPeerCertificate()).
export function httpsGet(url, { ca, headers = {} } = {}) {
  return new Promise((res, rej) => {
    const req = httpsRequest(url, { ca, headers, agent: false }, (r) => {
      const cert = r.socket.getPeerCertificate();
      let text = '';
      r.on('data', (d) => { text += d; });
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, text, cert }));
    });
    req.on('error', rej);
    req.end();
  });
}

// Decode a JWT's parts without verifying (for assertions only).
export function decodeJwt(token) {
  const [h, p] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString()),
  };
}

export function artifactsDir() {
  const d = join(ROOT, 'tests', 'artifacts');
  mkdirSync(d, { recursive: true });
  return d;
}

export { readFileSync };
