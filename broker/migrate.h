/*
 * migrate.h: applies the SQL migrations compiled into the binary.
 */
#ifndef MIGRATE_H
#define MIGRATE_H

#include <stddef.h>

#include "countersign.h"

/*
 * migrate_run(applied, errbuf, errlen): apply every migration not yet in
 * schema_migrations, in order, each in its own transaction together with
 * its schema_migrations row and a schema.migrated audit event. A session
 * advisory lock makes concurrent runs wait for each other. Running it
 * again changes nothing. *applied receives the number applied now.
 */
enum cs_err migrate_run(int *applied, char *errbuf, size_t errlen);

#endif
