/*
 * log.c: see log.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* The request this thread is handling; see log_set_request(). */
static _Thread_local const char *cur_request;

void
log_set_request(const char *id)
{
	cur_request = id;
}

void
log_set_level(enum log_level level)
{
	min_level = level;
}

int
log_enabled(enum log_level level)
{
	return level >= min_level;
}

void
log_fields(enum log_level level, const char *msg, json_t *fields)
{
	struct timeval tv;
	struct tm tm;
	char ts[40], *line = NULL;
	json_t *obj = NULL;
	size_t len;

	if (!log_enabled(level))
		goto out;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	len = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + len, sizeof(ts) - len, ".%03ldZ", (long)(tv.tv_usec / 1000));
	obj = json_pack("{s:s, s:s, s:s}", "time", ts, "level",
	    level_names[level], "msg", msg);
	if (obj == NULL)
		goto out;
	if (fields != NULL)
		json_object_update_missing(obj, fields);
	if (cur_request != NULL && json_object_get(obj, "request_id") == NULL)
		json_object_set_new(obj, "request_id", json_string(cur_request));
	line = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (line == NULL)
		goto out;
	/*
	 * One write per line, so lines from several threads never
	 * interleave (writes to a pipe of up to PIPE_BUF bytes are atomic).
	 */
	len = strlen(line);
	line[len] = '\n';
	if (write(STDERR_FILENO, line, len + 1) < 0) {
		/* Nothing sensible to do if stderr is gone. */
	}
out:
	free(line);
	json_decref(obj);
	json_decref(fields);
}

void
log_event(enum log_level level, const char *event, json_t *fields)
{
	if (!log_enabled(level)) {
		json_decref(fields);
		return;
	}
	if (fields == NULL)
		fields = json_object();
	if (fields != NULL)
		json_object_set_new(fields, "event", json_string(event));
	log_fields(level, event, fields);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fields(level, buf, NULL);
}
