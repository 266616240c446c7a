/*
 * db.c: see db.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

struct db_result {
	PGresult *res;
};

/* Per-thread connection state, freed by the thread-exit destructor. */
struct db_conn {
	PGconn *conn;
	int doomed;		/* the server said it is closing this connection */
	const struct db_stmt *prepared[DB_MAX_STMTS];
	size_t nprepared;
};

static char *conninfo;
static int connect_timeout = 3;
static int statement_timeout_ms = 5000;
static pthread_key_t conn_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/*
 * The pool shared by the HTTP workers (db_pool_start). A worker holds a
 * connection for one statement, or from db_begin to db_commit/db_rollback,
 * so many workers (most of them waiting on a group commit, not on the
 * database) need only a few connections.
 */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static struct db_conn *pool_free[DB_POOL_MAX];
static int pool_nfree;
static int pool_size;		/* 0: every thread has its own connection */
static int pool_open;		/* connections the pool has handed out or holds */
static _Thread_local int thread_dedicated;
static _Thread_local int thread_generic_plans;
static _Thread_local struct db_conn *thread_pinned;	/* in a transaction */

static void
conn_destroy(void *p)
{
	struct db_conn *c = p;

	if (c == NULL)
		return;
	if (c->conn != NULL)
		PQfinish(c->conn);
	free(c);
}

static void
make_key(void)
{
	pthread_key_create(&conn_key, conn_destroy);
}

int
db_init(const char *ci, int ctimeout, int stimeout_ms)
{
	pthread_once(&key_once, make_key);
	free(conninfo);
	conninfo = strdup(ci);
	connect_timeout = ctimeout;
	statement_timeout_ms = stimeout_ms;
	return conninfo != NULL ? 0 : -1;
}

void
db_shutdown(void)
{
	struct db_conn *c;

	pthread_once(&key_once, make_key);
	c = pthread_getspecific(conn_key);
	conn_destroy(c);
	pthread_setspecific(conn_key, NULL);
}

static void
drop_connection(struct db_conn *c)
{
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	c->nprepared = 0;
	c->doomed = 0;
}

/*
 * Server notices ("relation exists, skipping") are not for our users. A
 * FATAL one arriving on an idle connection means the server is closing it
 * (shutdown, restart, terminated backend): mark it so the next query
 * reconnects instead of failing.
 */
static void
on_notice(void *arg, const char *message)
{
	struct db_conn *c = arg;

	if (strncmp(message, "FATAL", 5) == 0)
		c->doomed = 1;
	log_fields(LOG_LEVEL_DEBUG, "database notice",
	    json_pack("{s:s}", "notice", message));
}

/*
 * 1 if c's connection can take a query. A connection the server closed
 * while it sat idle (a restart, a terminated backend) has usually already
 * received the server's FATAL notice or EOF: reading and parsing what is
 * pending (PQisBusy runs the notice processor) notices that without a
 * round trip, so the request gets a fresh connection instead of a failure.
 */
static int
conn_alive(struct db_conn *c)
{
	if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK)
		return 0;
	if (PQconsumeInput(c->conn) != 1)
		return 0;
	(void)PQisBusy(c->conn);
	return PQstatus(c->conn) == CONNECTION_OK && !c->doomed;
}

/*
 * This thread's connection, connecting if needed. The connection carries
 * our timeouts as startup options, so no extra round trip is needed and a
 * stuck server or lock can never hold a worker longer than the statement
 * timeout.
 */
static int
connect_conn(struct db_conn *c)
{
	char ct[16], opts[160];
	const char *keys[] = { "dbname", "connect_timeout", "options",
	    "application_name", NULL };
	const char *vals[5];

	if (conn_alive(c))
		return 0;
	drop_connection(c);
	if (conninfo == NULL)
		return -1;
	snprintf(ct, sizeof(ct), "%d", connect_timeout);
	/*
	 * idle_in_transaction_session_timeout bounds how long any of our
	 * transactions can hold a drawn audit sequence number uncommitted,
	 * which the audit sealer relies on (docs/audit.md).
	 */
	snprintf(opts, sizeof(opts),
	    "-c statement_timeout=%d -c lock_timeout=%d "
	    "-c idle_in_transaction_session_timeout=%d%s", statement_timeout_ms,
	    statement_timeout_ms, statement_timeout_ms,
	    thread_dedicated && thread_generic_plans ?
	    " -c plan_cache_mode=force_generic_plan" : "");
	vals[0] = conninfo;
	vals[1] = ct;
	vals[2] = opts;
	vals[3] = "countersign";
	vals[4] = NULL;
	/* expand_dbname=1: the first value may itself be a URL or conninfo. */
	c->conn = PQconnectdbParams(keys, vals, 1);
	metrics_inc(METRICS_DB_CONNECTS);
	if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK) {
		metrics_inc(METRICS_DB_CONNECT_FAILURES);
		/* The message can name host and user, never a password. */
		log_fields(LOG_LEVEL_WARN, "database connection failed",
		    json_pack("{s:s}", "error",
		    c->conn != NULL ? PQerrorMessage(c->conn) : "out of memory"));
		drop_connection(c);
		return -1;
	}
	PQsetNoticeProcessor(c->conn, on_notice, c);
	return 0;
}

static int
pooled(void)
{
	return pool_size > 0 && !thread_dedicated;
}

/*
 * A connection from the pool, waiting up to the connect timeout for one
 * to come back when all are in use (NULL then: the caller fails closed).
 */
static struct db_conn *
pool_acquire(void)
{
	struct db_conn *c = NULL;
	struct timespec deadline, t0, t1;
	int waited = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* pool_cv waits on the default clock, CLOCK_REALTIME. */
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += connect_timeout > 0 ? connect_timeout : 1;
	pthread_mutex_lock(&pool_mu);
	while (pool_nfree == 0 && pool_open >= pool_size) {
		waited = 1;
		if (pthread_cond_timedwait(&pool_cv, &pool_mu, &deadline) != 0 &&
		    pool_nfree == 0 && pool_open >= pool_size)
			break;
	}
	if (pool_nfree > 0)
		c = pool_free[--pool_nfree];
	else if (pool_open < pool_size && (c = calloc(1, sizeof(*c))) != NULL)
		pool_open++;
	pthread_mutex_unlock(&pool_mu);
	if (waited) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		metrics_pool_wait((double)(t1.tv_sec - t0.tv_sec) +
		    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, c != NULL);
	}
	return c;
}

/*
 * Give c back. A connection still inside a transaction (a caller that
 * neither committed nor rolled back) is closed rather than handed to the
 * next request with half a transaction on it.
 */
static void
pool_release(struct db_conn *c)
{
	if (c->conn != NULL &&
	    PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
		log_warn("database connection returned inside a transaction; "
		    "closing it");
		drop_connection(c);
	}
	pthread_mutex_lock(&pool_mu);
	pool_free[pool_nfree++] = c;
	pthread_cond_signal(&pool_cv);
	pthread_mutex_unlock(&pool_mu);
}

/*
 * The connection for the next statement: the transaction's if one is open,
 * else one from the pool (pooled threads) or this thread's own. Returns
 * NULL when none can be had; a connection whose connect failed comes back
 * with conn == NULL. Pair every call with put_conn.
 */
static struct db_conn *
get_conn(void)
{
	struct db_conn *c;

	if (thread_pinned != NULL)
		return thread_pinned;
	if (pooled()) {
		c = pool_acquire();
		if (c != NULL)
			(void)connect_conn(c);
		return c;
	}
	pthread_once(&key_once, make_key);
	c = pthread_getspecific(conn_key);
	if (c == NULL) {
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return NULL;
		pthread_setspecific(conn_key, c);
	}
	(void)connect_conn(c);
	return c;
}

/* The end of one statement: return a pooled connection unless pinned. */
static void
put_conn(struct db_conn *c)
{
	if (c != NULL && c != thread_pinned && pooled())
		pool_release(c);
}

int
db_pool_start(int size)
{
	if (size < 1 || size > DB_POOL_MAX)
		return -1;
	pthread_mutex_lock(&pool_mu);
	pool_size = size;
	pthread_mutex_unlock(&pool_mu);
	return 0;
}

void
db_pool_stop(void)
{
	pthread_mutex_lock(&pool_mu);
	while (pool_nfree > 0) {
		struct db_conn *c = pool_free[--pool_nfree];

		conn_destroy(c);
		pool_open--;
	}
	pool_size = 0;
	pthread_mutex_unlock(&pool_mu);
}

void
db_thread_dedicated(void)
{
	thread_dedicated = 1;
}

void
db_thread_generic_plans(void)
{
	thread_generic_plans = 1;
}

static void
unpin(void)
{
	struct db_conn *c = thread_pinned;

	thread_pinned = NULL;
	if (c != NULL && pooled())
		pool_release(c);
}

/*
 * Classify a failed result. Connection-level failures also drop the
 * connection so the next call starts afresh.
 */
static enum cs_err
classify(struct db_conn *c, const PGresult *res)
{
	const char *state = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res != NULL ?
	    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	metrics_inc(METRICS_DB_ERRORS);
	if (PQstatus(c->conn) != CONNECTION_OK) {
		drop_connection(c);
		log_warn("database connection lost");
		return CS_ERR_UNAVAILABLE;
	}
	if (state != NULL && strcmp(state, "23505") == 0)
		return CS_ERR_CONFLICT;
	log_fields(LOG_LEVEL_ERROR, "database error",
	    json_pack("{s:s, s:s}", "sqlstate", state != NULL ? state : "",
	    "error", msg != NULL ? msg : PQerrorMessage(c->conn)));
	/*
	 * Class 08 connection exception, 53 insufficient resources (disk
	 * full), 57 operator intervention (shutdown, statement timeout), 55P03
	 * lock not available, 40 transaction rollback: all transient.
	 */
	if (state != NULL && (strncmp(state, "08", 2) == 0 ||
	    strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0 ||
	    strcmp(state, "55P03") == 0 || strncmp(state, "40", 2) == 0 ||
	    strncmp(state, "58", 2) == 0)) {
		if (strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0)
			drop_connection(c);
		return CS_ERR_UNAVAILABLE;
	}
	return CS_ERR_INTERNAL;
}

static int
is_prepared(const struct db_conn *c, const struct db_stmt *st)
{
	size_t i;

	for (i = 0; i < c->nprepared; i++)
		if (c->prepared[i] == st)
			return 1;
	return 0;
}

enum cs_err
db_exec(const struct db_stmt *st, const char *const *params,
    struct db_result **out)
{
	struct db_conn *c;
	PGresult *res = NULL;
	enum cs_err rc;
	ExecStatusType s;

	if (out != NULL)
		*out = NULL;
	c = get_conn();
	if (c == NULL || c->conn == NULL) {
		rc = CS_ERR_UNAVAILABLE;
		goto out;
	}
	if (!is_prepared(c, st)) {
		if (c->nprepared == DB_MAX_STMTS) {
			log_error("too many prepared statements");
			rc = CS_ERR_INTERNAL;
			goto out;
		}
		res = PQprepare(c->conn, st->name, st->sql, st->nparams, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			rc = classify(c, res);
			goto out;
		}
		PQclear(res);
		c->prepared[c->nprepared++] = st;
	}
	res = PQexecPrepared(c->conn, st->name, st->nparams, params, NULL,
	    NULL, 0);
	s = PQresultStatus(res);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		rc = classify(c, res);
		goto out;
	}
	rc = CS_OK;
	if (out == NULL)
		goto out;
	*out = malloc(sizeof(**out));
	if (*out == NULL) {
		rc = CS_ERR_INTERNAL;
		goto out;
	}
	(*out)->res = res;
	res = NULL;
out:
	PQclear(res);
	put_conn(c);
	return rc;
}

enum cs_err
db_exec_script(const char *sql, char *errbuf, size_t errlen)
{
	struct db_conn *c;
	PGresult *res;
	enum cs_err rc = CS_OK;
	ExecStatusType s;

	if (errlen > 0)
		errbuf[0] = '\0';
	c = get_conn();
	if (c == NULL || c->conn == NULL) {
		snprintf(errbuf, errlen, "database unreachable");
		put_conn(c);
		return CS_ERR_UNAVAILABLE;
	}
	res = PQexec(c->conn, sql);
	s = PQresultStatus(res);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		snprintf(errbuf, errlen, "%s",
		    m != NULL ? m : PQerrorMessage(c->conn));
		rc = classify(c, res);
	}
	PQclear(res);
	put_conn(c);
	return rc;
}

static enum cs_err
simple(const char *sql)
{
	char err[256];

	return db_exec_script(sql, err, sizeof(err));
}

/*
 * A transaction keeps one connection: a pooled thread pins the connection
 * it got for BEGIN until COMMIT or ROLLBACK gives it back.
 */
enum cs_err
db_begin(void)
{
	enum cs_err rc;

	if (thread_pinned == NULL && pooled()) {
		struct db_conn *c = get_conn();

		if (c == NULL)
			return CS_ERR_UNAVAILABLE;
		thread_pinned = c;
	}
	rc = simple("BEGIN");
	if (rc != CS_OK)
		unpin();
	return rc;
}

enum cs_err
db_commit(void)
{
	enum cs_err rc = simple("COMMIT");

	unpin();
	return rc;
}

void
db_rollback(void)
{
	(void)simple("ROLLBACK");
	unpin();
}

enum cs_err
db_exec_json(const struct db_stmt *st, const char *const *params, json_t **out)
{
	struct db_result *res = NULL;
	enum cs_err rc;

	*out = NULL;
	rc = db_exec(st, params, &res);
	if (rc == CS_OK && (db_nrows(res) != 1 ||
	    (*out = json_loads(db_value(res, 0, 0), 0, NULL)) == NULL))
		rc = CS_ERR_INTERNAL;
	db_result_free(res);
	return rc;
}

enum cs_err
db_ping(void)
{
	static const struct db_stmt ping = { "db_ping", "SELECT 1", 0 };

	return db_exec(&ping, NULL, NULL);
}

static int64_t
realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum cs_err
db_clock_skew(int64_t *skew_ms)
{
	static const struct db_stmt clock = { "db_clock",
	    "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", 0 };
	struct db_result *res = NULL;
	int64_t before, after, theirs;
	enum cs_err rc;

	*skew_ms = 0;
	before = realtime_ms();
	rc = db_exec(&clock, NULL, &res);
	after = realtime_ms();
	if (rc == CS_OK && (db_nrows(res) != 1 ||
	    util_parse_int64(db_value(res, 0, 0), 0, INT64_MAX, &theirs) != 0))
		rc = CS_ERR_INTERNAL;
	if (rc == CS_OK)
		*skew_ms = before + (after - before) / 2 - theirs;
	db_result_free(res);
	return rc;
}

int
db_nrows(const struct db_result *r)
{
	return r != NULL ? PQntuples(r->res) : 0;
}

const char *
db_value(const struct db_result *r, int row, int col)
{
	return PQgetvalue(r->res, row, col);
}

int
db_isnull(const struct db_result *r, int row, int col)
{
	return PQgetisnull(r->res, row, col);
}

void
db_result_free(struct db_result *r)
{
	if (r == NULL)
		return;
	PQclear(r->res);
	free(r);
}

char *
db_text_array(const char *const *items, size_t n)
{
	size_t i, total = 3, off = 0;
	char *s;

	for (i = 0; i < n; i++)
		total += 2 * strlen(items[i]) + 3;
	s = malloc(total);
	if (s == NULL)
		return NULL;
	s[off++] = '{';
	for (i = 0; i < n; i++) {
		const char *p;

		if (i > 0)
			s[off++] = ',';
		s[off++] = '"';
		for (p = items[i]; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				s[off++] = '\\';
			s[off++] = *p;
		}
		s[off++] = '"';
	}
	s[off++] = '}';
	s[off] = '\0';
	return s;
}

int
db_parse_text_array(const char *lit, char **items, size_t max, size_t *n)
{
	const char *p = lit;
	size_t count = 0;

	*n = 0;
	if (p == NULL || *p++ != '{')
		return -1;
	if (*p == '}')
		return p[1] == '\0' ? 0 : -1;
	for (;;) {
		size_t cap = strlen(p) + 1, off = 0;
		char *buf;

		if (count == max)
			goto fail;
		buf = malloc(cap);
		if (buf == NULL)
			goto fail;
		if (*p == '"') {
			p++;
			while (*p != '"') {
				if (*p == '\0') {
					free(buf);
					goto fail;
				}
				if (*p == '\\' && p[1] != '\0')
					p++;
				buf[off++] = *p++;
			}
			p++;
		} else {
			while (*p != ',' && *p != '}' && *p != '\0')
				buf[off++] = *p++;
		}
		buf[off] = '\0';
		items[count++] = buf;
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '}' && p[1] == '\0')
			break;
		goto fail;
	}
	*n = count;
	return 0;
fail:
	while (count > 0)
		free(items[--count]);
	return -1;
}

char *
db_bytea_param(const unsigned char *bytes, size_t n)
{
	char *s = malloc(2 * n + 3);

	if (s == NULL)
		return NULL;
	s[0] = '\\';
	s[1] = 'x';
	util_hex(bytes, n, s + 2);
	return s;
}

static int
hexnib(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
db_bytea_value(const char *text, unsigned char *out, size_t cap, size_t *n)
{
	size_t len, i;

	if (text == NULL || text[0] != '\\' || text[1] != 'x')
		return -1;
	text += 2;
	len = strlen(text);
	if (len % 2 != 0 || len / 2 > cap)
		return -1;
	for (i = 0; i < len / 2; i++) {
		int hi = hexnib(text[2 * i]), lo = hexnib(text[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	*n = len / 2;
	return 0;
}
