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

/*
 * log_event(level, event, fields): an audit-worthy event ("token.issued",
 * "approval.approved", ...) as its own line, {"msg": event, "event": event,
 * ...fields}. fields (may be NULL) is consumed. Callers pass names, ids
 * and jti values, never a token, secret or key.
 */
void log_event(enum log_level level, const char *event, json_t *fields);

/*
 * log_set_request(id): from now on, every line this thread writes carries
 * "request_id": id, until log_set_request(NULL). id is borrowed and must
 * stay valid until then. http.c sets it around each request's handling so
 * that lines written deep inside a module still name their request.
 */
void log_set_request(const char *id);

/* log_msg(level, fmt, ...): a plain formatted message. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)	log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...)	log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
