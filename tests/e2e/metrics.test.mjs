// End-to-end: GET /metrics speaks the Prometheus text format and its
// counters move with what the broker does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Broker, sleep } from './lib.mjs';

const AUD = 'https://forum.example';
let b;
let agent;

before(async () => {
  b = await Broker.start();
  b.cliOk('scope', 'add', 'm:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'm:write', '--kind', 'write', '--no-require-dpop');
  agent = b.agent('metered');
  b.cliOk('grant', 'add', 'metered', 'm:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'metered', 'm:write', '--audience', AUD);
});

after(async () => {
  await b.stop();
});

// Parse the exposition into { 'name{labels}': value }.
function parse(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (-?[\d.e+]+|\+Inf|NaN)$/);
    assert.ok(m, `not a sample line: ${line}`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

async function scrape() {
  const r = await fetch(`${b.url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parse(await r.text());
}

test('metrics count issuance, refusals, introspections, approvals and requests', async () => {
  const m0 = await scrape();
  assert.equal(m0.countersign_up, 1);
  for (let i = 0; i < 3; i++) {
    assert.equal((await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'm:read', resource: AUD }, { auth: agent })).status, 200);
  }
  assert.equal((await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'm:write', resource: AUD }, { auth: agent })).status, 400);
  assert.equal((await b.post('/oauth2/bc-authorize', { scope: 'm:write', resource: AUD, binding_message: 'm' }, { auth: agent })).status, 200);
  await b.get('/no/such/path');
  const m1 = await scrape();
  const d = (k) => (m1[k] || 0) - (m0[k] || 0);
  assert.equal(d('countersign_tokens_issued_total{path="client_credentials"}'), 3);
  assert.equal(d('countersign_tokens_denied_total{reason="write_scope_needs_approval"}'), 1);
  assert.equal(d('countersign_approvals_total{event="requested"}'), 1);
  assert.equal(m1.countersign_approvals_pending, 1);
  assert.equal(d('countersign_http_requests_total{endpoint="/oauth2/token",status="200"}'), 3);
  assert.equal(d('countersign_http_requests_total{endpoint="/oauth2/token",status="400"}'), 1);
  assert.equal(d('countersign_http_requests_total{endpoint="unmatched",status="404"}'), 1);
  const count = m1['countersign_http_request_duration_seconds_count{endpoint="/oauth2/token"}'];
  assert.equal(m1['countersign_http_request_duration_seconds_bucket{endpoint="/oauth2/token",le="+Inf"}'], count);
  assert.ok(count >= 4);
  assert.ok(m1.countersign_db_connects_total >= 1);
  // Approver keys: one expiring within 14 days, one already expired, one
  // far off; a disabled approver's key is nobody's concern.
  const keys0 = [m1.countersign_approver_keys_expiring, m1.countersign_approver_keys_expired];
  b.cliOk('approver', 'add', 'm-soon', '--groups', 'ops', '--key-ttl', '7d');
  b.cliOk('approver', 'add', 'm-later', '--groups', 'ops', '--key-ttl', '60d');
  b.cliOk('approver', 'add', 'm-gone', '--groups', 'ops', '--key-ttl', '1');
  b.cliOk('approver', 'add', 'm-off', '--groups', 'ops', '--key-ttl', '1');
  b.cliOk('approver', 'disable', 'm-off');
  await sleep(1100);
  const m2 = await scrape();
  assert.deepEqual([m2.countersign_approver_keys_expiring, m2.countersign_approver_keys_expired],
    [keys0[0] + 1, keys0[1] + 1]);
  // Nothing secret or per-token is exposed.
  const text = await (await fetch(`${b.url}/metrics`)).text();
  assert.ok(!text.includes(agent.secret));
  assert.ok(!/jti|eyJ/.test(text));
});
