/*
 * notify.c: see notify.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpclient.h"
#include "log.h"
#include "notify.h"

struct item {
	char *body;
	struct item *next;
};

static const struct broker_config *cfg_;
static pthread_t thread;
static int running;
static int stopping;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct item *head, *tail;
static size_t queued;
static struct timespec stop_by;	/* once stopping: end of the drain */

/*
 * Seconds an attempt may take now (mu held): webhook_timeout, or once
 * stopping what is left of the drain, rounded up; 0 when none is left.
 */
static int
attempt_timeout(void)
{
	struct timespec now;
	long long ms;

	if (!stopping)
		return cfg_->webhook_timeout;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(stop_by.tv_sec - now.tv_sec) * 1000 +
	    (stop_by.tv_nsec - now.tv_nsec) / 1000000;
	if (ms <= 0)
		return 0;
	return ms < (long long)cfg_->webhook_timeout * 1000 ?
	    (int)((ms + 999) / 1000) : cfg_->webhook_timeout;
}

/*
 * POST body, up to NOTIFY_ATTEMPTS times. Once stopping, one attempt at
 * most, cut to what is left of the drain; -1 if there was no time left
 * to try at all.
 */
static int
deliver(const char *body)
{
	int attempt, timeout, stop;

	for (attempt = 1; attempt <= NOTIFY_ATTEMPTS; attempt++) {
		long status = 0;

		pthread_mutex_lock(&mu);
		timeout = attempt > 1 && stopping ? 0 : attempt_timeout();
		pthread_mutex_unlock(&mu);
		if (timeout == 0)
			return attempt == 1 ? -1 : 0;
		if (httpclient_request("POST", cfg_->webhook_url, NULL,
		    "application/json", body, strlen(body), timeout,
		    &status, NULL, NULL) == 0 && status >= 200 && status < 300)
			return 0;
		log_fields(LOG_LEVEL_WARN, "webhook delivery failed",
		    json_pack("{s:i, s:i}", "attempt", attempt, "status",
		    (int)status));
		if (attempt < NOTIFY_ATTEMPTS) {
			struct timespec ts = { 0, 200000000L * attempt };

			pthread_mutex_lock(&mu);
			stop = stopping;
			pthread_mutex_unlock(&mu);
			if (stop)
				return 0;
			nanosleep(&ts, NULL);
		}
	}
	log_warn("webhook event dropped after %d attempts", NOTIFY_ATTEMPTS);
	return 0;
}

static void *
worker(void *arg)
{
	size_t dropped = 0;

	(void)arg;
	for (;;) {
		struct item *it;

		pthread_mutex_lock(&mu);
		while (head == NULL && !stopping)
			pthread_cond_wait(&cv, &mu);
		it = head;
		if (it == NULL) {
			pthread_mutex_unlock(&mu);
			break;
		}
		head = it->next;
		if (head == NULL)
			tail = NULL;
		queued--;
		pthread_mutex_unlock(&mu);
		if (deliver(it->body) != 0)
			dropped++;
		free(it->body);
		free(it);
	}
	if (dropped > 0)
		log_warn("webhook: %zu queued events dropped at shutdown", dropped);
	return NULL;
}

int
notify_start(const struct broker_config *cfg)
{
	cfg_ = cfg;
	if (cfg->webhook_url[0] == '\0')
		return 0;
	if (pthread_create(&thread, NULL, worker, NULL) != 0)
		return -1;
	running = 1;
	return 0;
}

void
notify_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&mu);
	stopping = 1;
	/*
	 * A receiver that hangs would otherwise hold the exit for one timeout
	 * per queued event (up to NOTIFY_QUEUE_MAX of them), far past the stop
	 * timeout of systemd or Kubernetes.
	 */
	clock_gettime(CLOCK_MONOTONIC, &stop_by);
	stop_by.tv_sec += cfg_->webhook_timeout;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	pthread_join(thread, NULL);
	running = 0;
}

char *
notify_escape_text(const char *s)
{
	size_t n = 0, i;
	char *out, *o;

	for (i = 0; s[i] != '\0'; i++)
		n += s[i] == '&' ? 5 : (s[i] == '<' || s[i] == '>') ? 4 : 1;
	out = malloc(n + 1);
	if (out == NULL)
		return NULL;
	for (o = out, i = 0; s[i] != '\0'; i++) {
		const char *rep = s[i] == '&' ? "&amp;" : s[i] == '<' ? "&lt;" :
		    s[i] == '>' ? "&gt;" : NULL;

		if (rep != NULL) {
			memcpy(o, rep, strlen(rep));
			o += strlen(rep);
		} else
			*o++ = s[i];
	}
	*o = '\0';
	return out;
}

void
notify_event(const char *event, const char *text, json_t *data)
{
	struct item *it = NULL;
	json_t *j;
	char *body, *safe;

	if (!running) {
		json_decref(data);
		return;
	}
	/*
	 * text embeds what agents wrote (binding_message, names): escaped as
	 * Slack-compatible receivers require, "<!channel>" or "<https://x|y>"
	 * in a justification is shown as typed instead of pinging everyone or
	 * disguising a link. data keeps the raw values for programs.
	 */
	safe = notify_escape_text(text);
	if (safe == NULL) {
		json_decref(data);
		return;
	}
	j = json_pack("{s:s, s:s, s:o}", "event", event, "text", safe,
	    "data", data != NULL ? data : json_object());
	free(safe);
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (body == NULL)
		return;
	pthread_mutex_lock(&mu);
	if (queued >= NOTIFY_QUEUE_MAX || stopping) {
		pthread_mutex_unlock(&mu);
		log_warn("webhook queue full; event %s dropped", event);
		free(body);
		return;
	}
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		pthread_mutex_unlock(&mu);
		free(body);
		return;
	}
	it->body = body;
	if (tail != NULL)
		tail->next = it;
	else
		head = it;
	tail = it;
	queued++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}
