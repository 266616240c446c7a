// End-to-end: the HTTP workers share a small pool of database connections
// (db_pool), so many workers cost PostgreSQL few backends, and a busy pool
// makes requests wait, never fail or mix up transactions.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Broker } from './lib.mjs';

const AUD = 'https://pool.example';
let b;
let agent;
let svc;
let approverKey;

before(async () => {
  // 32 workers, one pooled connection, no read caches: every token
  // request goes to the database and they all queue for that connection.
  b = await Broker.start({
    env: { COUNTERSIGN_THREADS: '32', COUNTERSIGN_DB_POOL: '1', COUNTERSIGN_CACHE_TTL_MS: '0' },
  });
  b.cliOk('scope', 'add', 'pool:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'pool:write', '--kind', 'write', '--approver-group', 'pool-mods', '--no-require-dpop');
  agent = b.agent('pooled');
  b.cliOk('grant', 'add', 'pooled', 'pool:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'pooled', 'pool:write', '--audience', AUD);
  const s = b.cliOk('service', 'add', 'pool-svc', '--audience', AUD, '--json').json;
  svc = { id: s.client_id, secret: s.client_secret };
  approverKey = b.cliOk('approver', 'add', 'pool-approver', '--groups', 'pool-mods', '--json').json.api_key;
});

after(async () => {
  await b.stop();
});

async function metric(name) {
  const text = await (await fetch(`${b.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  assert.ok(line, `metric ${name} missing`);
  return Number(line.split(' ')[1]);
}

function backends() {
  return Number(b.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'countersign_broker' " +
    "AND application_name = 'countersign' AND datname = current_database()")[0][0]);
}

test('many concurrent requests share one pooled connection and all succeed', async () => {
  const waitsBefore = await metric('countersign_db_pool_waits_total');
  const tokens = await Promise.all(Array.from({ length: 64 }, () =>
    b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'pool:read', resource: AUD },
      { auth: agent })));
  for (const r of tokens) assert.equal(r.status, 200, r.text);
  const uses = await Promise.all(tokens.map((r) =>
    b.post('/oauth2/introspect', { token: r.json.access_token }, { auth: svc })));
  for (const r of uses) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.active, true);
  }
  assert.ok(await metric('countersign_db_pool_waits_total') > waitsBefore,
    'with 32 workers and one connection some statements must have waited');
  assert.equal(await metric('countersign_db_pool_timeouts_total'), 0);
  // Every token has its audit row, and every use was recorded.
  const jtis = tokens.map((r) => JSON.parse(Buffer.from(r.json.access_token.split('.')[1], 'base64url')).jti);
  const list = jtis.map((j) => `'${j}'`).join(',');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.issued' AND jti IN (${list})`)[0][0], '64');
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.used' AND jti IN (${list})`)[0][0], '64');
});

test('the broker holds few database connections however many workers it runs', async () => {
  // One pooled connection, plus the committers (2 for tokens, 2 for uses),
  // the sealer, the sweeper and the main thread's start-up connection:
  // never one per worker.
  const n = backends();
  assert.ok(n >= 1 && n <= 8, `countersign backends: ${n}`);
});

test('transactions keep their connection through a busy pool (step-up round trip)', async () => {
  const results = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
    const ba = await b.post('/oauth2/bc-authorize', {
      scope: 'pool:write', resource: AUD, binding_message: `pooled write ${i}`,
    }, { auth: agent });
    assert.equal(ba.status, 200, ba.text);
    const ap = await fetch(`${b.url}/v1/approvals/${encodeURIComponent(ba.json.auth_req_id)}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'ok' }),
    });
    assert.equal(ap.status, 200, await ap.text());
    return b.post('/oauth2/token', {
      grant_type: 'urn:openid:params:grant-type:ciba', auth_req_id: ba.json.auth_req_id,
    }, { auth: agent });
  }));
  for (const r of results) assert.equal(r.status, 200, r.text);
  assert.ok(backends() <= 8);
});
