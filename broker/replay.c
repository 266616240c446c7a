/*
 * replay.c: see replay.h.
 *
 * One INSERT ... ON CONFLICT decides atomically, so two processes (or two
 * threads) racing with the same jti cannot both win: exactly one of them
 * gets the row back.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "replay.h"

/* Prune expired rows on one call in this many. */
#define REPLAY_PRUNE_EVERY	64

static const struct db_stmt remember = {
	"replay_remember",
	"INSERT INTO seen_jtis (realm, jti, expires_at) "
	"VALUES ($1, $2, to_timestamp($3::bigint)) "
	"ON CONFLICT (realm, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at "
	"WHERE seen_jtis.expires_at < now() RETURNING 1",
	3
};

/* Bounded, so one prune never holds locks for long. */
static const struct db_stmt prune = {
	"replay_prune",
	"DELETE FROM seen_jtis WHERE ctid IN (SELECT ctid FROM seen_jtis "
	"WHERE expires_at < now() LIMIT 1000)",
	0
};

static atomic_uint calls;

enum cs_err
replay_remember(const char *realm, const char *jti, int64_t expires_at)
{
	const char *params[3];
	struct db_result *res = NULL;
	char exp[24];
	enum cs_err rc;

	if (realm == NULL || jti == NULL || jti[0] == '\0' ||
	    strlen(jti) > REPLAY_JTI_MAX)
		return CS_ERR_INVALID_REQUEST;
	snprintf(exp, sizeof(exp), "%lld", (long long)expires_at);
	params[0] = realm;
	params[1] = jti;
	params[2] = exp;
	rc = db_exec(&remember, params, &res);
	if (rc != CS_OK) {
		rc = CS_ERR_UNAVAILABLE;
		goto out;
	}
	rc = db_nrows(res) == 1 ? CS_OK : CS_ERR_CONFLICT;
	/*
	 * Pruning is housekeeping: a failure leaves rows that the next
	 * prune removes and changes no answer, so it is only logged.
	 */
	if (atomic_fetch_add(&calls, 1) % REPLAY_PRUNE_EVERY == 0 &&
	    db_exec(&prune, NULL, NULL) != CS_OK)
		log_warn("replay: cannot prune expired jti rows");
out:
	db_result_free(res);
	return rc;
}
