// End-to-end: services introspect tokens (RFC 7662) and every use is
// recorded; revocation by token, agent and RFC 7009; key rotation without
// breaking live tokens; the C verify library through `countersign token
// verify` and linked as a shared library into a program of our own
// (tests/e2e/verify_driver.c).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import * as jose from 'jose';
import { BIN, Broker, ROOT, decodeJwt, readFileSync, sleep } from './lib.mjs';

const run = promisify(execFile);

const AUD = 'https://forum.example';
const WIKI = 'https://wiki.example';
const CIBA = 'urn:openid:params:grant-type:ciba';
let b;
let agent;
let agent2;
let forum;
let wiki;
let both;
let approverKey;

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1', COUNTERSIGN_THREADS: '32' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'wiki:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  b.cliOk('scope', 'add', 'forum:edit', '--kind', 'write', '--no-require-dpop', '--uses', '3');
  agent = b.agent('svc-agent');
  agent2 = b.agent('svc-agent2');
  for (const a of ['svc-agent', 'svc-agent2']) {
    b.cliOk('grant', 'add', a, 'forum:read', '--audience', AUD);
    b.cliOk('grant', 'add', a, 'wiki:read', '--audience', WIKI);
    b.cliOk('grant', 'add', a, 'forum:post', '--audience', AUD);
    b.cliOk('grant', 'add', a, 'forum:edit', '--audience', AUD);
  }
  const svc = (name, aud) => {
    const r = b.cliOk('service', 'add', name, '--audience', aud, '--json').json;
    return { id: r.client_id, secret: r.client_secret };
  };
  forum = svc('forum', AUD);
  wiki = svc('wiki', WIKI);
  both = svc('portal', `${AUD},${WIKI}`);
  approverKey = b.cliOk('approver', 'add', 'svc-approver', '--groups', 'ops', '--json').json.api_key;
});

after(async () => {
  await b.stop();
});

async function readToken(a = agent, extra = {}) {
  const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD, ...extra }, { auth: a });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

async function writeToken(scope = 'forum:post', a = agent) {
  const ask = await b.post('/oauth2/bc-authorize', { scope, resource: AUD, binding_message: 'edit a post' }, { auth: a });
  assert.equal(ask.status, 200, ask.text);
  const id = ask.json.auth_req_id;
  const ok = await fetch(`${b.url}/v1/approvals/${id}/approve`, {
    method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }, body: '{}',
  });
  assert.equal(ok.status, 200);
  const t = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: a });
  assert.equal(t.status, 200, t.text);
  return t.json.access_token;
}

const introspect = (token, svc = forum, extra = {}) =>
  b.post('/oauth2/introspect', { token, ...extra }, { auth: svc });

function uses(jti) {
  return b.sql(`SELECT details->>'result' FROM audit_events WHERE type = 'token.used' AND jti = '${jti}' ORDER BY seq`)
    .map((r) => r[0]);
}

test('service rotate-secret and disable end leaked service credentials at once, audited', async () => {
  const made = b.cliOk('service', 'add', 'leaky', '--audience', AUD, '--json').json;
  const old = { id: made.client_id, secret: made.client_secret };
  const token = await readToken();
  const { jti } = decodeJwt(token).payload;
  const failures = () => b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'service.auth_failed'
                                AND subject = 'leaky' ORDER BY seq`).map((r) => r[0]);
  const useCount = () => b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0];
  // The last two uses: one through each broker below.
  const lastUses = () => b.sql(`SELECT details->>'result', actor FROM audit_events WHERE type = 'token.used'
                                AND jti = '${jti}' ORDER BY seq DESC LIMIT 2`);
  // Introspection remembers a service's authentication for cache_ttl_ms;
  // two more brokers remember it for a minute, so that the rotation and
  // the disabling below happen while they still do: one records uses in
  // group commits, the other one statement at a time.
  const slow = await b.sibling({ COUNTERSIGN_CACHE_TTL_MS: '60000', COUNTERSIGN_ISSUER: b.url });
  const single = await b.sibling({ COUNTERSIGN_CACHE_TTL_MS: '60000', COUNTERSIGN_ISSUER: b.url, COUNTERSIGN_GROUP_COMMIT: '0' });
  try {
    // Through both; each answer must be the same.
    const at = async (cred) => {
      const [x, y] = [await slow.post('/oauth2/introspect', { token }, { auth: cred }),
        await single.post('/oauth2/introspect', { token }, { auth: cred })];
      assert.deepEqual(y.json, x.json);
      return x;
    };
    assert.equal((await at(old)).json.active, true);

    const rotated = b.cliOk('service', 'rotate-secret', 'leaky', '--json').json;
    assert.equal(rotated.client_id, 'leaky');
    assert.match(rotated.client_secret, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(rotated.client_secret, old.secret);
    const fresh = { id: 'leaky', secret: rotated.client_secret };
    // The remembered old secret still authenticates there, but the
    // database re-checks the secret with the use: refused, not counted.
    let before = useCount();
    assert.deepEqual((await at(old)).json, { active: false });
    assert.equal(useCount(), before);
    assert.deepEqual(lastUses(), [['service_refused', 'service:leaky'], ['service_refused', 'service:leaky']]);
    // Once nothing remembers it, the old secret is a failed authentication.
    await sleep(1100);
    let r = await introspect(token, old);
    assert.equal(r.status, 401);
    assert.equal(r.json.error, 'invalid_client');
    assert.deepEqual(failures(), ['bad_secret']);
    assert.equal((await introspect(token, fresh)).json.active, true);
    assert.equal((await at(fresh)).json.active, true);
    // The secret is shown once and never written to the audit log.
    const events = b.sql(`SELECT type, actor, details::text FROM audit_events WHERE subject = 'service:leaky' ORDER BY seq`);
    assert.deepEqual(events.map((e) => e[0]), ['service.created', 'service.secret_rotated']);
    assert.match(events[1][1], /^admin:/);
    assert.ok(!events.some((e) => e[2].includes(rotated.client_secret) || e[2].includes(old.secret)));

    const off = b.cliOk('service', 'disable', 'leaky', '--json').json;
    assert.deepEqual(off, { name: 'leaky', disabled: true, changed: true });
    before = useCount();
    assert.deepEqual((await at(fresh)).json, { active: false });
    assert.equal(useCount(), before);
    assert.deepEqual(lastUses(), [['service_refused', 'service:leaky'], ['service_refused', 'service:leaky']]);
    await sleep(1100);
    r = await introspect(token, fresh);
    assert.equal(r.status, 401);
    assert.equal(r.json.error, 'invalid_client');
    assert.deepEqual(failures(), ['bad_secret', 'disabled']);
  } finally {
    await slow.stop();
    await single.stop();
  }
  assert.equal(b.cliOk('service', 'list', '--json').json.find((s) => s.name === 'leaky').disabled, true);
  // Again: nothing changes and nothing more is audited; a new secret does
  // not bring a disabled service back.
  assert.deepEqual(b.cliOk('service', 'disable', 'leaky', '--json').json, { name: 'leaky', disabled: true, changed: false });
  const again = b.cliOk('service', 'rotate-secret', 'leaky', '--json').json;
  assert.equal((await introspect(token, { id: 'leaky', secret: again.client_secret })).status, 401);
  assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE type = 'service.disabled' AND subject = 'service:leaky'")[0][0], '1');

  // Unknown services, and a service that authenticates with a key.
  for (const cmd of ['disable', 'rotate-secret']) {
    const u = b.cli('service', cmd, 'no-such-service');
    assert.equal(u.code, 1);
    assert.match(u.stderr, /no service named 'no-such-service'/);
  }
  const dir = mkdtempSync(join(tmpdir(), 'cs-svc-'));
  try {
    const pem = join(dir, 'svc.pem');
    writeFileSync(pem, await jose.exportSPKI((await jose.generateKeyPair('ES256')).publicKey));
    b.cliOk('service', 'add', 'keyed-leaky', '--audience', AUD, '--public-key', pem);
    const k = b.cli('service', 'rotate-secret', 'keyed-leaky');
    assert.equal(k.code, 1);
    assert.match(k.stderr, /registered key and has no secret/);
    assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE subject = 'service:keyed-leaky'")[0][0], '1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(b.cli('service', 'disable').code, 2);
  assert.equal(b.cli('service', 'rotate-secret', 'a', 'b').code, 2);
});

test('agent rotate-secret ends a leaked agent secret at once on every broker, audited', async () => {
  const XG = 'urn:ietf:params:oauth:grant-type:token-exchange';
  const AT = 'urn:ietf:params:oauth:token-type:access_token';
  const made = b.cliOk('agent', 'add', 'leaky-agent', '--json').json;
  const old = { id: made.client_id, secret: made.client_secret };
  b.cliOk('grant', 'add', 'leaky-agent', 'forum:read', '--audience', AUD);
  b.cliOk('grant', 'add', 'leaky-agent', 'forum:post', '--audience', AUD);
  const minted = () => Number(b.sql("SELECT count(*) FROM tokens WHERE client_id = 'leaky-agent'")[0][0]);
  const failures = () => b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'client.auth_failed'
                                AND subject = 'leaky-agent' ORDER BY seq`).map((r) => r[0]);
  const read = { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD };
  // Four more brokers remember an authentication for a minute, so the
  // rotation happens while they still remember the old secret. Each then
  // tries one way of minting with it: client credentials in group commits
  // and one statement at a time, token exchange, and the CIBA collection.
  const cache = { COUNTERSIGN_CACHE_TTL_MS: '60000', COUNTERSIGN_ISSUER: b.url };
  const batched = await b.sibling(cache);
  const single = await b.sibling({ ...cache, COUNTERSIGN_GROUP_COMMIT: '0' });
  const exchanging = await b.sibling(cache);
  const collecting = await b.sibling(cache);
  const siblings = [batched, single, exchanging, collecting];
  try {
    let subject;
    for (const x of siblings) {
      const r = await x.post('/oauth2/token', read, { auth: old });
      assert.equal(r.status, 200, r.text);
      subject = r.json.access_token;
    }
    // A write request approved before the rotation.
    const ask = await b.post('/oauth2/bc-authorize', { scope: 'forum:post', resource: AUD, binding_message: 'rotate test' }, { auth: old });
    assert.equal(ask.status, 200, ask.text);
    const id = ask.json.auth_req_id;
    const ok = await fetch(`${b.url}/v1/approvals/${id}/approve`, {
      method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }, body: '{}',
    });
    assert.equal(ok.status, 200);

    const rotated = b.cliOk('agent', 'rotate-secret', 'leaky-agent', '--json').json;
    assert.equal(rotated.client_id, 'leaky-agent');
    assert.match(rotated.client_secret, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(rotated.client_secret, old.secret);
    const fresh = { id: 'leaky-agent', secret: rotated.client_secret };

    // Each broker still remembers the old secret, but every statement
    // that mints re-checks it in the database: invalid_client, audited
    // as a bad secret, and nothing minted.
    const before = minted();
    const refused = async (r) => {
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error, 'invalid_client');
    };
    const xg = { grant_type: XG, subject_token: subject, subject_token_type: AT, scope: 'forum:read' };
    await refused(await batched.post('/oauth2/token', read, { auth: old }));
    await refused(await single.post('/oauth2/token', read, { auth: old }));
    await refused(await exchanging.post('/oauth2/token', xg, { auth: old }));
    await refused(await collecting.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: old }));
    assert.equal(minted(), before);
    assert.deepEqual(failures(), ['bad_secret', 'bad_secret', 'bad_secret', 'bad_secret']);
    // The approval was not spent by the refused collection: the new
    // secret collects it, and works everywhere.
    const t = await collecting.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: fresh });
    assert.equal(t.status, 200, t.text);
    assert.equal(decodeJwt(t.json.access_token).payload.scope, 'forum:post');
    for (const x of [b, ...siblings]) {
      const r = await x.post('/oauth2/token', read, { auth: fresh });
      assert.equal(r.status, 200, r.text);
    }
    assert.equal((await exchanging.post('/oauth2/token', xg, { auth: fresh })).status, 200);
    assert.equal(minted(), before + 7);
    // Now that nothing remembers it, the old secret is a plain failed
    // authentication on every broker.
    for (const x of [b, ...siblings]) await refused(await x.post('/oauth2/token', read, { auth: old }));
    assert.equal(failures().length, 9);
    assert.equal(minted(), before + 7);

    // The secret is shown once and never written to the audit log.
    const events = b.sql(`SELECT type, actor, details::text FROM audit_events WHERE subject = 'agent:leaky-agent'
                          AND type LIKE 'agent.%' ORDER BY seq`);
    assert.deepEqual(events.map((e) => e[0]), ['agent.created', 'agent.secret_rotated']);
    assert.match(events[1][1], /^admin:/);
    const all = b.sql("SELECT details::text FROM audit_events WHERE subject LIKE '%leaky-agent%'").map((r) => r[0]).join('\n');
    assert.ok(!all.includes(rotated.client_secret) && !all.includes(old.secret));
  } finally {
    for (const x of siblings) await x.stop();
  }

  // Unknown agents, an agent that authenticates with a key, and usage.
  const u = b.cli('agent', 'rotate-secret', 'no-such-agent');
  assert.equal(u.code, 1);
  assert.match(u.stderr, /no agent named 'no-such-agent'/);
  const dir = mkdtempSync(join(tmpdir(), 'cs-agent-'));
  try {
    const pem = join(dir, 'agent.pem');
    writeFileSync(pem, await jose.exportSPKI((await jose.generateKeyPair('ES256')).publicKey));
    b.cliOk('agent', 'add', 'keyed-agent', '--public-key', pem);
    const k = b.cli('agent', 'rotate-secret', 'keyed-agent');
    assert.equal(k.code, 1);
    assert.match(k.stderr, /registered key and has no secret/);
    assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE subject = 'agent:keyed-agent'")[0][0], '1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(b.cli('agent', 'rotate-secret').code, 2);
  assert.equal(b.cli('agent', 'rotate-secret', 'a', 'b').code, 2);
  // Text output names the agent and shows the secret once.
  const text = b.cliOk('agent', 'rotate-secret', 'leaky-agent').stdout;
  assert.match(text, /^agent leaky-agent has a new secret\nclient_secret: [A-Za-z0-9_-]{43}\n/);
});

test('agent rotate-secret --revoke-tokens also ends what the leaked secret minted', async () => {
  const made = b.cliOk('agent', 'add', 'leaky-minter', '--json').json;
  const old = { id: made.client_id, secret: made.client_secret };
  b.cliOk('grant', 'add', 'leaky-minter', 'forum:read', '--audience', AUD);
  const mint = async (cred) => {
    const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: cred });
    assert.equal(r.status, 200, r.text);
    return r.json.access_token;
  };
  const kept = await mint(old);
  // Without the flag, tokens already minted stay valid.
  const r1 = b.cliOk('agent', 'rotate-secret', 'leaky-minter', '--json').json;
  assert.equal(r1.tokens_revoked, undefined);
  assert.equal((await introspect(kept)).json.active, true);
  const cred = { id: 'leaky-minter', secret: r1.client_secret };
  const more = [await mint(cred), await mint(cred)];
  // With it, every live token of the agent ends in the same statement.
  const r2 = b.cliOk('agent', 'rotate-secret', 'leaky-minter', '--revoke-tokens', '--json').json;
  assert.equal(r2.tokens_revoked, 3);
  for (const t of [kept, ...more]) {
    assert.deepEqual((await introspect(t)).json, { active: false });
    assert.equal(uses(decodeJwt(t).payload.jti).at(-1), 'revoked');
  }
  assert.equal(await mint({ id: 'leaky-minter', secret: r2.client_secret }) !== undefined, true);
  const by = b.sql("SELECT DISTINCT revoked_by FROM tokens WHERE client_id = 'leaky-minter' AND revoked_at IS NOT NULL");
  assert.equal(by.length, 1);
  assert.match(by[0][0], /^admin:/);
  const details = b.sql(`SELECT details::text FROM audit_events WHERE type = 'agent.secret_rotated'
                         AND subject = 'agent:leaky-minter' ORDER BY seq`).map((r) => JSON.parse(r[0]));
  assert.equal(details.length, 2);
  assert.equal(details[0].tokens_revoked, undefined);
  assert.equal(details[1].tokens_revoked, 3);
  const text = b.cliOk('agent', 'rotate-secret', 'leaky-minter', '--revoke-tokens').stdout;
  assert.match(text, /^1 live token\(s\) revoked\nagent leaky-minter has a new secret\n/);
});

test('introspection answers RFC 7662 and records the use', async () => {
  const token = await readToken();
  const { jti } = decodeJwt(token).payload;
  const r = await introspect(token);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('cache-control'), 'no-store');
  assert.equal(r.json.active, true);
  for (const k of ['scope', 'client_id', 'sub', 'aud', 'iss', 'exp', 'iat', 'jti', 'token_type']) {
    assert.ok(r.json[k] !== undefined, k);
  }
  assert.equal(r.json.scope, 'forum:read');
  assert.equal(r.json.sub, 'svc-agent');
  assert.equal(r.json.aud, AUD);
  assert.equal(r.json.iss, b.url);
  assert.equal(r.json.jti, jti);
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.uses_left, undefined, 'read tokens have no use limit');
  // Read tokens may be used many times; each use is recorded.
  assert.equal((await introspect(token, both)).json.active, true);
  assert.deepEqual(uses(jti), ['active', 'active']);
  const [[actor]] = b.sql(`SELECT actor FROM audit_events WHERE type = 'token.used' AND jti = '${jti}' LIMIT 1`);
  assert.equal(actor, 'service:forum');
  assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0], '2');
});

test('a service only sees tokens for its own audiences', async () => {
  const token = await readToken();
  const { jti } = decodeJwt(token).payload;
  const r = await introspect(token, wiki);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { active: false });
  assert.deepEqual(uses(jti), ['audience_mismatch']);
  const wikiToken = await readToken(agent, { scope: 'wiki:read', resource: WIKI });
  assert.equal((await introspect(wikiToken, wiki)).json.active, true);
  assert.deepEqual((await introspect(wikiToken, forum)).json, { active: false });
  assert.equal((await introspect(wikiToken, both)).json.active, true);
});

test('invalid tokens are active:false, the reason only in the audit log', async () => {
  // A token signed with the broker's real key but by a broker of another
  // issuer: a second process on the same database and master key.
  const elsewhere = await b.sibling({ COUNTERSIGN_ISSUER: 'https://elsewhere.example' });
  let foreign;
  try {
    const r = await elsewhere.post('/oauth2/token',
      { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: agent });
    assert.equal(r.status, 200, r.text);
    foreign = r.json.access_token;
  } finally {
    await elsewhere.stop();
  }
  assert.equal(decodeJwt(foreign).payload.iss, 'https://elsewhere.example');
  // Introspected while live, so that its signature is remembered
  // (broker/vcache.c): every variant below and its expiry must still count.
  const token = await readToken(agent, { requested_ttl: '2' });
  assert.equal((await introspect(token)).json.active, true, 'live');
  const [h, p, s] = token.split('.');
  const claims = decodeJwt(token).payload;
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const pem = '-----BEGIN PUBLIC KEY-----\nMFkw...\n-----END PUBLIC KEY-----\n';
  const hs = (() => {
    const hh = enc({ alg: 'HS256', typ: 'at+jwt', kid: decodeJwt(token).header.kid });
    const sig = createHmac('sha256', pem).update(`${hh}.${p}`).digest('base64url');
    return `${hh}.${p}.${sig}`;
  })();
  const cases = {
    tampered_payload: `${h}.${enc({ ...claims, scope: 'forum:post' })}.${s}`,
    tampered_signature: `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`,
    alg_none: `${enc({ alg: 'none', typ: 'at+jwt' })}.${p}.`,
    hs256_public_key: hs,
    zero_signature: `${h}.${p}.${Buffer.alloc(64).toString('base64url')}`,
    unknown_kid: `${enc({ alg: 'ES256', typ: 'at+jwt', kid: 'nope' })}.${p}.${s}`,
    wrong_issuer: foreign,
    truncated: token.slice(0, token.length - 10),
    garbage: 'not-a-token',
    oversized: 'a'.repeat(20000),
    empty: '',
  };
  for (const [name, t] of Object.entries(cases)) {
    const r = await introspect(t);
    assert.equal(r.status, 200, name);
    assert.deepEqual(r.json, { active: false }, name);
  }
  await sleep(3100);
  assert.deepEqual((await introspect(token)).json, { active: false }, 'expired');
  const reasons = b.sql(`SELECT details->>'result' FROM audit_events WHERE type = 'token.used'
                         AND actor = 'service:forum' ORDER BY seq DESC LIMIT 12`).map((r) => r[0]);
  assert.ok(reasons.includes('bad_signature'));
  assert.ok(reasons.includes('bad_header'));
  assert.ok(reasons.includes('unknown_key'));
  assert.ok(reasons.includes('malformed'));
  assert.ok(reasons.includes('too_large'));
  assert.ok(reasons.includes('expired'));
  assert.ok(reasons.includes('wrong_issuer'));
});

test('introspection needs service credentials', async () => {
  const token = await readToken();
  let r = await b.post('/oauth2/introspect', { token });
  assert.equal(r.status, 401);
  assert.equal(r.json.error, 'invalid_client');
  r = await introspect(token, { id: 'forum', secret: 'wrong' });
  assert.equal(r.status, 401);
  // Agents are not services.
  r = await introspect(token, agent);
  assert.equal(r.status, 401);
  r = await b.post('/oauth2/introspect', {}, { auth: forum });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.ok(Number(b.sql("SELECT count(*) FROM audit_events WHERE type = 'service.auth_failed'")[0][0]) >= 3);
});

test('a write token is single-use: the first introspection is active, then never again', async () => {
  const token = await writeToken();
  const { jti } = decodeJwt(token).payload;
  let r = await introspect(token);
  assert.equal(r.json.active, true);
  assert.equal(r.json.uses_left, 0);
  assert.equal(r.json.approval.approvers[0], 'svc-approver');
  r = await introspect(token);
  assert.deepEqual(r.json, { active: false });
  assert.deepEqual(uses(jti), ['active', 'used_up']);
});

test('concurrent introspections of one single-use token: exactly one is active', async () => {
  for (let round = 0; round < 3; round++) {
    const token = await writeToken();
    const results = await Promise.all(Array.from({ length: 16 }, () => introspect(token)));
    const active = results.filter((r) => r.json.active === true);
    assert.equal(active.length, 1, results.map((r) => JSON.stringify(r.json)).join(' '));
    const { jti } = decodeJwt(token).payload;
    assert.equal(uses(jti).filter((x) => x === 'active').length, 1);
    assert.equal(uses(jti).length, 16);
  }
});

test('concurrent uses of several limited tokens, interleaved in group commits: each is active exactly as often as allowed', async () => {
  // Uses of different tokens share batches, and so do uses of one token:
  // the batch counts them in request order against the row it locked.
  const single = await Promise.all([writeToken(), writeToken(), writeToken()]);
  const triple = await writeToken('forum:edit');
  const all = [...single, triple];
  const calls = [];
  for (let i = 0; i < 12; i++) for (const t of all) calls.push(introspect(t));
  const results = await Promise.all(calls);
  for (const r of results) assert.equal(r.status, 200, r.text);
  for (const [k, t] of all.entries()) {
    const mine = results.filter((_, i) => i % all.length === k);
    const want = t === triple ? 3 : 1;
    assert.equal(mine.filter((r) => r.json.active === true).length, want);
    const { jti } = decodeJwt(t).payload;
    assert.equal(uses(jti).length, 12, 'every use is recorded');
    assert.equal(uses(jti).filter((x) => x === 'active').length, want);
    assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0], String(want));
    // The active uses are numbered 1..want, each once, and say what is left.
    const numbers = b.sql(`SELECT (details->>'use')::int FROM audit_events WHERE type = 'token.used'
                           AND jti = '${jti}' AND details->>'result' = 'active' ORDER BY 1`).map((r) => Number(r[0]));
    assert.deepEqual(numbers, Array.from({ length: want }, (_, i) => i + 1));
    assert.deepEqual(mine.filter((r) => r.json.active).map((r) => r.json.uses_left).sort(),
      Array.from({ length: want }, (_, i) => i));
  }
});

test('many concurrent uses of one unlimited token: all active, each counted once, numbered 1..N', async () => {
  const token = await readToken();
  const { jti } = decodeJwt(token).payload;
  const n = 96;
  const results = await Promise.all(Array.from({ length: n }, () => introspect(token)));
  for (const r of results) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.active, true);
  }
  assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0], String(n));
  const numbers = b.sql(`SELECT (details->>'use')::int, (details->>'uses_before')::int FROM audit_events
                         WHERE type = 'token.used' AND jti = '${jti}' ORDER BY 1`);
  assert.deepEqual(numbers.map((r) => Number(r[0])), Array.from({ length: n }, (_, i) => i + 1));
  assert.ok(numbers.every(([use, before]) => Number(before) === Number(use) - 1));
  // Events written by one statement share its transaction id: fewer
  // transactions than uses means batches carried several uses of it.
  const txs = Number(b.sql(`SELECT count(DISTINCT xmin::text) FROM audit_events WHERE type = 'token.used' AND jti = '${jti}'`)[0][0]);
  assert.ok(txs < n, `${txs} transactions for ${n} uses`);
  // And a revoked token stays inactive however many uses share a batch.
  b.cliOk('token', 'revoke', jti);
  const after = await Promise.all(Array.from({ length: 16 }, () => introspect(token)));
  assert.ok(after.every((r) => r.status === 200 && r.json.active === false));
  assert.equal(b.sql(`SELECT use_count FROM tokens WHERE jti = '${jti}'`)[0][0], String(n));
  assert.equal(uses(jti).filter((x) => x === 'revoked').length, 16);
});

test('--uses N allows N uses', async () => {
  const token = await writeToken('forum:edit');
  const seen = [];
  for (let i = 0; i < 4; i++) seen.push((await introspect(token)).json.active);
  assert.deepEqual(seen, [true, true, true, false]);
});

test('RFC 7009 revocation by the owning agent', async () => {
  const token = await readToken();
  const { jti } = decodeJwt(token).payload;
  // Another agent cannot revoke it.
  let r = await b.post('/oauth2/revoke', { token }, { auth: agent2 });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'unauthorized_client');
  assert.equal((await introspect(token)).json.active, true);
  r = await b.post('/oauth2/revoke', { token, token_type_hint: 'access_token' }, { auth: agent });
  assert.equal(r.status, 200);
  assert.deepEqual((await introspect(token)).json, { active: false });
  assert.equal(uses(jti).at(-1), 'revoked');
  const [[actor, via]] = b.sql(`SELECT actor, details->>'via' FROM audit_events WHERE type = 'token.revoked' AND jti = '${jti}'`);
  assert.equal(actor, 'agent:svc-agent');
  assert.equal(via, 'rfc7009');
  // Revoking again, or revoking garbage, is fine (RFC 7009 §2.2).
  assert.equal((await b.post('/oauth2/revoke', { token }, { auth: agent })).status, 200);
  assert.equal((await b.post('/oauth2/revoke', { token: 'garbage' }, { auth: agent })).status, 200);
  assert.equal((await b.post('/oauth2/revoke', { token })).status, 401);
  assert.equal((await b.post('/oauth2/revoke', {}, { auth: agent })).status, 400);
});

test('countersign token revoke JTI', async () => {
  const token = await readToken();
  const { jti } = decodeJwt(token).payload;
  const r = b.cliOk('token', 'revoke', '--', jti);
  assert.match(r.stdout, /revoked/);
  assert.deepEqual((await introspect(token)).json, { active: false });
  const again = b.cli('token', 'revoke', '--', jti);
  assert.equal(again.code, 1);
  assert.equal(b.sql(`SELECT actor FROM audit_events WHERE type = 'token.revoked' AND jti = '${jti}'`)[0][0].startsWith('admin:'), true);
});

test('agent disable is a kill switch for every live token', async () => {
  const a = b.agent('killme');
  b.cliOk('grant', 'add', 'killme', 'forum:read', '--audience', AUD);
  const tokens = [await readToken(a), await readToken(a), await readToken(a)];
  for (const t of tokens) assert.equal((await introspect(t)).json.active, true);
  b.cliOk('agent', 'disable', 'killme');
  for (const t of tokens) {
    assert.deepEqual((await introspect(t)).json, { active: false });
    assert.equal(uses(decodeJwt(t).payload.jti).at(-1), 'agent_disabled');
  }
});

test('grant revoke stops new issuance', async () => {
  const a = b.agent('grantless');
  const g = b.cliOk('grant', 'add', 'grantless', 'forum:read', '--audience', AUD, '--json').json;
  const token = await readToken(a);
  b.cliOk('grant', 'revoke', String(g.id));
  const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: a });
  assert.equal(r.status, 400);
  // Tokens already issued stay valid until they expire (revoke them by jti or agent).
  assert.equal((await introspect(token)).json.active, true);
});

test('key rotation keeps old tokens valid; retirement removes the old key', async () => {
  const old = await readToken();
  const oldKid = decodeJwt(old).header.kid;
  const rot = b.cliOk('keys', 'rotate', '--json').json;
  assert.notEqual(rot.kid, oldKid);
  let fresh;
  for (let i = 0; i < 40; i++) {
    fresh = await readToken();
    if (decodeJwt(fresh).header.kid === rot.kid) break;
    await sleep(100);
  }
  assert.equal(decodeJwt(fresh).header.kid, rot.kid, 'new tokens carry the new kid');
  const JWKS = jose.createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`));
  for (const t of [old, fresh]) {
    await jose.jwtVerify(t, JWKS, { issuer: b.url, audience: AUD, typ: 'at+jwt' });
    assert.equal((await introspect(t)).json.active, true);
  }
  const kids = (await b.get('/.well-known/jwks.json')).json.keys.map((k) => k.kid);
  assert.ok(kids.includes(oldKid) && kids.includes(rot.kid));
  // Too early to retire: the old key may still have live tokens.
  let r = b.cliOk('keys', 'retire', '--json');
  assert.deepEqual(r.json.retired, []);
  // With a 1 s ceiling and no margin, the key is old enough a moment later.
  await sleep(1100);
  const saved = { ...b.env };
  Object.assign(b.env, { COUNTERSIGN_MAX_TTL: '1', COUNTERSIGN_DEFAULT_TTL: '1', COUNTERSIGN_KEY_RETIRE_MARGIN: '0' });
  r = b.cliOk('keys', 'retire', '--json');
  b.env = saved;
  assert.ok(r.json.retired.includes(oldKid));
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'key.retired' AND subject = '${oldKid}'`)[0][0], '1');
  let gone = false;
  for (let i = 0; i < 40 && !gone; i++) {
    gone = !(await b.get('/.well-known/jwks.json')).json.keys.some((k) => k.kid === oldKid);
    if (!gone) await sleep(100);
  }
  assert.ok(gone, 'the retired key left the JWKS');
  assert.deepEqual((await introspect(old)).json, { active: false });
  const list = b.cliOk('keys', 'list', '--json').json;
  assert.equal(list.find((k) => k.kid === oldKid).state, 'retired');
  assert.equal(list.find((k) => k.kid === rot.kid).state, 'current');
});

test('countersign token verify uses the C verify library against the live JWKS', async () => {
  const token = await readToken();
  const jwks = `${b.url}/.well-known/jwks.json`;
  let r = b.cli('token', 'verify', '--jwks', jwks, '--audience', AUD, token);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(JSON.parse(r.stdout).jti, decodeJwt(token).payload.jti);
  r = b.cli('token', 'verify', '--jwks', jwks, '--audience', WIKI, token);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /wrong_audience/);
  r = b.cli('token', 'verify', '--jwks', jwks, '--audience', AUD, '--issuer', 'https://evil.example', token);
  assert.match(r.stdout, /wrong_issuer/);
  r = b.cli('token', 'verify', '--jwks', jwks, token.slice(0, -4) + 'AAAA');
  assert.equal(r.code, 1);
  assert.match(r.stdout, /bad_signature|malformed/);
});

// The live JWKS saved to a file in a fresh temporary directory.
async function jwksFile() {
  const dir = mkdtempSync(join(tmpdir(), 'cs-jwks-'));
  const r = await b.get('/.well-known/jwks.json');
  assert.equal(r.status, 200);
  writeFileSync(join(dir, 'jwks.json'), r.text);
  return { dir, file: join(dir, 'jwks.json') };
}

test('countersign token verify --jwks FILE verifies against a saved JWKS', async () => {
  const token = await readToken();
  const { dir, file } = await jwksFile();
  try {
    let r = b.cli('token', 'verify', '--jwks', file, '--audience', AUD, token);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(JSON.parse(r.stdout).jti, decodeJwt(token).payload.jti);
    r = b.cli('token', 'verify', '--jwks', file, '--audience', WIKI, token);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /wrong_audience/);
    r = b.cli('token', 'verify', '--jwks', join(dir, 'missing.json'), '--audience', AUD, token);
    assert.notEqual(r.code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a program linked against the shared libcountersign-verify.so verifies a real token; the library exports only cs_*', async () => {
  const so = join(dirname(BIN), 'libcountersign-verify.so');
  const exported = (await run('nm', ['-D', '--defined-only', so])).stdout
    .split('\n').filter((l) => l.trim()).map((l) => l.trim().split(/\s+/).at(-1));
  assert.ok(exported.includes('cs_verify') && exported.includes('cs_verifier_load_jwks_file'), exported.join(' '));
  assert.deepEqual(exported.filter((n) => !n.startsWith('cs_')), [], 'only the cs_* API leaves the library');
  // The build links the soname beside the library, so LD_LIBRARY_PATH=build works.
  assert.equal(readlinkSync(join(dirname(BIN), 'libcountersign-verify.so.0')), 'libcountersign-verify.so');

  const token = await readToken();
  const { dir, file } = await jwksFile();
  try {
    // Installed the usual way: the file under its soname, found at run
    // time through LD_LIBRARY_PATH, and the development name for -l.
    symlinkSync(so, join(dir, 'libcountersign-verify.so.0'));
    symlinkSync(so, join(dir, 'libcountersign-verify.so'));
    const exe = join(dir, 'verify_driver');
    const args = ['-std=c11', '-D_GNU_SOURCE', '-Wall', '-Wextra', '-Werror', '-Wpedantic', '-Wshadow',
      '-Wstrict-prototypes', '-Wmissing-prototypes', '-Wformat=2', '-g',
      '-I', join(ROOT, 'include'), '-o', exe, join(ROOT, 'tests', 'e2e', 'verify_driver.c'),
      '-L', dir, '-lcountersign-verify'];
    if (readFileSync(so).includes('__asan_')) args.unshift('-fsanitize=address,undefined');
    await run(process.env.CC || 'cc', args);
    // Linked dynamically: the library is a run-time dependency and none of
    // its code was copied into the program.
    assert.match((await run('readelf', ['-d', exe])).stdout, /NEEDED.*\[libcountersign-verify\.so\.0\]/);
    assert.match((await run('nm', ['-D', exe])).stdout, /^\s+U cs_verify$/m);

    const env = { ...process.env, LD_LIBRARY_PATH: dir };
    const ok = await run(exe, [b.url, AUD, file, token], { env });
    const { jti, sub } = decodeJwt(token).payload;
    assert.equal(ok.stdout.trim(), `ok ${jti} ${sub} forum:read`);
    const wrong = await run(exe, [b.url, WIKI, file, token], { env }).catch((e) => e);
    assert.equal(wrong.code, 1);
    assert.equal(wrong.stdout.trim(), 'invalid wrong_audience');
    const issuer = await run(exe, ['https://elsewhere.example', AUD, file, token], { env }).catch((e) => e);
    assert.equal(issuer.stdout.trim(), 'invalid wrong_issuer');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('metadata advertises introspection and revocation', async () => {
  const m = (await b.get('/.well-known/oauth-authorization-server')).json;
  assert.equal(m.introspection_endpoint, `${b.url}/oauth2/introspect`);
  assert.equal(m.revocation_endpoint, `${b.url}/oauth2/revoke`);
});
