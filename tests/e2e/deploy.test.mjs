// Static and dynamic checks of the files in deploy/: the systemd unit is
// verified by systemd-analyze and its system-call filter is checked against
// what the real broker calls (traced with strace); the Dockerfile, the
// compose file and the Kubernetes manifests, which cannot be run here (no
// container runtime), are parsed and checked for their hardening, the
// manifests also against the Kubernetes JSON schemas of the npm package
// kubernetes-models (offline).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, BIN, Broker, freePort, sleep } from './lib.mjs';

const DEPLOY = join(ROOT, 'deploy');
const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// YAML (all documents of a file) through python3's yaml module, as JSON.
function yamlDocs(file) {
  const r = spawnSync('python3', ['-c',
    'import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))', file],
  { encoding: 'utf8' });
  assert.equal(r.status, 0, `python3 yaml cannot parse ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

// The unit's [Service] settings as { key: [values...] }.
function unitSettings(text) {
  const out = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sec = line.match(/^\[(.+)\]$/);
    if (sec) { section = sec[1]; continue; }
    const m = line.match(/^([A-Za-z]+)=(.*)$/);
    assert.ok(m, `not a setting: ${line}`);
    (out[`${section}.${m[1]}`] ||= []).push(m[2]);
  }
  return out;
}

// systemd-analyze verify on a copy of the unit whose ExecStart names the
// binary built here (verify checks that it exists). Returns its output.
function verifyUnit(text) {
  const dir = mkdtempSync(join(tmpdir(), 'cs-unit-'));
  try {
    const f = join(dir, 'countersign.service');
    writeFileSync(f, text.replaceAll('/usr/local/bin/countersign', BIN));
    const v = spawnSync('systemd-analyze', ['verify', '--man=no', f], { encoding: 'utf8' });
    const s = spawnSync('systemd-analyze', ['security', '--offline=yes', '--threshold=20', '--no-pager', f], { encoding: 'utf8' });
    const exposure = Number((s.stdout.match(/Overall exposure level for countersign\.service: ([\d.]+)/) || [])[1]);
    return { code: v.status, out: (v.stdout + v.stderr).trim(), exposure, securityCode: s.status };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const UNIT = readFileSync(join(DEPLOY, 'countersign.service'), 'utf8');

test('the systemd unit verifies cleanly and is hardened', { skip: !have('systemd-analyze') && 'systemd-analyze missing (deploy/deps.sh test installs systemd)' }, () => {
  const r = verifyUnit(UNIT);
  assert.equal(r.code, 0, r.out);
  // verify exits 0 on unknown keys and bad values, only printing them, so
  // any output at all is a failure.
  assert.equal(r.out, '', `systemd-analyze verify complained:\n${r.out}`);
  assert.ok(r.exposure > 0 && r.exposure <= 2.0, `exposure ${r.exposure} (systemd-analyze security)`);

  // The checker sees real mistakes: a misspelt key and a bad value.
  const typo = verifyUnit(UNIT.replace('NoNewPrivileges=yes', 'NoNewPrivilegs=yes'));
  assert.match(typo.out, /Unknown key 'NoNewPrivilegs'/);
  const bad = verifyUnit(UNIT.replace('ProtectSystem=strict', 'ProtectSystem=very'));
  assert.notEqual(bad.out, '');
  const weak = verifyUnit(UNIT.replace(/^(NoNewPrivileges|CapabilityBoundingSet|ProtectSystem|ProtectHome|PrivateUsers|SystemCallFilter|PrivateDevices|RestrictAddressFamilies|MemoryDenyWriteExecute)=.*$/gm, ''));
  assert.ok(weak.exposure > r.exposure + 2, `a weakened unit scores ${weak.exposure} vs ${r.exposure}`);

  const s = unitSettings(UNIT);
  const one = (k) => (s[`Service.${k}`] || []).join(' ');
  assert.equal(one('User'), 'countersign');
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('ProtectHome'), 'yes');
  assert.equal(one('PrivateTmp'), 'yes');
  assert.equal(one('PrivateDevices'), 'yes');
  assert.equal(one('CapabilityBoundingSet'), '');
  assert.ok('Service.CapabilityBoundingSet' in s);
  assert.equal(one('MemoryDenyWriteExecute'), 'yes');
  assert.equal(one('RestrictAddressFamilies'), 'AF_INET AF_INET6 AF_UNIX');
  assert.match(one('SystemCallFilter'), /^@system-service\b/);
  assert.equal(one('StateDirectory'), 'countersign');
  assert.equal(one('ConfigurationDirectory'), 'countersign');
  assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.match(one('ExecStart'), /^\/usr\/local\/bin\/countersign --config \/etc\/countersign\/countersign\.conf serve$/);
});

// Every system call in a systemd filter set, groups expanded.
function syscallSet(name, seen = new Set()) {
  const r = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager', name], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = new Set();
  for (const raw of r.stdout.split('\n').slice(1)) {
    const w = raw.trim();
    if (w === '' || w.startsWith('#')) continue;
    if (w.startsWith('@')) {
      if (seen.has(w)) continue;
      seen.add(w);
      for (const x of syscallSet(w, seen)) out.add(x);
    } else {
      out.add(w);
    }
  }
  return out;
}

// Is BIN the sanitizer build of `make asan`?
const SANITIZED = /NEEDED\s+libasan/.test(spawnSync('objdump', ['-p', BIN], { encoding: 'utf8' }).stdout || '');

test('the unit\'s system-call filter allows every call the broker makes', { skip: (!have('strace') || !have('systemd-analyze')) && 'strace or systemd-analyze missing' }, async () => {
  const allowed = syscallSet('@system-service');
  for (const x of syscallSet('@privileged')) allowed.delete(x);
  assert.ok(allowed.has('epoll_wait') && !allowed.has('setuid'));

  const b = await Broker.start();
  const dir = mkdtempSync(join(tmpdir(), 'cs-strace-'));
  const trace = join(dir, 'trace');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // LeakSanitizer cannot run under ptrace: a sanitizer build is traced with
  // leak detection off (every other test checks for leaks).
  const p = spawn('strace', ['-f', '-qq', '-o', trace, BIN, 'serve'], {
    env: {
      ...process.env, ...b.env, COUNTERSIGN_LISTEN: `127.0.0.1:${port}`,
      ...(SANITIZED ? { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:detect_leaks=0` } : {}),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let logs = '';
  p.stderr.on('data', (d) => { logs += d; });
  const exited = new Promise((r) => p.on('exit', (code) => r(code)));
  try {
    let up = false;
    for (let i = 0; i < 200 && !up; i++) {
      try { up = (await fetch(`${url}/healthz`)).status === 200; } catch { await sleep(50); }
    }
    assert.ok(up, `traced broker did not start:\n${logs}`);
    b.cliOk('scope', 'add', 'x:read', '--kind', 'read');
    const a = b.agent('traced');
    b.cliOk('grant', 'add', 'traced', 'x:read', '--audience', 'https://x.example');
    const body = new URLSearchParams({ grant_type: 'client_credentials', scope: 'x:read', resource: 'https://x.example' });
    const auth = 'Basic ' + Buffer.from(`${a.id}:${a.secret}`).toString('base64');
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${url}/oauth2/token`, { method: 'POST', body, headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' } });
      assert.equal(r.status, 200, await r.text());
    }
    for (const path of ['/.well-known/jwks.json', '/readyz', '/metrics', '/nope']) await fetch(`${url}${path}`);
    await sleep(1200); // a key refresh and a sealer round
    // Signals go to the broker itself (strace's first traced pid): strace
    // would take them for itself and detach.
    const pid = Number(readFileSync(trace, 'utf8').match(/^(\d+)\s/)[1]);
    assert.ok(pid > 0 && pid !== p.pid);
    process.kill(pid, 'SIGHUP');
    await sleep(100);
    process.kill(pid, 'SIGTERM');
    assert.equal(await exited, 0, logs);
    const used = new Set();
    for (const line of readFileSync(trace, 'utf8').split('\n')) {
      const m = line.match(/^\d+\s+([a-z0-9_]+)\(/);
      if (m) used.add(m[1]);
    }
    assert.ok(used.has('epoll_wait') || used.has('epoll_pwait'), 'the trace has the server loop');
    const missing = [...used].filter((x) => !allowed.has(x));
    assert.deepEqual(missing, [], 'system calls the unit\'s SystemCallFilter would refuse');
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    await b.stop();
  }
});

test('the Dockerfile builds in one stage and runs in a slim, non-root one with the runtime libraries only', () => {
  const text = readFileSync(join(DEPLOY, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages = text.split(/^FROM /m).slice(1).map((s) => `FROM ${s}`);
  assert.ok(stages.length >= 2, 'multi-stage');
  const final = stages[stages.length - 1];
  assert.match(final, /^FROM debian:bookworm-slim\s*$/m);
  assert.match(final, /^COPY --from=build \/src\/build\/countersign \/usr\/local\/bin\/countersign$/m);
  const user = final.match(/^USER (\S+)$/m);
  assert.ok(user && !/^(0|root)(:|$)/.test(user[1]), 'final stage runs as a non-root user');
  const pkgs = (final.match(/apt-get install[^&]*/) || [''])[0].split(/\s+/).filter((w) => /^[a-z0-9][a-z0-9.+-]+$/.test(w) && !['apt-get', 'install'].includes(w));
  assert.ok(!pkgs.some((p) => p.endsWith('-dev') || p === 'build-essential' || p === 'gcc'), `build tools in the final stage: ${pkgs}`);
  assert.match(final, /--no-install-recommends/);
  assert.match(final, /rm -rf \/var\/lib\/apt\/lists/);
  // Every shared library the binary needs comes from a package the final
  // stage installs (asked of dpkg on this Debian 12 machine).
  const needed = spawnSync('objdump', ['-p', BIN], { encoding: 'utf8' }).stdout
    .split('\n').map((l) => l.match(/^\s*NEEDED\s+(\S+)/)).filter(Boolean).map((m) => m[1]);
  assert.ok(needed.length >= 5, `NEEDED of ${BIN}: ${needed}`);
  for (const lib of needed) {
    if (lib.startsWith('libc.so') || lib.startsWith('libm.so')) continue;
    // The sanitizer runtimes of `make asan` are not in a release build.
    if (/^lib(asan|ubsan|lsan)\.so/.test(lib)) continue;
    const owner = spawnSync('dpkg', ['-S', `*/${lib}`], { encoding: 'utf8' }).stdout.split(':')[0];
    assert.ok(owner, `no package owns ${lib}`);
    assert.ok(pkgs.includes(owner), `${lib} is in ${owner}, which the final stage does not install (${pkgs})`);
  }
  // The build stage builds with the same packages deploy/deps.sh uses.
  for (const dev of ['libssl-dev', 'libpq-dev', 'libmicrohttpd-dev', 'libjansson-dev', 'libcurl4-openssl-dev', 'libgnutls28-dev']) {
    assert.match(stages[0], new RegExp(`\\b${dev}\\b`));
  }
  // Everything the Makefile needs for build/countersign is copied in.
  for (const d of ['broker', 'include', 'lib', 'migrations', 'tools']) assert.match(stages[0], new RegExp(`^COPY ${d} `, 'm'));
});

test('the compose file runs PostgreSQL 15, migrates first, and confines the broker', () => {
  const [c] = yamlDocs(join(DEPLOY, 'compose.yaml'));
  const { postgres, migrate, broker } = c.services;
  assert.match(postgres.image, /^postgres:15(\b|-)/);
  assert.ok(postgres.healthcheck.test.join(' ').includes('pg_isready'));
  assert.deepEqual(migrate.command, ['migrate']);
  assert.deepEqual(broker.command, ['serve']);
  assert.equal(broker.depends_on.migrate.condition, 'service_completed_successfully');
  assert.equal(broker.depends_on.postgres.condition, 'service_healthy');
  for (const s of [migrate, broker]) {
    assert.equal(s.read_only, true);
    assert.deepEqual(s.cap_drop, ['ALL']);
    assert.ok(s.security_opt.includes('no-new-privileges:true'));
    assert.ok(!/^(0|root)(:|$)/.test(String(s.user)));
    assert.equal(s.build?.dockerfile ?? 'deploy/Dockerfile', 'deploy/Dockerfile');
  }
  assert.ok(postgres.security_opt.includes('no-new-privileges:true'));
  // The master key and passwords arrive as secrets (files), never as values.
  assert.equal(broker.environment.COUNTERSIGN_MASTER_KEY_FILE, '/run/secrets/master_key');
  assert.ok(broker.secrets.includes('master_key'));
  for (const s of Object.values(c.services)) {
    for (const [k, v] of Object.entries(s.environment || {})) {
      assert.ok(!/PASSWORD$|SECRET|MASTER_KEY$/.test(k), `${k} holds a secret value`);
      assert.ok(!/:\/\/[^/@:]+:[^/@]+@/.test(String(v)), `${k} has a password in a URL`);
    }
    for (const name of s.secrets || []) assert.ok(c.secrets[name]?.file, `secret ${name} is defined from a file`);
  }
  assert.match(broker.environment.COUNTERSIGN_ISSUER, /^https:\/\//);
  assert.match(broker.ports[0], /^127\.0\.0\.1:/);
  // The init script it mounts is valid shell.
  assert.equal(spawnSync('sh', ['-n', join(DEPLOY, 'compose-initdb.sh')]).status, 0);
});

async function k8sDocs() {
  const dir = join(DEPLOY, 'k8s');
  const docs = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml')).sort()) {
    for (const d of yamlDocs(join(dir, f))) docs.push({ file: f, ...d });
  }
  return docs;
}

const MODELS = {
  'apps/v1 Deployment': 'kubernetes-models/apps/v1/Deployment',
  'v1 Service': 'kubernetes-models/v1/Service',
  'v1 Secret': 'kubernetes-models/v1/Secret',
  'batch/v1 Job': 'kubernetes-models/batch/v1/Job',
  'policy/v1 PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
};

test('the Kubernetes manifests pass the API schemas', async () => {
  const docs = await k8sDocs();
  assert.ok(docs.length >= 5);
  for (const d of docs) {
    const { file, ...obj } = d;
    const kind = `${obj.apiVersion} ${obj.kind}`;
    assert.ok(MODELS[kind], `${file}: unexpected ${kind}`);
    const mod = await import(MODELS[kind]);
    const Model = mod[obj.kind];
    assert.doesNotThrow(() => new Model(obj).validate(), `${file}: ${kind} ${obj.metadata?.name}`);
  }
  // The schema check itself rejects a wrong manifest.
  const { Deployment } = await import(MODELS['apps/v1 Deployment']);
  const dep = structuredClone(docs.find((x) => x.kind === 'Deployment'));
  delete dep.file;
  dep.spec.replicas = 'two';
  assert.throws(() => new Deployment(dep).validate());
});

test('the Kubernetes manifests: replicas, confinement, probes, secrets, migrate job', async () => {
  const docs = await k8sDocs();
  const by = (kind) => docs.filter((d) => d.kind === kind);
  const [dep] = by('Deployment');
  assert.ok(dep.spec.replicas >= 2);
  const pod = dep.spec.template.spec;
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.equal(pod.automountServiceAccountToken, false);
  const [job] = by('Job');
  const jobPod = job.spec.template.spec;
  assert.equal(jobPod.securityContext.runAsNonRoot, true);
  for (const c of [...pod.containers, ...(pod.initContainers || []), ...jobPod.containers]) {
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], c.name);
    assert.ok(c.resources?.limits?.memory, `${c.name} has a memory limit`);
  }
  const broker = pod.containers.find((c) => c.name === 'broker');
  assert.deepEqual(broker.args, ['serve']);
  assert.equal(broker.readinessProbe.httpGet.path, '/readyz');
  assert.equal(broker.livenessProbe.httpGet.path, '/healthz');
  const portNames = broker.ports.map((p) => p.name);
  assert.ok(portNames.includes(broker.readinessProbe.httpGet.port));
  const env = Object.fromEntries(broker.env.map((e) => [e.name, e]));
  assert.match(env.COUNTERSIGN_ISSUER.value, /^https:\/\//);
  assert.equal(env.COUNTERSIGN_LISTEN.value.split(':').pop(), String(broker.ports[0].containerPort));
  // The master key is a Secret, copied to a memory volume as 0400.
  const keyDir = env.COUNTERSIGN_MASTER_KEY_FILE.value.replace(/\/[^/]+$/, '');
  const keyMount = broker.volumeMounts.find((m) => m.mountPath === keyDir);
  assert.ok(keyMount?.readOnly, 'the key volume is mounted read-only');
  const keyVol = pod.volumes.find((v) => v.name === keyMount.name);
  assert.equal(keyVol.emptyDir?.medium, 'Memory');
  assert.match(pod.initContainers[0].command.join(' '), /chmod 0400/);
  const secretVol = pod.volumes.find((v) => v.secret);
  const secrets = Object.fromEntries(by('Secret').map((s) => [s.metadata.name, s]));
  assert.ok(secrets[secretVol.secret.secretName]?.stringData?.['master.key'] !== undefined);
  // Every secretKeyRef resolves to a key of a Secret in the manifests.
  for (const c of [...pod.containers, ...jobPod.containers]) {
    for (const e of c.env || []) {
      const ref = e.valueFrom?.secretKeyRef;
      if (!ref) {
        assert.ok(!/PASSWORD|SECRET|DATABASE_URL/.test(e.name), `${e.name} is a plain value`);
        continue;
      }
      assert.ok(secrets[ref.name]?.stringData?.[ref.key] !== undefined, `${ref.name}/${ref.key}`);
    }
  }
  assert.deepEqual(jobPod.containers[0].args, ['migrate']);
  assert.ok(jobPod.containers[0].env.some((e) => e.name === 'COUNTERSIGN_MIGRATE_DATABASE_URL'));
  // The Service selects the Deployment's pods and targets its named port.
  const [svc] = by('Service');
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(dep.spec.template.metadata.labels[k], v);
  for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) assert.equal(dep.spec.template.metadata.labels[k], v);
  assert.ok(portNames.includes(svc.spec.ports[0].targetPort));
  const [pdb] = by('PodDisruptionBudget');
  assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < dep.spec.replicas);
});
