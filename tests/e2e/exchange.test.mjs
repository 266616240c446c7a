// End-to-end: RFC 8693 token exchange at POST /oauth2/token. An agent
// trades a live token for a narrower one (down-scoping) or delegates it to
// a sub-agent; every widening is refused and audited.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import * as jose from 'jose';
import { BIN, Broker, decodeJwt, sleep } from './lib.mjs';

const execFileP = promisify(execFile);

const AUD = 'https://forum.example';
const WIKI = 'https://wiki.example';
const XG = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AT = 'urn:ietf:params:oauth:token-type:access_token';
const CIBA = 'urn:openid:params:grant-type:ciba';
let b;
let parent;
let child;
let grandchild;
let stranger;
let svc;
let approverKey;

before(async () => {
  b = await Broker.start({ env: { COUNTERSIGN_POLL_INTERVAL: '1' } });
  b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:search', '--kind', 'read');
  b.cliOk('scope', 'add', 'wiki:read', '--kind', 'read');
  b.cliOk('scope', 'add', 'forum:post', '--kind', 'write', '--no-require-dpop');
  parent = b.agent('planner');
  child = b.agent('summariser');
  grandchild = b.agent('quoter');
  stranger = b.agent('stranger');
  for (const s of ['forum:read', 'forum:search', 'forum:post']) {
    b.cliOk('grant', 'add', 'planner', s, '--audience', AUD);
    b.cliOk('grant', 'add', 'stranger', s, '--audience', AUD);
  }
  b.cliOk('grant', 'add', 'planner', 'wiki:read', '--audience', WIKI);
  svc = b.cliOk('service', 'add', 'forum', '--audience', AUD, '--json').json;
  svc = { id: svc.client_id, secret: svc.client_secret };
  approverKey = b.cliOk('approver', 'add', 'alice', '--groups', 'mods', '--json').json.api_key;
});

after(async () => {
  await b.stop();
});

async function issue(who = parent, extra = {}) {
  const r = await b.post('/oauth2/token', {
    grant_type: 'client_credentials', scope: 'forum:read forum:search', resource: AUD, ...extra,
  }, { auth: who });
  assert.equal(r.status, 200, r.text);
  return r.json.access_token;
}

const exchange = (subject, extra = {}, who = parent) => b.post('/oauth2/token', {
  grant_type: XG, subject_token: subject, subject_token_type: AT, ...extra,
}, { auth: who });

const introspect = (token) => b.post('/oauth2/introspect', { token }, { auth: svc });

function deniedReasons() {
  return b.sql(`SELECT details->>'reason' FROM audit_events WHERE type = 'token.denied'
                AND details->>'grant' = 'token-exchange' ORDER BY seq`).map((r) => r[0]);
}

function lastDenial() {
  const rows = b.sql(`SELECT details->>'reason', coalesce(jti, ''), details::text FROM audit_events
                      WHERE type = 'token.denied' ORDER BY seq DESC LIMIT 1`);
  return { reason: rows[0][0], jti: rows[0][1], details: rows[0][2] };
}

test('metadata advertises the token-exchange grant', async () => {
  const m = (await b.get('/.well-known/oauth-authorization-server')).json;
  assert.ok(m.grant_types_supported.includes(XG));
  assert.ok(m.grant_types_supported.includes('client_credentials'));
});

test('a narrower token: subset of scopes, same audience, shorter life, act, audited with both jtis', async () => {
  const subject = await issue();
  const sub = decodeJwt(subject).payload;
  const r = await exchange(subject, { scope: 'forum:read', requested_ttl: '60', actor: 'summariser' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.issued_token_type, AT);
  assert.equal(r.json.token_type, 'Bearer');
  assert.equal(r.json.scope, 'forum:read');
  assert.equal(r.json.expires_in, 60);
  assert.equal(r.headers.get('cache-control'), 'no-store');

  const JWKS = jose.createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`));
  const { payload, protectedHeader } = await jose.jwtVerify(r.json.access_token, JWKS, {
    issuer: b.url, audience: AUD, typ: 'at+jwt', algorithms: ['ES256'],
  });
  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.equal(payload.sub, 'planner');
  assert.equal(payload.client_id, 'planner');
  assert.equal(payload.scope, 'forum:read');
  assert.deepEqual(payload.act, { sub: 'summariser' });
  assert.ok(payload.exp <= sub.exp);
  assert.equal(payload.exp - payload.iat, 60);
  assert.notEqual(payload.jti, sub.jti);

  const ev = b.sql(`SELECT actor, subject, details->>'subject_jti', details->>'scope', details->'act'->>'sub'
                    FROM audit_events WHERE type = 'token.exchanged' AND jti = '${payload.jti}'`);
  assert.deepEqual(ev, [['agent:planner', 'agent:planner', sub.jti, 'forum:read', 'summariser']]);
  const row = b.sql(`SELECT t.subject_jti, a.name, t.audience, t.scopes::text FROM tokens t
                     JOIN agents a ON a.id = t.actor_agent_id WHERE t.jti = '${payload.jti}'`);
  assert.deepEqual(row, [[sub.jti, 'summariser', AUD, '{forum:read}']]);
  // No token text ever reaches the audit log.
  const leaked = b.sql(`SELECT count(*) FROM audit_events WHERE details::text LIKE '%${r.json.access_token.split('.')[2].slice(0, 20)}%'
                        OR details::text LIKE '%${subject.split('.')[2].slice(0, 20)}%'`);
  assert.equal(leaked[0][0], '0');

  // Introspection shows act; the service sees who acts for whom.
  const i = await introspect(r.json.access_token);
  assert.equal(i.json.active, true);
  assert.equal(i.json.sub, 'planner');
  assert.deepEqual(i.json.act, { sub: 'summariser' });
});

test('without scope, audience or ttl the exchange keeps the subject scopes and expiry bound', async () => {
  const subject = await issue(parent, { requested_ttl: '30' });
  const r = await exchange(subject);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.scope, 'forum:read forum:search');
  const { payload } = decodeJwt(r.json.access_token);
  assert.ok(payload.exp <= decodeJwt(subject).payload.exp);
  assert.ok(r.json.expires_in <= 30);
  // The agent acted itself.
  assert.deepEqual(payload.act, { sub: 'planner' });
});

test('the sub-agent may narrow a token delegated to it, and delegate it on (act nests)', async () => {
  const subject = await issue();
  const d1 = await exchange(subject, { actor: 'summariser' });
  assert.equal(d1.status, 200, d1.text);
  const d2 = await exchange(d1.json.access_token, { scope: 'forum:search', actor: 'quoter' }, child);
  assert.equal(d2.status, 200, d2.text);
  const p2 = decodeJwt(d2.json.access_token).payload;
  assert.equal(p2.sub, 'planner');
  assert.deepEqual(p2.act, { sub: 'quoter', act: { sub: 'summariser' } });
  // The grandchild narrows further without adding itself again.
  const d3 = await exchange(d2.json.access_token, { requested_ttl: '10' }, grandchild);
  assert.equal(d3.status, 200, d3.text);
  assert.deepEqual(decodeJwt(d3.json.access_token).payload.act, p2.act);
  // The introspected act shows the whole chain.
  assert.deepEqual((await introspect(d2.json.access_token)).json.act, p2.act);
  // But the sub-agent cannot exchange the parent's own token.
  const r = await exchange(subject, { scope: 'forum:read' }, child);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'subject_foreign');
});

test('disabling the actor makes its delegated tokens inactive', async () => {
  b.agent('temp-helper');
  const subject = await issue();
  const d = await exchange(subject, { actor: 'temp-helper' });
  assert.equal(d.status, 200, d.text);
  assert.equal((await introspect(d.json.access_token)).json.active, true);
  b.cliOk('agent', 'disable', 'temp-helper');
  assert.deepEqual((await introspect(d.json.access_token)).json, { active: false });
  const jti = decodeJwt(d.json.access_token).payload.jti;
  const res = b.sql(`SELECT details->>'result' FROM audit_events WHERE type = 'token.used' AND jti = '${jti}' ORDER BY seq DESC LIMIT 1`);
  assert.equal(res[0][0], 'actor_disabled');
  // And a disabled agent cannot be named as actor.
  const r = await exchange(subject, { actor: 'temp-helper' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'actor_unknown_or_disabled');
  const r2 = await exchange(subject, { actor: 'no-such-agent' });
  assert.equal(r2.status, 400);
  assert.equal(lastDenial().reason, 'actor_unknown_or_disabled');
});

test('revoking a token revokes every token exchanged from it, down the chain, and only those', async () => {
  const jtiOf = (t) => decodeJwt(t).payload.jti;
  const subject = await issue();
  const d1 = (await exchange(subject, { actor: 'summariser' })).json.access_token;
  const d2 = (await exchange(d1, { actor: 'quoter' }, child)).json.access_token;
  const d1b = (await exchange(subject, { scope: 'forum:read' })).json.access_token;
  const other = await issue();
  const o1 = (await exchange(other, { actor: 'summariser' })).json.access_token;
  for (const t of [d1, d2, d1b, o1]) assert.equal((await introspect(t)).json.active, true);

  assert.equal((await b.post('/oauth2/revoke', { token: subject }, { auth: parent })).status, 200);
  for (const t of [subject, d1, d2, d1b]) assert.deepEqual((await introspect(t)).json, { active: false });
  assert.equal((await introspect(other)).json.active, true);
  assert.equal((await introspect(o1)).json.active, true);
  // Each is audited as revoked by the same actor and means, naming the
  // token it was exchanged from.
  const rows = b.sql(`SELECT jti, actor, details->>'via', coalesce(details->>'cascade_from', '') FROM audit_events
                      WHERE type = 'token.revoked' AND jti IN ('${[subject, d1, d2, d1b].map(jtiOf).join("','")}') ORDER BY seq`);
  assert.deepEqual(rows.map((r) => r.join('|')).sort(), [
    `${jtiOf(subject)}|agent:planner|rfc7009|`,
    `${jtiOf(d1)}|agent:planner|rfc7009|${jtiOf(subject)}`,
    `${jtiOf(d1b)}|agent:planner|rfc7009|${jtiOf(subject)}`,
    `${jtiOf(d2)}|agent:planner|rfc7009|${jtiOf(d1)}`,
  ].sort());
  // Revoking again changes nothing and writes nothing more.
  assert.equal((await b.post('/oauth2/revoke', { token: subject }, { auth: parent })).status, 200);
  assert.equal(b.sql(`SELECT count(*) FROM audit_events WHERE type = 'token.revoked'
                      AND jti IN ('${[subject, d1, d2, d1b].map(jtiOf).join("','")}')`)[0][0], '4');

  // Revoking a delegate by jti takes its own delegates, not its subject.
  const o2 = (await exchange(o1, { actor: 'quoter' }, child)).json.access_token;
  b.cliOk('token', 'revoke', jtiOf(o1));
  assert.equal((await introspect(other)).json.active, true);
  assert.deepEqual((await introspect(o1)).json, { active: false });
  assert.deepEqual((await introspect(o2)).json, { active: false });
  assert.equal(b.sql(`SELECT details->>'via' || ' ' || (details->>'cascade_from') FROM audit_events
                      WHERE type = 'token.revoked' AND jti = '${jtiOf(o2)}'`)[0][0], `cli ${jtiOf(o1)}`);
});

test('an exchange in flight while its subject is revoked is revoked with it', async () => {
  const subject = await issue();
  // Hold the subject agent's row so that the exchange, once it has read
  // its subject and written its token, waits in its foreign-key check
  // before it commits: the moment a revocation could miss it.
  const psql = spawn('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', b.dbUrl], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  psql.stdout.on('data', (d) => { out += d; });
  const psqlDone = new Promise((r) => psql.on('exit', r));
  // Whether a statement whose text matches like waits for a lock.
  const waits = (like) => b.sql(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                                 AND wait_event_type = 'Lock' AND query LIKE '${like}'`)[0][0] !== '0';
  const until = async (what, cond) => {
    for (let i = 0; i < 100; i++) {
      if (await cond()) return;
      await sleep(50);
    }
    const activity = b.sql(`SELECT wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity
                            WHERE datname = current_database()`);
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(activity)}`);
  };
  try {
    psql.stdin.write("BEGIN;\nSELECT 'held' FROM agents WHERE name = 'planner' FOR UPDATE;\n");
    await until('the lock', () => out.includes('held'));
    const ex = exchange(subject, { scope: 'forum:read' });
    await until('the exchange to wait', () => waits('%INSERT INTO tokens%subject_jti%'));
    // Revoke it from the command line, which shares the code with the
    // endpoint: an HTTP request could queue behind the waiting one on its
    // worker thread.
    let revoked = false;
    const rv = execFileP(BIN, ['token', 'revoke', decodeJwt(subject).payload.jti], { env: { ...process.env, ...b.env } })
      .then((r) => { revoked = true; return r; });
    // The revocation waits for the exchange that holds its subject.
    await until('the revocation to wait', () => revoked || waits('%UPDATE tokens SET revoked_at%'));
    psql.stdin.end('COMMIT;\n');
    assert.equal(await psqlDone, 0);
    const [e, r] = await Promise.all([ex, rv]);
    assert.match(r.stdout, /revoked/);
    assert.equal(e.status, 200, e.text);
    assert.deepEqual((await introspect(e.json.access_token)).json, { active: false }, 'the exchanged token outlived its revoked subject');
  } finally {
    if (psql.exitCode === null) psql.kill();
  }
});

test('adding a scope is refused with invalid_scope and audited', async () => {
  const subject = await issue(parent, { scope: 'forum:search' });
  const before = deniedReasons().length;
  const r = await exchange(subject, { scope: 'forum:search forum:read' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.match(r.json.error_description, /forum:read/);
  const d = lastDenial();
  assert.equal(d.reason, 'scope_widened');
  assert.equal(d.jti, decodeJwt(subject).payload.jti);
  assert.equal(deniedReasons().length, before + 1);
});

test('read to write is refused: a write scope is never minted by exchange', async () => {
  const subject = await issue();
  const r = await exchange(subject, { scope: 'forum:post' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.equal(lastDenial().reason, 'scope_widened');
  assert.equal(b.sql(`SELECT count(*) FROM tokens WHERE 'forum:post' = ANY(scopes) AND approval_id IS NULL`)[0][0], '0');
});

test('a stepped-up write token cannot be exchanged at all', async () => {
  const ask = await b.post('/oauth2/bc-authorize', {
    scope: 'forum:post', resource: AUD, binding_message: 'post the summary',
  }, { auth: parent });
  assert.equal(ask.status, 200, ask.text);
  const id = ask.json.auth_req_id;
  const ap = await fetch(`${b.url}/v1/approvals/${id}/approve`, {
    method: 'POST', headers: { authorization: `Bearer ${approverKey}`, 'content-type': 'application/json' }, body: '{}',
  });
  assert.equal(ap.status, 200, await ap.text());
  const got = await b.post('/oauth2/token', { grant_type: CIBA, auth_req_id: id }, { auth: parent });
  assert.equal(got.status, 200, got.text);
  for (const scope of ['forum:post', undefined]) {
    const r = await exchange(got.json.access_token, { scope });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error, 'invalid_request');
    assert.equal(lastDenial().reason, 'subject_stepped_up');
  }
});

test('widening the audience is refused with invalid_target', async () => {
  const subject = await issue();
  for (const extra of [{ resource: WIKI }, { audience: WIKI }, { resource: AUD, audience: WIKI },
    { resource: [AUD, WIKI] }]) {
    const r = await exchange(subject, extra);
    assert.equal(r.status, 400, JSON.stringify(extra));
    assert.equal(r.json.error, 'invalid_target', JSON.stringify(extra));
  }
  assert.deepEqual(deniedReasons().slice(-4),
    ['audience_widened', 'audience_widened', 'resource_audience_differ', 'several_audiences']);
  // Naming the same audience is fine.
  assert.equal((await exchange(subject, { resource: AUD, audience: AUD })).status, 200);
});

test('a lifetime past the subject token is refused', async () => {
  const subject = await issue(parent, { requested_ttl: '40' });
  const r = await exchange(subject, { requested_ttl: '300' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'ttl_beyond_subject');
  for (const ttl of ['0', '-5', 'abc', '99999999999']) {
    const x = await exchange(subject, { requested_ttl: ttl });
    assert.equal(x.status, 400, ttl);
    assert.equal(x.json.error, 'invalid_request', ttl);
  }
});

test('upgrading revokes the tokens exchanged from tokens revoked before the cascade existed (migration 0014)', async () => {
  const jtiOf = (t) => decodeJwt(t).payload.jti;
  const subject = await issue();
  const d1 = (await exchange(subject, { actor: 'summariser' })).json.access_token;
  const d2 = (await exchange(d1, { actor: 'quoter' }, child)).json.access_token;
  const other = await issue();
  const o1 = (await exchange(other, { actor: 'summariser' })).json.access_token;
  // The state an older broker left: the subject revoked, its delegates not.
  b.sql(`UPDATE tokens SET revoked_at = now(), revoked_by = 'admin:old' WHERE jti = '${jtiOf(subject)}'`);
  for (const t of [d1, d2, o1]) assert.equal((await introspect(t)).json.active, true);
  const version = '0014_revocation_cascade_backfill.sql';
  b.sql(`DELETE FROM schema_migrations WHERE version = '${version}'`);
  assert.match(b.cliOk('migrate').stdout, /1 applied/);
  for (const t of [d1, d2]) assert.deepEqual((await introspect(t)).json, { active: false });
  assert.equal((await introspect(other)).json.active, true);
  assert.equal((await introspect(o1)).json.active, true);
  const rows = b.sql(`SELECT jti, actor, subject, details->>'via', details->>'cascade_from' FROM audit_events
                      WHERE type = 'token.revoked' AND jti IN ('${jtiOf(d1)}', '${jtiOf(d2)}') ORDER BY seq`);
  assert.deepEqual(rows.map((r) => r.join('|')).sort(), [
    `${jtiOf(d1)}|admin:migrate|agent:planner|migration|${jtiOf(subject)}`,
    `${jtiOf(d2)}|admin:migrate|agent:planner|migration|${jtiOf(d1)}`,
  ].sort());
  assert.equal(b.sql(`SELECT count(*) FROM tokens WHERE jti IN ('${jtiOf(d1)}', '${jtiOf(d2)}') AND revoked_by = 'admin:migrate'`)[0][0], '2');
  // Applied again, it finds nothing more to do.
  b.sql(`DELETE FROM schema_migrations WHERE version = '${version}'`);
  const before = b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.revoked'")[0][0];
  b.cliOk('migrate');
  assert.equal(b.sql("SELECT count(*) FROM audit_events WHERE type = 'token.revoked'")[0][0], before);
  const v = b.cliOk('audit', 'verify', '--json').json;
  assert.equal(v.ok, true, JSON.stringify(v));
});

test('expired, revoked, tampered, foreign and unknown subject tokens are refused', async () => {
  // Expired.
  const short = await issue(parent, { requested_ttl: '1' });
  await sleep(2100);
  let r = await exchange(short);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'expired');
  // Revoked.
  const revoked = await issue();
  const rv = await b.post('/oauth2/revoke', { token: revoked }, { auth: parent });
  assert.equal(rv.status, 200);
  r = await exchange(revoked);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'subject_revoked');
  // Tampered: the scope changed, the signature kept.
  const good = await issue(parent, { scope: 'forum:search' });
  const [h, p, s] = good.split('.');
  const forged = { ...decodeJwt(good).payload, scope: 'forum:search forum:post' };
  r = await exchange(`${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'bad_signature');
  assert.equal(lastDenial().jti, '', 'an unverified jti is not recorded');
  // Foreign: another agent's token.
  const theirs = await issue(stranger);
  r = await exchange(theirs);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'subject_foreign');
  // Not a token at all, and a token signed by someone else.
  for (const junk of ['not-a-token', 'a.b.c', '']) {
    r = await exchange(junk);
    assert.equal(r.status, 400, junk);
    assert.equal(r.json.error, 'invalid_request', junk);
  }
  const { privateKey } = await jose.generateKeyPair('ES256');
  const alien = await new jose.SignJWT({ ...decodeJwt(good).payload })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: decodeJwt(good).header.kid }).sign(privateKey);
  r = await exchange(alien);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(r.json.error_description.includes(alien), false);
  // Signed by us but without a tokens row (a restored backup, a row
  // removed by hand): only the row says a token is live, so it is refused.
  const orphan = await issue(parent, { scope: 'forum:search' });
  b.sql(`DELETE FROM tokens WHERE jti = '${decodeJwt(orphan).payload.jti}'`);
  r = await exchange(orphan);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'subject_unknown');
});

test('wrong token types and unsupported parameters are refused', async () => {
  const subject = await issue();
  const cases = [
    [{ subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' }, 'subject_token_type'],
    [{ subject_token_type: undefined }, 'subject_token_type'],
    [{ requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }, 'requested_token_type'],
    [{ actor_token: subject, actor_token_type: AT }, 'actor_token'],
    [{ subject_token: undefined }, 'subject_token_missing'],
  ];
  for (const [extra, reason] of cases) {
    const r = await exchange(subject, extra);
    assert.equal(r.status, 400, reason);
    assert.equal(r.json.error, 'invalid_request', reason);
    assert.equal(lastDenial().reason, reason);
  }
  // requested_token_type = access_token is accepted.
  assert.equal((await exchange(subject, { requested_token_type: AT })).status, 200);
  // Repeating a parameter is refused before anything else.
  const rep = await b.post('/oauth2/token', {
    grant_type: XG, subject_token: [subject, subject], subject_token_type: AT,
  }, { auth: parent });
  assert.equal(rep.status, 400);
  assert.equal(rep.json.error, 'invalid_request');
});

test('a disabled agent cannot exchange, and its tokens cannot be exchanged by delegates', async () => {
  const who = b.agent('soon-gone');
  b.cliOk('grant', 'add', 'soon-gone', 'forum:read', '--audience', AUD);
  const subject = await issue(who, { scope: 'forum:read' });
  const d = await exchange(subject, { actor: 'summariser' }, who);
  assert.equal(d.status, 200, d.text);
  b.cliOk('agent', 'disable', 'soon-gone');
  const r = await exchange(subject, {}, who);
  assert.equal(r.status, 401);
  assert.equal(r.json.error, 'invalid_client');
  const r2 = await exchange(d.json.access_token, { scope: 'forum:read' }, child);
  assert.equal(r2.status, 400);
  assert.equal(r2.json.error, 'invalid_request');
  assert.equal(lastDenial().reason, 'subject_agent_disabled');
});

test('a revoked grant stops exchange even while the subject token lives', async () => {
  const subject = await issue(parent, { scope: 'wiki:read', resource: WIKI });
  b.cliOk('grant', 'revoke', 'planner', 'wiki:read', '--audience', WIKI);
  const r = await exchange(subject);
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_scope');
  assert.equal(lastDenial().reason, 'not_granted');
});

test('every exchanged token has exactly one token.exchanged event, and every event its token', async () => {
  const [[bad]] = b.sql(`SELECT count(*) FROM tokens t WHERE t.subject_jti IS NOT NULL AND
    (SELECT count(*) FROM audit_events e WHERE e.type = 'token.exchanged' AND e.jti = t.jti
       AND e.details->>'subject_jti' = t.subject_jti) <> 1`);
  assert.equal(bad, '0');
  const [[orphans]] = b.sql(`SELECT count(*) FROM audit_events e WHERE e.type = 'token.exchanged'
    AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.jti = e.jti)`);
  assert.equal(orphans, '0');
  const [[n]] = b.sql('SELECT count(*) FROM tokens WHERE subject_jti IS NOT NULL');
  assert.ok(Number(n) >= 8, `earlier tests exchanged tokens (${n})`);
  // Exchanged tokens carry read scopes only.
  const [[writes]] = b.sql(`SELECT count(*) FROM tokens t WHERE t.subject_jti IS NOT NULL AND EXISTS (
    SELECT 1 FROM scopes s WHERE s.name = ANY(t.scopes) AND s.kind <> 'read')`);
  assert.equal(writes, '0');
});
