/*
 * error.c: cs_error_set, shared by every module (see countersign.h).
 */
#include <stdarg.h>
#include <stdio.h>

#include "countersign.h"

enum cs_err
cs_error_set(struct cs_error *err, enum cs_err code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->desc, sizeof(err->desc), fmt, ap);
		va_end(ap);
	}
	return code;
}
