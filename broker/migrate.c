/*
 * migrate.c: see migrate.h.
 */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "embedded.h"
#include "log.h"
#include "migrate.h"

/* An arbitrary constant naming our advisory lock ("cs-migr"). */
#define MIGRATE_LOCK	"7166434502651474"

static const struct db_stmt is_applied = {
	"migrate_is_applied",
	"SELECT 1 FROM schema_migrations WHERE version = $1",
	1
};

static const struct db_stmt record = {
	"migrate_record",
	"INSERT INTO schema_migrations (version) VALUES ($1)",
	1
};

static const struct db_stmt record_audit = {
	"migrate_record_audit",
	"INSERT INTO audit_events (type, actor, subject) "
	"VALUES ('schema.migrated', 'admin:migrate', $1)",
	1
};

enum cs_err
migrate_run(int *applied, char *errbuf, size_t errlen)
{
	const struct embedded_file *m;
	enum cs_err rc;
	int locked = 0;

	*applied = 0;
	rc = db_exec_script("CREATE TABLE IF NOT EXISTS schema_migrations ("
	    "version text PRIMARY KEY, "
	    "applied_at timestamptz NOT NULL DEFAULT now())", errbuf, errlen);
	if (rc != CS_OK)
		goto out;
	rc = db_exec_script("SELECT pg_advisory_lock(" MIGRATE_LOCK ")",
	    errbuf, errlen);
	if (rc != CS_OK)
		goto out;
	locked = 1;
	for (m = embedded_migrations; m->name != NULL; m++) {
		const char *params[1] = { m->name };
		struct db_result *res = NULL;
		int done;

		rc = db_exec(&is_applied, params, &res);
		done = rc == CS_OK && db_nrows(res) > 0;
		db_result_free(res);
		if (rc != CS_OK) {
			snprintf(errbuf, errlen, "cannot read schema_migrations");
			goto out;
		}
		if (done)
			continue;
		rc = db_begin();
		if (rc == CS_OK)
			rc = db_exec_script((const char *)m->data, errbuf, errlen);
		if (rc == CS_OK)
			rc = db_exec(&record, params, NULL);
		if (rc == CS_OK)
			rc = db_exec(&record_audit, params, NULL);
		if (rc == CS_OK)
			rc = db_commit();
		if (rc != CS_OK) {
			char msg[512];

			db_rollback();
			snprintf(msg, sizeof(msg), "%s: %s", m->name, errbuf);
			snprintf(errbuf, errlen, "%s", msg);
			goto out;
		}
		log_fields(LOG_LEVEL_INFO, "migration applied",
		    json_pack("{s:s}", "version", m->name));
		(*applied)++;
	}
	rc = CS_OK;
out:
	if (locked) {
		char ignored[64];

		db_exec_script("SELECT pg_advisory_unlock(" MIGRATE_LOCK ")",
		    ignored, sizeof(ignored));
	}
	return rc;
}
