/*
 * embedded.h: files compiled into the binary by tools/embed.c.
 */
#ifndef EMBEDDED_H
#define EMBEDDED_H

#include <stddef.h>

struct embedded_file {
	const char *name;		/* base name, e.g. "0001_core.sql" */
	const unsigned char *data;	/* NUL-terminated; len excludes it */
	size_t len;
};

/* The files of migrations/ in order, ending in a { NULL } entry. */
extern const struct embedded_file embedded_migrations[];

/* The files of ui/ (the approver web page), ending in a { NULL } entry. */
extern const struct embedded_file embedded_ui[];

#endif
