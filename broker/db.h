/*
 * db.h: PostgreSQL access. db.c is the only file that includes libpq.
 *
 * The broker's HTTP workers share a pool of connections (db_pool_start):
 * a worker holds one for a single statement, or from db_begin to
 * db_commit/db_rollback. Every other thread (the CLI, the committers, the
 * sealer, the sweeper) owns one connection, opened lazily on its first
 * query and closed when the thread exits. Statements are described by a static struct
 * db_stmt in the module that owns the SQL and are prepared on a connection
 * the first time they run on it, so every query is parameterised and
 * planned once. When the server goes away the connection is dropped and the
 * next query reconnects, so the broker recovers by itself; in between every
 * call fails with CS_ERR_UNAVAILABLE (fail closed).
 */
#ifndef DB_H
#define DB_H

#include <stddef.h>

#include <jansson.h>

#include "countersign.h"

#define DB_MAX_STMTS	128
#define DB_POOL_MAX	1024

struct db_stmt {
	const char *name;	/* unique, used as the prepared statement name */
	const char *sql;
	int nparams;
};

struct db_result;

/*
 * db_init(conninfo, connect_timeout, statement_timeout_ms): remember how to
 * connect. No connection is made here. conninfo is copied. Returns 0 or -1.
 */
int db_init(const char *conninfo, int connect_timeout, int statement_timeout_ms);

/* db_shutdown(): close this thread's connection. */
void db_shutdown(void);

/*
 * db_pool_start(size): from now on, threads that did not call
 * db_thread_dedicated share at most size connections (1..DB_POOL_MAX); a
 * statement that finds them all busy waits up to the connect timeout and
 * then fails with CS_ERR_UNAVAILABLE. Returns 0 or -1.
 */
int db_pool_start(int size);

/* db_pool_stop(): close the pool's idle connections; threads go back to
 * owning one each. Call after the workers have stopped. */
void db_pool_stop(void);

/*
 * db_thread_dedicated(): the calling thread keeps a connection of its own,
 * outside the pool (long-running background threads, so that a busy pool
 * can never starve the group commit or the sealer).
 */
void db_thread_dedicated(void);

/*
 * db_thread_generic_plans(): the calling dedicated thread's connection
 * plans its prepared statements once, generically, instead of re-planning
 * every execution for its parameters (plan_cache_mode). For a thread that
 * runs one statement whose plan does not depend on its values (the group
 * commit's insert), where planning cost as much as executing.
 */
void db_thread_generic_plans(void);

/*
 * db_exec(st, params, res): run st with st->nparams text parameters (a NULL
 * entry is SQL NULL) on this thread's connection. On CS_OK, *res (if res is
 * not NULL) receives the result, which the caller frees with
 * db_result_free. Errors: CS_ERR_CONFLICT for a unique violation,
 * CS_ERR_UNAVAILABLE when the server cannot be reached or is shutting down,
 * out of space or the statement timed out, CS_ERR_INTERNAL otherwise (the
 * server's message is logged, parameters never are).
 */
enum cs_err db_exec(const struct db_stmt *st, const char *const *params,
    struct db_result **res);

/*
 * db_exec_script(sql): run a multi-statement script with the simple query
 * protocol. Only for migrations and other constant SQL; never for text
 * containing input. Same errors as db_exec; the server's message goes to
 * errbuf.
 */
enum cs_err db_exec_script(const char *sql, char *errbuf, size_t errlen);

/* Transactions on this thread's connection. */
enum cs_err db_begin(void);
enum cs_err db_commit(void);
void db_rollback(void);

/*
 * db_exec_json(st, params, out): run st, whose single row and column is
 * JSON text (a jsonb_agg or jsonb_build_object built in SQL), and parse
 * it into *out (caller decrefs). CS_ERR_INTERNAL if it is not JSON.
 */
enum cs_err db_exec_json(const struct db_stmt *st, const char *const *params,
    json_t **out);

/* db_ping(): CS_OK if a trivial query succeeds. */
enum cs_err db_ping(void);

/*
 * db_clock_skew(skew_ms): how far this process's wall clock (the one that
 * sets tokens' iat and exp) is ahead of PostgreSQL's clock_timestamp() (the
 * one that judges approvals), in milliseconds; negative when behind. The
 * database's reading is compared with the midpoint of the round trip, so
 * the error is at most half of it. CS_OK, or the db_exec error.
 */
enum cs_err db_clock_skew(int64_t *skew_ms);

int db_nrows(const struct db_result *r);
/* db_value(r, row, col): the text of a field, "" for NULL; owned by r. */
const char *db_value(const struct db_result *r, int row, int col);
int db_isnull(const struct db_result *r, int row, int col);
void db_result_free(struct db_result *r);

/*
 * db_text_array(items, n): a PostgreSQL array literal ({"a","b"}) for n
 * strings, quoting and escaping every element, for a text[] parameter.
 * New string the caller frees; NULL on allocation failure.
 */
char *db_text_array(const char *const *items, size_t n);

/*
 * db_parse_text_array(lit, items, max, n): split an array literal as the
 * server returns it for text[] into new strings (caller frees each).
 * Returns 0 or -1.
 */
int db_parse_text_array(const char *lit, char **items, size_t max, size_t *n);

/*
 * db_bytea_param(bytes, n): the text form of a bytea parameter ("\\x" and
 * hex). New string the caller frees; NULL on allocation failure.
 */
char *db_bytea_param(const unsigned char *bytes, size_t n);

/*
 * db_bytea_value(text, out, cap, n): decode a bytea field in the server's
 * hex output format into out (cap bytes). Returns 0 and sets *n, or -1.
 */
int db_bytea_value(const char *text, unsigned char *out, size_t cap, size_t *n);

#endif
