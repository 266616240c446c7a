/*
 * audit.h: the append-only audit log (audit_events).
 *
 * Every issuance, refusal, authentication failure and administrative change
 * is written here. An event names an actor (who did it: "agent:NAME",
 * "admin:USER", "anonymous"), a subject (what it was done to), the token's
 * jti where there is one, and a JSON object of details. Details must never
 * hold a token, a secret or key material: callers pass identifiers and
 * reason codes only.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include <jansson.h>

#include "countersign.h"

/* Longest string stored for any audit field taken from input. */
#define AUDIT_FIELD_MAX	256

/*
 * audit_append(type, actor, subject, jti, details): insert one event in its
 * own statement (autocommit, or the caller's open transaction). subject,
 * jti and details may be NULL; details is borrowed. Returns CS_OK or the
 * db error; a caller that cannot record must not go on with the action.
 */
enum cs_err audit_append(const char *type, const char *actor,
    const char *subject, const char *jti, const json_t *details);

/*
 * audit_clip(s, buf, cap): copy at most cap-1 bytes of an untrusted string
 * into buf for use in an audit field, cutting at a UTF-8 boundary and
 * replacing control characters and invalid bytes with '?'. Returns buf.
 */
const char *audit_clip(const char *s, char *buf, size_t cap);

/* ---- the hash chain (docs/audit.md) ------------------------------------ */

#define AUDIT_HASH_LEN	32
/* Most links one audit_seal call adds. */
#define AUDIT_SEAL_BATCH	1000

/*
 * audit_event_hash(seq, time_us, type, actor, subject, jti, details, prev,
 * out): the chain hash of one event: SHA-256 over "countersign-audit-v1\0"
 * then each field as an 8-byte big-endian length and its bytes (a NULL
 * field as length 2^64-1 and no bytes), in this order: seq and time_us as
 * decimal text, type, actor, subject, jti, details (PostgreSQL's jsonb
 * text), then the 32-byte prev hash. Returns 0 or -1.
 */
int audit_event_hash(const char *seq, const char *time_us, const char *type,
    const char *actor, const char *subject, const char *jti,
    const char *details, const unsigned char prev[AUDIT_HASH_LEN],
    unsigned char out[AUDIT_HASH_LEN]);

/*
 * audit_gap_hash(seq, prev, out): the chain hash of a sequence number that
 * was drawn but never committed: SHA-256 over "countersign-audit-gap-v1\0",
 * the length-prefixed decimal seq and prev.
 */
int audit_gap_hash(const char *seq, const unsigned char prev[AUDIT_HASH_LEN],
    unsigned char out[AUDIT_HASH_LEN]);

/*
 * audit_seal(grace, sealed): extend the chain over committed events in seq
 * order, at most one sealer at a time across all brokers (an advisory
 * lock; a busy lock returns CS_OK with nothing done). A missing seq is
 * sealed as a gap only once the event after it is older than grace
 * seconds, longer than any of our transactions can hold a drawn number.
 * *sealed (may be NULL) receives how many links were added.
 */
enum cs_err audit_seal(int64_t grace, int *sealed);

/* What audit_verify found. */
struct audit_report {
	int ok;			/* 1 if the sealed chain verified */
	int64_t checked;	/* chain links checked */
	int64_t head_seq;	/* last sealed seq, 0 if none */
	unsigned char head_hash[AUDIT_HASH_LEN];
	int64_t tail_count;	/* events after the head, not sealed yet */
	int64_t tail_age;	/* seconds since the oldest of them, or 0 */
	int64_t bad_seq;	/* first bad seq when !ok */
	char problem[256];	/* what is wrong with it */
};

/*
 * audit_verify(from, report): recompute the chain from seq from (1 for the
 * whole log; later starts trust the link before it) and report the first
 * edited, deleted, reordered or inserted event, a broken link or a missing
 * link. Streams in pages, so memory stays flat for any log size. Returns
 * CS_OK when the check ran (report->ok says how it went).
 */
enum cs_err audit_verify(int64_t from, struct audit_report *report);

/*
 * audit_head(seq, hash): the last sealed link (seq 0 and zero hash if the
 * chain is empty).
 */
enum cs_err audit_head(int64_t *seq, unsigned char hash[AUDIT_HASH_LEN]);

/*
 * audit_ensure_partitions(months, created): create the monthly partitions
 * of audit_events from this month to months ahead (the sealer thread does
 * this hourly). *created (may be NULL) gets how many were new.
 */
enum cs_err audit_ensure_partitions(int months, int *created);

/* Which events audit_page returns; 0 / NULL members do not filter. */
struct audit_filter {
	int64_t since;		/* epoch seconds, inclusive */
	int64_t until;		/* epoch seconds, exclusive */
	const char *type;
	const char *agent;	/* actor or subject is agent:NAME */
	const char *jti;
	/*
	 * 1: only events the chain already holds. Sealed events are a prefix
	 * of the log in seq order with no holes, so a reader paging by seq
	 * over them never passes an event that commits later (see tail -f).
	 */
	int sealed;
};

/*
 * audit_page(f, after, limit, events, last): up to limit (1-1000) events
 * with seq > after matching f, in seq order, as a new JSON array of
 * {seq, time, type, actor, subject, jti, details, hash} (the documented
 * export format). *last receives the seq of the last one (after if none).
 * Callers page by passing *last back as after.
 */
enum cs_err audit_page(const struct audit_filter *f, int64_t after, int limit,
    json_t **events, int64_t *last);

/* audit_start_sealer(grace) / audit_stop_sealer(): a sealing thread. */
int audit_start_sealer(int64_t grace);
void audit_stop_sealer(void);

#endif
