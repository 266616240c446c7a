/*
 * audit.c: see audit.h.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "audit.h"
#include "db.h"
#include "util.h"

static const struct db_stmt insert_event = {
	"audit_insert",
	"INSERT INTO audit_events (type, actor, subject, jti, details) "
	"VALUES ($1, $2, $3, $4, $5::jsonb)",
	5
};

enum cs_err
audit_append(const char *type, const char *actor, const char *subject,
    const char *jti, const json_t *details)
{
	const char *params[5];
	char *json = NULL;
	enum cs_err rc;

	json = details != NULL ? json_dumps(details, JSON_COMPACT) : NULL;
	if (details != NULL && json == NULL)
		return CS_ERR_INTERNAL;
	params[0] = type;
	params[1] = actor;
	params[2] = subject;
	params[3] = jti;
	params[4] = json != NULL ? json : "{}";
	rc = db_exec(&insert_event, params, NULL);
	free(json);
	return rc;
}

const char *
audit_clip(const char *s, char *buf, size_t cap)
{
	size_t i = 0, o = 0;
	const unsigned char *p = (const unsigned char *)s;

	if (cap == 0)
		return buf;
	while (p != NULL && p[i] != '\0' && o + 1 < cap) {
		size_t len = 1;

		if (p[i] >= 0x80) {
			len = (p[i] & 0xe0) == 0xc0 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3 :
			    (p[i] & 0xf8) == 0xf0 ? 4 : 0;
			if (len == 0 || !util_valid_utf8((const char *)p + i,
			    strnlen((const char *)p + i, len)) ||
			    strnlen((const char *)p + i, len) < len) {
				buf[o++] = '?';
				i++;
				continue;
			}
			if (o + len >= cap)
				break;
			memcpy(buf + o, p + i, len);
			o += len;
			i += len;
			continue;
		}
		buf[o++] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
		i++;
	}
	buf[o] = '\0';
	return buf;
}

/* ---- the hash chain ------------------------------------------------------ */

/* One advisory lock key for the sealer ("cs-seal"). */
#define SEAL_LOCK	"7166434502651475"
#define SEAL_BATCH	AUDIT_SEAL_BATCH
#define VERIFY_PAGE	2000

static const struct db_stmt seal_lock = {
	"audit_seal_lock",
	"SELECT pg_try_advisory_xact_lock(" SEAL_LOCK ")",
	0
};

static const struct db_stmt chain_head = {
	"audit_chain_head",
	"SELECT seq, encode(hash, 'hex') FROM audit_chain "
	"ORDER BY seq DESC LIMIT 1",
	0
};

#define EVENT_FIELDS \
	"e.seq::text, (extract(epoch FROM e.time) * 1000000)::bigint::text, " \
	"e.type, e.actor, e.subject, e.jti, e.details::text"

static const struct db_stmt seal_candidates = {
	"audit_seal_candidates",
	"SELECT " EVENT_FIELDS ", clock_timestamp() - e.time > "
	"make_interval(secs => $2::int) FROM audit_events e "
	"WHERE e.seq > $1::bigint ORDER BY e.seq LIMIT 1000",
	2
};

static const struct db_stmt seal_insert = {
	"audit_seal_insert",
	"INSERT INTO audit_chain (seq, kind, prev_hash, hash) "
	"SELECT s, k, decode(p, 'hex'), decode(h, 'hex') "
	"FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) "
	"AS u(s, k, p, h)",
	4
};

static const struct db_stmt verify_page = {
	"audit_verify_page",
	"SELECT c.seq::text, c.kind, encode(c.prev_hash, 'hex'), "
	"encode(c.hash, 'hex'), e.seq IS NOT NULL, " EVENT_FIELDS " "
	"FROM audit_chain c LEFT JOIN audit_events e ON e.seq = c.seq "
	"WHERE c.seq >= $1::bigint ORDER BY c.seq LIMIT 2000",
	1
};

static const struct db_stmt verify_prev = {
	"audit_verify_prev",
	"SELECT encode(hash, 'hex') FROM audit_chain WHERE seq = $1::bigint",
	1
};

static const struct db_stmt verify_unchained = {
	"audit_verify_unchained",
	"SELECT e.seq FROM audit_events e LEFT JOIN audit_chain c "
	"ON c.seq = e.seq WHERE c.seq IS NULL AND e.seq >= $1::bigint "
	"AND e.seq <= $2::bigint ORDER BY e.seq LIMIT 1",
	2
};

static const struct db_stmt verify_tail = {
	"audit_verify_tail",
	"SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - "
	"min(time))::bigint, 0) FROM audit_events WHERE seq > $1::bigint",
	1
};

static void
put_field(EVP_MD_CTX *ctx, const char *s)
{
	unsigned char len[8];
	uint64_t n = s != NULL ? (uint64_t)strlen(s) : UINT64_MAX;
	int i;

	for (i = 7; i >= 0; i--) {
		len[i] = (unsigned char)(n & 0xff);
		n >>= 8;
	}
	EVP_DigestUpdate(ctx, len, sizeof(len));
	if (s != NULL)
		EVP_DigestUpdate(ctx, s, strlen(s));
}

int
audit_event_hash(const char *seq, const char *time_us, const char *type,
    const char *actor, const char *subject, const char *jti,
    const char *details, const unsigned char prev[AUDIT_HASH_LEN],
    unsigned char out[AUDIT_HASH_LEN])
{
	static const char tag[] = "countersign-audit-v1";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	int rc = -1;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	EVP_DigestUpdate(ctx, tag, sizeof(tag));	/* with its NUL */
	put_field(ctx, seq);
	put_field(ctx, time_us);
	put_field(ctx, type);
	put_field(ctx, actor);
	put_field(ctx, subject);
	put_field(ctx, jti);
	put_field(ctx, details);
	EVP_DigestUpdate(ctx, prev, AUDIT_HASH_LEN);
	if (EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == AUDIT_HASH_LEN)
		rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

int
audit_gap_hash(const char *seq, const unsigned char prev[AUDIT_HASH_LEN],
    unsigned char out[AUDIT_HASH_LEN])
{
	static const char tag[] = "countersign-audit-gap-v1";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	int rc = -1;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	EVP_DigestUpdate(ctx, tag, sizeof(tag));
	put_field(ctx, seq);
	EVP_DigestUpdate(ctx, prev, AUDIT_HASH_LEN);
	if (EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == AUDIT_HASH_LEN)
		rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

static int
from_hex(const char *s, unsigned char *out, size_t n)
{
	size_t i;

	if (strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* A growing "{a,b,c}" array literal of plain tokens (digits, hex, words). */
struct lit {
	char *buf;
	size_t len, cap;
};

static int
lit_add(struct lit *l, const char *item)
{
	size_t n = strlen(item);

	if (l->len + n + 3 > l->cap) {
		size_t cap = l->cap == 0 ? 4096 : l->cap * 2;
		char *nb;

		while (cap < l->len + n + 3)
			cap *= 2;
		nb = realloc(l->buf, cap);
		if (nb == NULL)
			return -1;
		l->buf = nb;
		l->cap = cap;
	}
	l->buf[l->len] = l->len == 0 ? '{' : ',';
	l->len++;
	memcpy(l->buf + l->len, item, n);
	l->len += n;
	l->buf[l->len] = '\0';
	return 0;
}

static const char *
lit_done(struct lit *l)
{
	if (l->buf == NULL)
		return "{}";
	l->buf[l->len] = '}';
	l->buf[l->len + 1] = '\0';
	return l->buf;
}

enum cs_err
audit_head(int64_t *seq, unsigned char hash[AUDIT_HASH_LEN])
{
	struct db_result *res = NULL;
	enum cs_err rc;

	*seq = 0;
	memset(hash, 0, AUDIT_HASH_LEN);
	rc = db_exec(&chain_head, NULL, &res);
	if (rc == CS_OK && db_nrows(res) == 1 &&
	    (util_parse_int64(db_value(res, 0, 0), 1, INT64_MAX, seq) != 0 ||
	    from_hex(db_value(res, 0, 1), hash, AUDIT_HASH_LEN) != 0))
		rc = CS_ERR_INTERNAL;
	db_result_free(res);
	return rc;
}

enum cs_err
audit_seal(int64_t grace, int *sealed)
{
	struct db_result *res = NULL, *lock = NULL;
	struct lit seqs = { 0 }, kinds = { 0 }, prevs = { 0 }, hashes = { 0 };
	unsigned char prev[AUDIT_HASH_LEN], next[AUDIT_HASH_LEN];
	char headbuf[24], gracebuf[24], hex[2 * AUDIT_HASH_LEN + 1];
	const char *params[4];
	int64_t head = 0, expected;
	int in_tx = 0, n = 0, i;
	enum cs_err rc;

	if (sealed != NULL)
		*sealed = 0;
	if ((rc = db_begin()) != CS_OK)
		goto out;
	in_tx = 1;
	if ((rc = db_exec(&seal_lock, NULL, &lock)) != CS_OK)
		goto out;
	if (strcmp(db_value(lock, 0, 0), "t") != 0)
		goto out;	/* another sealer is at work */
	if ((rc = audit_head(&head, prev)) != CS_OK)
		goto out;
	snprintf(headbuf, sizeof(headbuf), "%lld", (long long)head);
	snprintf(gracebuf, sizeof(gracebuf), "%lld", (long long)grace);
	params[0] = headbuf;
	params[1] = gracebuf;
	if ((rc = db_exec(&seal_candidates, params, &res)) != CS_OK)
		goto out;
	expected = head + 1;
	for (i = 0; i < db_nrows(res); i++) {
		int64_t seq = 0;
		int stale = strcmp(db_value(res, i, 7), "t") == 0;

		if (util_parse_int64(db_value(res, i, 0), 1, INT64_MAX, &seq) != 0) {
			rc = CS_ERR_INTERNAL;
			goto out;
		}
		/*
		 * Numbers before this event that are still missing: if this
		 * event is older than any transaction can be, they were rolled
		 * back and are sealed as gaps; otherwise wait for them.
		 */
		if (seq > expected && !stale)
			break;
		for (; expected < seq; expected++) {
			char gs[24];

			snprintf(gs, sizeof(gs), "%lld", (long long)expected);
			if (audit_gap_hash(gs, prev, next) != 0) {
				rc = CS_ERR_INTERNAL;
				goto out;
			}
			util_hex(prev, AUDIT_HASH_LEN, hex);
			if (lit_add(&seqs, gs) || lit_add(&kinds, "gap") ||
			    lit_add(&prevs, hex))
				goto nomem;
			util_hex(next, AUDIT_HASH_LEN, hex);
			if (lit_add(&hashes, hex))
				goto nomem;
			memcpy(prev, next, AUDIT_HASH_LEN);
			n++;
		}
		if (audit_event_hash(db_value(res, i, 0), db_value(res, i, 1),
		    db_value(res, i, 2), db_value(res, i, 3),
		    db_isnull(res, i, 4) ? NULL : db_value(res, i, 4),
		    db_isnull(res, i, 5) ? NULL : db_value(res, i, 5),
		    db_value(res, i, 6), prev, next) != 0) {
			rc = CS_ERR_INTERNAL;
			goto out;
		}
		util_hex(prev, AUDIT_HASH_LEN, hex);
		if (lit_add(&seqs, db_value(res, i, 0)) || lit_add(&kinds, "event") ||
		    lit_add(&prevs, hex))
			goto nomem;
		util_hex(next, AUDIT_HASH_LEN, hex);
		if (lit_add(&hashes, hex))
			goto nomem;
		memcpy(prev, next, AUDIT_HASH_LEN);
		expected = seq + 1;
		n++;
	}
	if (n > 0) {
		params[0] = lit_done(&seqs);
		params[1] = lit_done(&kinds);
		params[2] = lit_done(&prevs);
		params[3] = lit_done(&hashes);
		if ((rc = db_exec(&seal_insert, params, NULL)) != CS_OK)
			goto out;
	}
	if ((rc = db_commit()) != CS_OK)
		goto out;
	in_tx = 0;
	if (sealed != NULL)
		*sealed = n;
	goto out;
nomem:
	rc = CS_ERR_INTERNAL;
out:
	if (in_tx)
		db_rollback();
	free(seqs.buf);
	free(kinds.buf);
	free(prevs.buf);
	free(hashes.buf);
	db_result_free(lock);
	db_result_free(res);
	return rc;
}

static void
report_bad(struct audit_report *r, int64_t seq, const char *what)
{
	r->ok = 0;
	r->bad_seq = seq;
	snprintf(r->problem, sizeof(r->problem), "%s", what);
}

enum cs_err
audit_verify(int64_t from, struct audit_report *r)
{
	unsigned char prev[AUDIT_HASH_LEN], got[AUDIT_HASH_LEN];
	unsigned char stored[AUDIT_HASH_LEN], link[AUDIT_HASH_LEN];
	struct db_result *res = NULL;
	char buf[24], buf2[24];
	const char *params[2];
	int64_t expected, head = 0;
	enum cs_err rc;
	int i, rows;

	memset(r, 0, sizeof(*r));
	r->ok = 1;
	memset(prev, 0, sizeof(prev));
	if (from < 1)
		from = 1;
	if (from > 1) {
		/* Start from the link before: trusted, not re-derived. */
		snprintf(buf, sizeof(buf), "%lld", (long long)(from - 1));
		params[0] = buf;
		if ((rc = db_exec(&verify_prev, params, &res)) != CS_OK)
			return rc;
		if (db_nrows(res) != 1 ||
		    from_hex(db_value(res, 0, 0), prev, AUDIT_HASH_LEN) != 0) {
			db_result_free(res);
			report_bad(r, from - 1, "no chain link before --from");
			return CS_OK;
		}
		db_result_free(res);
		res = NULL;
	}
	expected = from;
	for (;;) {
		snprintf(buf, sizeof(buf), "%lld", (long long)expected);
		params[0] = buf;
		if ((rc = db_exec(&verify_page, params, &res)) != CS_OK)
			return rc;
		rows = db_nrows(res);
		for (i = 0; i < rows; i++) {
			int64_t seq = 0;
			int exists = strcmp(db_value(res, i, 4), "t") == 0;
			const char *kind = db_value(res, i, 1);

			if (util_parse_int64(db_value(res, i, 0), 1, INT64_MAX,
			    &seq) != 0 ||
			    from_hex(db_value(res, i, 2), link, AUDIT_HASH_LEN) != 0 ||
			    from_hex(db_value(res, i, 3), stored, AUDIT_HASH_LEN) != 0) {
				db_result_free(res);
				return CS_ERR_INTERNAL;
			}
			if (seq != expected) {
				report_bad(r, expected, "chain link missing (deleted "
				    "from audit_chain)");
				goto done;
			}
			if (CRYPTO_memcmp(link, prev, AUDIT_HASH_LEN) != 0) {
				report_bad(r, seq, "chain link does not follow the "
				    "previous one (chain rewritten)");
				goto done;
			}
			if (strcmp(kind, "gap") == 0) {
				if (exists) {
					report_bad(r, seq, "event inserted where the "
					    "chain recorded a gap");
					goto done;
				}
				audit_gap_hash(db_value(res, i, 0), prev, got);
			} else {
				if (!exists) {
					report_bad(r, seq, "event deleted");
					goto done;
				}
				audit_event_hash(db_value(res, i, 5),
				    db_value(res, i, 6), db_value(res, i, 7),
				    db_value(res, i, 8),
				    db_isnull(res, i, 9) ? NULL : db_value(res, i, 9),
				    db_isnull(res, i, 10) ? NULL : db_value(res, i, 10),
				    db_value(res, i, 11), prev, got);
			}
			if (CRYPTO_memcmp(got, stored, AUDIT_HASH_LEN) != 0) {
				report_bad(r, seq, strcmp(kind, "gap") == 0 ?
				    "gap link altered" : "event altered or reordered "
				    "(its hash does not match)");
				goto done;
			}
			memcpy(prev, got, AUDIT_HASH_LEN);
			head = seq;
			expected = seq + 1;
			r->checked++;
		}
		db_result_free(res);
		res = NULL;
		if (rows < VERIFY_PAGE)
			break;
	}
	r->head_seq = head > 0 ? head : from - 1;
	memcpy(r->head_hash, prev, AUDIT_HASH_LEN);
	/* Every event up to the head must be in the chain. */
	snprintf(buf, sizeof(buf), "%lld", (long long)from);
	snprintf(buf2, sizeof(buf2), "%lld", (long long)r->head_seq);
	params[0] = buf;
	params[1] = buf2;
	if ((rc = db_exec(&verify_unchained, params, &res)) != CS_OK)
		return rc;
	if (db_nrows(res) > 0) {
		int64_t seq = 0;

		util_parse_int64(db_value(res, 0, 0), 1, INT64_MAX, &seq);
		report_bad(r, seq, "event inserted behind the sealed head");
		goto done;
	}
	db_result_free(res);
	res = NULL;
	params[0] = buf2;
	if ((rc = db_exec(&verify_tail, params, &res)) != CS_OK)
		return rc;
	util_parse_int64(db_value(res, 0, 0), 0, INT64_MAX, &r->tail_count);
	util_parse_int64(db_value(res, 0, 1), INT64_MIN, INT64_MAX, &r->tail_age);
done:
	db_result_free(res);
	return CS_OK;
}

static const struct db_stmt ensure_partitions = {
	"audit_ensure_partitions",
	"SELECT audit_ensure_partitions($1::int)",
	1
};

enum cs_err
audit_ensure_partitions(int months, int *created)
{
	struct db_result *res = NULL;
	const char *params[1];
	char buf[16];
	int64_t n = 0;
	enum cs_err rc;

	snprintf(buf, sizeof(buf), "%d", months);
	params[0] = buf;
	rc = db_exec(&ensure_partitions, params, &res);
	if (rc == CS_OK)
		util_parse_int64(db_value(res, 0, 0), 0, 1000, &n);
	if (created != NULL)
		*created = (int)n;
	db_result_free(res);
	return rc;
}

static const struct db_stmt page = {
	"audit_page",
	"SELECT e.seq::text, to_char(e.time AT TIME ZONE 'UTC', "
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), e.type, e.actor, e.subject, "
	"e.jti, e.details::text, encode(c.hash, 'hex') FROM audit_events e "
	"LEFT JOIN audit_chain c ON c.seq = e.seq WHERE e.seq > $1::bigint "
	"AND ($2::bigint IS NULL OR e.time >= to_timestamp($2::bigint)) "
	"AND ($3::bigint IS NULL OR e.time < to_timestamp($3::bigint)) "
	"AND ($4::text IS NULL OR e.type = $4) "
	"AND ($5::text IS NULL OR e.actor = 'agent:' || $5 "
	"OR e.subject = 'agent:' || $5 OR e.subject IN (SELECT 'approval:' || "
	"r.id FROM approval_requests r JOIN agents a ON a.id = r.agent_id "
	"WHERE a.name = $5) OR (e.subject = $5 AND "
	"e.type = 'client.auth_failed')) AND ($6::text IS NULL OR e.jti = $6) "
	"AND (NOT $8::bool OR c.seq IS NOT NULL) "
	"ORDER BY e.seq LIMIT $7::int",
	8
};

enum cs_err
audit_page(const struct audit_filter *f, int64_t after, int limit,
    json_t **events, int64_t *last)
{
	struct db_result *res = NULL;
	char afterbuf[24], sincebuf[24], untilbuf[24], limitbuf[16];
	const char *params[8];
	enum cs_err rc;
	int i;

	*events = NULL;
	*last = after;
	if (limit < 1 || limit > 1000)
		return CS_ERR_INVALID_REQUEST;
	snprintf(afterbuf, sizeof(afterbuf), "%lld", (long long)after);
	snprintf(sincebuf, sizeof(sincebuf), "%lld", (long long)f->since);
	snprintf(untilbuf, sizeof(untilbuf), "%lld", (long long)f->until);
	snprintf(limitbuf, sizeof(limitbuf), "%d", limit);
	params[0] = afterbuf;
	params[1] = f->since != 0 ? sincebuf : NULL;
	params[2] = f->until != 0 ? untilbuf : NULL;
	params[3] = f->type;
	params[4] = f->agent;
	params[5] = f->jti;
	params[6] = limitbuf;
	params[7] = f->sealed ? "t" : "f";
	rc = db_exec(&page, params, &res);
	if (rc != CS_OK)
		return rc;
	*events = json_array();
	for (i = 0; *events != NULL && i < db_nrows(res); i++) {
		json_t *details = json_loads(db_value(res, i, 6), 0, NULL);
		int64_t seq = 0;

		util_parse_int64(db_value(res, i, 0), 1, INT64_MAX, &seq);
		if (json_array_append_new(*events, json_pack(
		    "{s:I, s:s, s:s, s:s, s:s?, s:s?, s:o, s:s?}", "seq",
		    (json_int_t)seq, "time", db_value(res, i, 1), "type",
		    db_value(res, i, 2), "actor", db_value(res, i, 3), "subject",
		    db_isnull(res, i, 4) ? NULL : db_value(res, i, 4), "jti",
		    db_isnull(res, i, 5) ? NULL : db_value(res, i, 5), "details",
		    details != NULL ? details : json_object(), "hash",
		    db_isnull(res, i, 7) ? NULL : db_value(res, i, 7))) != 0) {
			rc = CS_ERR_INTERNAL;
			break;
		}
		*last = seq;
	}
	if (*events == NULL)
		rc = CS_ERR_INTERNAL;
	if (rc != CS_OK) {
		json_decref(*events);
		*events = NULL;
	}
	db_result_free(res);
	return rc;
}

static pthread_t sealer;
static int sealer_running;
static int sealer_stop;
static pthread_mutex_t sealer_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sealer_cv = PTHREAD_COND_INITIALIZER;
static int64_t sealer_grace;

static void *
seal_loop(void *arg)
{
	int64_t partitions_due = 0;

	(void)arg;
	db_thread_dedicated();
	pthread_mutex_lock(&sealer_mu);
	while (!sealer_stop) {
		struct timespec ts;
		int sealed = 0;

		pthread_mutex_unlock(&sealer_mu);
		/*
		 * Keep monthly partitions two months ahead; hourly is plenty,
		 * and a failure only means events land in the default partition.
		 */
		if (util_monotonic_ms() >= partitions_due &&
		    audit_ensure_partitions(2, NULL) == CS_OK)
			partitions_due = util_monotonic_ms() + 3600 * 1000;
		/* Catch up in batches, then rest a little. */
		do {
			if (audit_seal(sealer_grace, &sealed) != CS_OK)
				break;
		} while (sealed >= SEAL_BATCH);
		pthread_mutex_lock(&sealer_mu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!sealer_stop)
			pthread_cond_timedwait(&sealer_cv, &sealer_mu, &ts);
	}
	pthread_mutex_unlock(&sealer_mu);
	db_shutdown();
	return NULL;
}

int
audit_start_sealer(int64_t grace)
{
	sealer_grace = grace;
	if (pthread_create(&sealer, NULL, seal_loop, NULL) != 0)
		return -1;
	sealer_running = 1;
	return 0;
}

void
audit_stop_sealer(void)
{
	if (!sealer_running)
		return;
	pthread_mutex_lock(&sealer_mu);
	sealer_stop = 1;
	pthread_cond_signal(&sealer_cv);
	pthread_mutex_unlock(&sealer_mu);
	pthread_join(sealer, NULL);
	sealer_running = 0;
}
