/*
 * batch.h: group commit for the read path's token inserts and for the uses
 * introspection records.
 *
 * Worker threads hand their ready token (its row and audit event, as the
 * parameters of one insert) to a committer thread and wait. A committer
 * takes whatever is queued (up to BATCH_MAX, waiting at most the window
 * for more), inserts every token row and audit event in one statement and
 * one commit, with the same in-database re-checks as a single insert, and
 * only then wakes the waiters, each with its own outcome. If the statement
 * or the commit fails, every request in the batch fails and no token from
 * it is released: the fail-closed promise holds per batch.
 */
#ifndef BATCH_H
#define BATCH_H

#include <stdint.h>

#include "countersign.h"

#define BATCH_MAX	128

/* One token to insert. Every pointer is borrowed until batch_insert returns. */
struct batch_token {
	int64_t agent_id;
	const char *jti;
	const char *scopes;	/* space-separated */
	const char *audience;
	const char *client_id;
	const char *kid;
	int64_t iat, exp;
	const char *agent_name;
	const char *details;	/* audit details, JSON text */
	int64_t max_uses;	/* 0: unlimited */
	int read_only;
	int bound;		/* carries cnf: re-checked against require_dpop */
	const char *cred;	/* struct client's cred: re-checked, '' for none */
};

/*
 * batch_start(committers, window_us): start the committer threads.
 * Returns 0 or -1.
 */
int batch_start(int committers, int window_us);

/* batch_stop(): fail what is queued, stop the threads. */
void batch_stop(void);

/* batch_running(): 1 between batch_start and batch_stop. */
int batch_running(void);

/*
 * batch_insert(t): insert t in the next batch and wait for its commit.
 * CS_OK: committed. CS_ERR_CONFLICT: the re-check refused it (nothing
 * written for it). CS_ERR_UNAVAILABLE: the batch failed or the batcher is
 * stopping; nothing of the batch was committed.
 */
enum cs_err batch_insert(const struct batch_token *t);

/* One use to record (introspection); the inputs are borrowed. */
struct batch_use {
	const char *jti;
	const char *service;	/* the introspecting service's name */
	const char *agent;	/* the token's sub */
	const char *audience;
	const char *cred;	/* the service's secret HMAC in hex, or "" */
	char result[32];	/* out: "active", "revoked", "used_up", ... */
	char use[24];		/* out: the use count after this use, or "" */
	char max_uses[24];	/* out: the token's limit, or "" */
};

/*
 * batch_record_use(u): record u in the next batch of uses (the same atomic
 * rules and token.used event as a single use) and wait for its commit.
 * CS_OK with u's outputs set; CS_ERR_UNAVAILABLE if the batch failed or
 * the batcher is stopping (nothing of the batch was committed).
 */
enum cs_err batch_record_use(struct batch_use *u);

#endif
