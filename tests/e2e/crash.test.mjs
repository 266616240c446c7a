// End-to-end fault: the broker is killed with SIGKILL again and again
// under load and restarted. Afterwards every token any client received has
// exactly one committed token.issued audit event (no token leaves before
// its audit row commits), and the audit chain verifies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Broker, decodeJwt, sleep } from './lib.mjs';

const AUD = 'https://forum.example';

test('kill -9 under load: every received token has its audit row', async () => {
  const b = await Broker.start({ env: { COUNTERSIGN_AUDIT_GAP_GRACE: '1' } });
  try {
    b.cliOk('scope', 'add', 'forum:read', '--kind', 'read');
    const agent = b.agent('crashy');
    b.cliOk('grant', 'add', 'crashy', 'forum:read', '--audience', AUD);
    const received = [];
    let errors = 0;
    let running = true;
    const client = async () => {
      while (running) {
        try {
          const r = await b.post('/oauth2/token', { grant_type: 'client_credentials', scope: 'forum:read', resource: AUD }, { auth: agent });
          if (r.status === 200) received.push(decodeJwt(r.json.access_token).payload.jti);
          else if (r.status !== 503) assert.fail(`unexpected ${r.status}: ${r.text}`);
        } catch {
          errors++;	// connection refused or reset while the broker is down
          await sleep(20);
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    for (let round = 0; round < 5; round++) {
      await sleep(700);
      await b.kill();
      b.killed = false;
      await b.spawn();
    }
    await sleep(500);
    running = false;
    await Promise.all(clients);
    assert.ok(received.length > 100, `only ${received.length} tokens received`);
    assert.ok(errors > 0, 'the kills interrupted some requests');
    // Every received jti: exactly one token.issued event and one token row.
    const count = (rows) => rows.reduce((m, [j]) => m.set(j, (m.get(j) || 0) + 1), new Map());
    const events = count(b.sql("SELECT jti FROM audit_events WHERE type = 'token.issued'"));
    const tokens = count(b.sql('SELECT jti FROM tokens'));
    const missing = received.filter((j) => events.get(j) !== 1 || tokens.get(j) !== 1);
    assert.deepEqual(missing, [], `${missing.length} received tokens without exactly one audit row`);
    assert.equal(new Set(received).size, received.length);
    // No audit row refers to a token that was rolled back.
    const [[orphans]] = b.sql(`SELECT count(*) FROM audit_events e WHERE e.type = 'token.issued'
        AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.jti = e.jti)`);
    assert.equal(orphans, '0');
    // The chain is whole; gaps left by killed transactions are explained.
    await sleep(1500);
    const v = b.cli('audit', 'verify', '--json');
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(v.json.ok, true);
  } finally {
    await b.stop();
  }
});
