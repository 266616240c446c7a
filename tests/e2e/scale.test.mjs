// End-to-end: the hot paths find their token rows by index, whatever the
// planner believes about the table. The batched use recording once joined
// tokens with the batch, and on a table without statistics (a new
// deployment before autovacuum's first ANALYZE, or after a bulk load) the
// planner guessed that "revoked_at IS NULL AND expires_at > now()" leaves
// one row, and read every token for every batch. This file seeds 2,000
// expired tokens with autovacuum off for the table, drives issuance,
// introspection and revocation through the daemon, and asks PostgreSQL's
// own counters whether any of it scanned the tokens table.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://scale.example';
const SEEDED = 2000;
let b;
let agent;
let svc;

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_THREADS: '16' } });
  b.cliOk('scope', 'add', 'scale:read', '--kind', 'read');
  agent = b.agent('scale-agent');
  b.cliOk('grant', 'add', 'scale-agent', 'scale:read', '--audience', AUD);
  const s = b.cliOk('service', 'add', 'scale-svc', '--audience', AUD, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
  // Expired tokens of the same agent and audience, as most rows of a
  // running broker are; no statistics, so the planner must guess.
  b.sql('ALTER TABLE tokens SET (autovacuum_enabled = false)');
  b.sql(`INSERT INTO tokens (jti, agent_id, client_id, scopes, audience, kid, issued_at, expires_at)
         SELECT 'seed-' || g, a.id, a.client_id, '{scale:read}', '${AUD}', 'seed',
                now() - interval '1 hour', now() - interval '1 minute'
         FROM agents a, generate_series(1, ${SEEDED}) g WHERE a.name = 'scale-agent'`);
});

after(async () => {
  await b?.stop();
});

// The tokens table's counters: scans, and rows inserted and updated.
function counters() {
  const [[seq, ins, upd]] = b.sql(`SELECT seq_scan, n_tup_ins, n_tup_upd FROM pg_stat_user_tables
                                   WHERE relname = 'tokens'`);
  return { seq: Number(seq), ins: Number(ins), upd: Number(upd) };
}

const token = () => b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'scale:read', resource: AUD }, { auth: agent });
const introspect = (t) => b.post('/oauth2/introspect', { token: t }, { auth: svc });

test('issuance, introspection and revocation never scan the tokens table', async () => {
  const start = counters();
  // Concurrent requests, so that the group commits carry batches.
  const issued = await Promise.all(Array.from({ length: 40 }, token));
  assert.ok(issued.every((r) => r.status === 200), issued.map((r) => r.status).join());
  const tokens = issued.map((r) => r.json.access_token);
  for (let round = 0; round < 3; round++) {
    const used = await Promise.all(tokens.map(introspect));
    assert.ok(used.every((r) => r.json?.active === true), JSON.stringify(used.find((r) => !r.json?.active)?.json));
  }
  for (const t of tokens.slice(0, 5)) {
    assert.equal((await b.post('/oauth2/revoke', { token: t }, { auth: agent })).status, 200);
  }
  const after = await Promise.all(tokens.slice(0, 10).map(introspect));
  assert.deepEqual(after.map((r) => r.json.active), [false, false, false, false, false, true, true, true, true, true]);
  assert.equal(decodeJwt(tokens[0]).payload.aud, AUD);

  // Each backend reports its counters some time after its transactions;
  // wait until the inserts and updates are all counted (40 tokens; 125
  // uses and 5 revocations), so that the scans of the same transactions are.
  let now = counters();
  for (let i = 0; i < 150 && (now.ins - start.ins < 40 || now.upd - start.upd < 130); i++) {
    await sleep(100);
    now = counters();
  }
  assert.ok(now.ins - start.ins >= 40 && now.upd - start.upd >= 130, JSON.stringify({ start, now }));
  assert.equal(now.seq - start.seq, 0, 'a request read every row of tokens');
});
