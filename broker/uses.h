/*
 * uses.h: use reports from services that verify tokens offline.
 *
 * A service that checks tokens with the C verify library never calls the
 * broker per request, so the broker cannot see those uses. Such a service
 * reports them afterwards, in batches (POST /v1/uses, lib/report.c), and
 * each report becomes a token.used audit event with details.source
 * "report". Reports are a trace, not a gate: they never count against a
 * token's use limit (introspection alone enforces that, atomically with the
 * use) and a report for an unknown or foreign token is recorded as such
 * rather than refused. See docs/use-reports.md.
 */
#ifndef USES_H
#define USES_H

#include <stdint.h>
#include <jansson.h>

#include "countersign.h"
#include "services.h"

/* Entries in one report. */
#define USES_BATCH_MAX		500
/* How far the reported time of a use may lie in the past or future. */
#define USES_PAST_MAX		(24 * 3600)
#define USES_FUTURE_MAX		300

/*
 * uses_parse(body, now, out, err): check a parsed report body
 * {"uses": [{"jti", "at", "result"}, ...]} against the rules of
 * docs/use-reports.md: an object with exactly the member "uses", an array
 * of 1 to USES_BATCH_MAX objects, each with exactly "jti" (1-64 base64url
 * characters), "at" (an integer in [now - USES_PAST_MAX,
 * now + USES_FUTURE_MAX]) and "result" ("ok" or another name that
 * cs_verify_result_name gives). body is borrowed and not changed. On CS_OK
 * *out is a new array holding only those validated members, which the
 * caller releases with json_decref. On CS_ERR_INVALID_REQUEST *out is NULL
 * and err names the first offending entry by index (never its content);
 * CS_ERR_INTERNAL when out of memory.
 */
enum cs_err uses_parse(const json_t *body, int64_t now, json_t **out,
    struct cs_error *err);

/*
 * uses_record(svc, entries, recorded, err): write one token.used event per
 * entry of an array that uses_parse returned, all in one statement, so the
 * whole batch is recorded or nothing is. Each event has actor
 * "service:NAME", the entry's jti, subject "agent:NAME" when the jti is a
 * token the broker issued (else NULL), and details {result, source:
 * "report", reported_at, audience_ok (the token's audience is one of
 * svc's), known (the jti exists)}. Token use counters are not touched.
 * svc and entries are borrowed. On CS_OK *recorded is the number of events
 * written; CS_ERR_UNAVAILABLE when the database cannot record them.
 */
enum cs_err uses_record(const struct service *svc, const json_t *entries,
    int64_t *recorded, struct cs_error *err);

#endif
