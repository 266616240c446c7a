/*
 * countersign/report.h: report token uses to the broker's audit log from a
 * service that verifies tokens offline (countersign/verify.h).
 *
 * Offline verification is invisible to the broker. A reporter queues one
 * small record per use (jti, time, verification result) in memory and a
 * background thread sends them in batches to POST /v1/uses, authenticated
 * as the service, where each becomes a token.used audit event:
 *
 *     struct cs_reporter *rep = cs_reporter_new("https://auth.example.com",
 *         "forum", secret, 100, 1000);
 *     ...
 *     enum cs_verify_result r = cs_verify(v, token, &c);
 *     if (r == CS_VERIFY_OK)
 *             cs_report_use(rep, c.jti, r);
 *     ...
 *     cs_reporter_free(rep);
 *
 * Reports are best-effort and after the fact: a full queue drops them, an
 * unreachable broker fails them after a few retries, and they never count
 * against a token's use limit. A service that must not accept a revoked or
 * used-up token calls POST /oauth2/introspect instead (docs/use-reports.md).
 *
 * Link with -lcountersign-verify -lcurl -lcrypto -ljansson -lpthread.
 */
#ifndef COUNTERSIGN_REPORT_H
#define COUNTERSIGN_REPORT_H

#include <stdint.h>

#include "countersign/verify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Uses a reporter holds at most; more are dropped, never waited for. */
#define CS_REPORT_QUEUE_MAX	10000
/* Largest batch the broker accepts in one request. */
#define CS_REPORT_BATCH_MAX	500

struct cs_reporter;

/*
 * cs_reporter_new(broker_url, service_id, service_secret, max_batch,
 * flush_ms): a reporter that sends uses to broker_url + "/v1/uses"
 * (broker_url is the issuer, "http://" or "https://", trailing '/'
 * ignored) with HTTP Basic credentials service_id / service_secret (those
 * of `countersign service add`). A batch leaves when max_batch uses are
 * waiting or the oldest has waited flush_ms milliseconds, whichever comes
 * first; max_batch is clamped to 1..CS_REPORT_BATCH_MAX and flush_ms to
 * 10..60000 (0 or less picks 100 and 1000).
 *
 * The three strings are copied; the caller may wipe its secret at once.
 * The reporter's copy lives only inside the reporter and is wiped by
 * cs_reporter_free. The whole queue is allocated here (about 900 KB), so
 * queuing a use never allocates. Starts one background thread (with every signal
 * blocked) and calls curl_global_init, which with libcurl older than 7.84
 * is not thread-safe: there, create reporters before other threads use
 * libcurl. Returns NULL on a bad argument or when memory, libcurl or the
 * thread cannot be had.
 */
struct cs_reporter *cs_reporter_new(const char *broker_url,
    const char *service_id, const char *service_secret, int max_batch,
    int flush_ms);

/*
 * cs_report_use(r, jti, result): queue one use of the token jti, seen now
 * (wall clock), with the result of cs_verify. jti is copied; it must be
 * 1-64 base64url characters (a Countersign jti). Never does I/O and never
 * waits for the network: it only takes the reporter's lock to copy the
 * entry. Safe to call from any number of threads at once.
 *
 * Returns 0 when queued, or -1 and counts a drop when the queue already
 * holds CS_REPORT_QUEUE_MAX uses, when r is stopping, or when jti or result
 * is invalid (a report the broker would refuse). -1 without counting only
 * when r is NULL.
 */
int cs_report_use(struct cs_reporter *r, const char *jti,
    enum cs_verify_result result);

/*
 * cs_reporter_flush(r): send now what is queued and wait until every use
 * queued before this call was sent or counted as failed. Uses queued by
 * other threads meanwhile may go in the same batches. With the broker
 * unreachable this takes up to about 22 seconds per batch (four attempts
 * of at most 5 s, with backoff in between). NULL-safe. Safe to call from
 * any thread, but not concurrently with cs_reporter_free.
 */
void cs_reporter_flush(struct cs_reporter *r);

/*
 * cs_reporter_stats(r, sent, dropped, failed): counters since
 * cs_reporter_new: uses the broker recorded, uses refused by
 * cs_report_use, and uses given up on (retries exhausted, the broker
 * refused the batch, older than the broker accepts by the time they could
 * be sent, or still queued when cs_reporter_free's bound ran out). Each pointer may be NULL. Safe from any thread; the three values
 * are read one by one, so under load they need not be from one instant.
 * After cs_reporter_flush returns they include every use it waited for. A
 * NULL r gives zeros.
 */
void cs_reporter_stats(const struct cs_reporter *r, uint64_t *sent,
    uint64_t *dropped, uint64_t *failed);

/*
 * cs_reporter_free(r): stop accepting uses, try to send what is queued for
 * at most 5 seconds (requests are cut short to fit), count the rest as
 * failed, stop the thread, wipe the secret and free everything. No other
 * call on r may run concurrently or follow. NULL-safe.
 */
void cs_reporter_free(struct cs_reporter *r);

#ifdef __cplusplus
}
#endif

#endif
