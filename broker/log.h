/*
 * log.h: one JSON object per line on stderr.
 *
 * Callers pass structured fields, never a formatted token or secret; the
 * logger itself never sees request bodies or headers.
 */
#ifndef LOG_H
#define LOG_H

#include <jansson.h>

#include "config.h"

/* log_set_level(level): drop messages below level from now on. */
void log_set_level(enum log_level level);

/* log_enabled(level): 1 if a message at level would be written. */
int log_enabled(enum log_level level);

/*
 * log_fields(level, msg, fields): write {"time","level","msg", ...fields}.
 * fields (may be NULL) is consumed (json_decref'd) whatever happens.
 */
void log_fields(enum log_level level, const char *msg, json_t *fields);

/* log_msg(level, fmt, ...): a plain formatted message. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)	log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...)	log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
