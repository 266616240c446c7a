/*
 * notify.h: approver notifications by webhook.
 *
 * Events are queued in memory and delivered by one background thread as a
 * JSON POST (with a Slack-compatible "text" field), with a bounded number
 * of attempts and a timeout each. The request path only enqueues: a slow or
 * dead receiver can never delay or fail a request. Payloads carry ids,
 * names, scopes and the agent's justification, never a token or secret.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <jansson.h>

#include "config.h"

#define NOTIFY_QUEUE_MAX	1024
#define NOTIFY_ATTEMPTS		3

/* notify_start(cfg): start the delivery thread if a webhook is set. */
int notify_start(const struct broker_config *cfg);

/*
 * notify_stop(): deliver what is queued within webhook_timeout more seconds
 * (each attempt cut to what is left), drop and log the rest, stop the
 * thread.
 */
void notify_stop(void);

/*
 * notify_event(event, text, data): queue {"event", "text", "data"}. data is
 * consumed. Drops (and logs) the event when the queue is full or no webhook
 * is configured.
 */
void notify_event(const char *event, const char *text, json_t *data);

/*
 * notify_escape_text(s): s with &, < and > written as &amp;, &lt; and &gt;
 * (Slack's escaping for message text), as a new string; NULL if out of
 * memory.
 */
char *notify_escape_text(const char *s);

#endif
