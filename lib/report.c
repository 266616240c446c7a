/*
 * report.c: use reports for services that verify offline
 * (include/countersign/report.h, docs/use-reports.md).
 *
 * Callers only copy an entry into a fixed ring under a mutex; one worker
 * thread owns the libcurl handle and does every network call, so a slow or
 * dead broker can never stall a request path. The ring never grows: when
 * it is full, uses are dropped and counted, because a trace that is lost is
 * better than a service that runs out of memory or blocks.
 *
 * This file lives in libcountersign-verify, not in the broker, so it cannot
 * lean on broker/httpclient.c (whose global init is the broker's job) or on
 * util.c; it only shares b64.c.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "b64.h"
#include "countersign/report.h"

#define JTI_MAX			64	/* the broker's limit for an id */
#define ID_MAX			64	/* service names */
#define SECRET_MAX		256	/* what the broker will look at */
#define URL_MAX			2048
#define ATTEMPTS		4	/* one try and three retries */
#define BACKOFF_MS		250	/* doubled after every failed attempt */
#define REQUEST_TIMEOUT_MS	5000
#define FREE_WAIT_MS		5000
#define RESPONSE_MAX		65536	/* we only need the status */
/* The broker refuses uses older than a day; a minute's margin for skew. */
#define STALE_S			(24 * 3600 - 60)
/* One entry as JSON: 64-byte jti, 20-digit time, longest result name. */
#define ENTRY_JSON_MAX		160
#define BODY_MAX(batch)		(32 + (size_t)(batch) * ENTRY_JSON_MAX)

struct entry {
	int64_t at;		/* wall clock, seconds: what the broker records */
	int64_t queued_ms;	/* monotonic: when the batch is due */
	unsigned char result;
	char jti[JTI_MAX + 1];
};

struct cs_reporter {
	pthread_mutex_t mu;
	pthread_cond_t wake;	/* the worker waits here for work or a stop */
	pthread_cond_t done;	/* flushers wait here for batches to finish */
	pthread_t thread;

	/* Guarded by mu. */
	struct entry *ring;	/* CS_REPORT_QUEUE_MAX slots */
	size_t head, count;
	uint64_t queued;	/* uses ever queued */
	uint64_t handled;	/* uses ever sent or given up on */
	uint64_t flush_to;	/* send at once until handled reaches this */
	int stopping;
	int64_t stop_by_ms;	/* monotonic; meaningful once stopping */

	/* Set by cs_reporter_new, read-only afterwards. */
	int max_batch;
	int flush_ms;

	/* The worker's alone once it runs. */
	CURL *curl;
	struct curl_slist *headers;	/* one of them holds the credentials */
	struct entry *batch;		/* max_batch slots */
	char *body;			/* BODY_MAX(max_batch) bytes */
	size_t body_cap;
	size_t response_len;

	_Atomic uint64_t sent, dropped, failed;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait on cond until the monotonic time ms (or a wake-up). */
static void
wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000;
	pthread_cond_timedwait(cond, mu, &ts);
}

static int
valid_jti(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > JTI_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/* Form-urlencode n bytes of s into out (3n + 1 bytes). RFC 6749 §2.3.1. */
static size_t
urlencode(const char *s, size_t n, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

/*
 * The whole "Authorization: Basic ..." header line, a new string holding
 * the secret in encoded form. Intermediate copies are wiped here.
 */
static char *
basic_header(const char *id, const char *secret)
{
	static const char prefix[] = "Authorization: Basic ";
	size_t idlen = strlen(id), slen = strlen(secret), rawcap, rawlen, cap;
	char *raw = NULL, *line = NULL;

	rawcap = 3 * idlen + 1 + 3 * slen + 1;
	raw = malloc(rawcap);
	if (raw == NULL)
		goto out;
	rawlen = urlencode(id, idlen, raw);
	raw[rawlen++] = ':';
	rawlen += urlencode(secret, slen, raw + rawlen);
	cap = sizeof(prefix) + b64_std_encoded_len(rawlen);
	line = malloc(cap);
	if (line == NULL)
		goto out;
	memcpy(line, prefix, sizeof(prefix) - 1);
	b64_std_encode((const unsigned char *)raw, rawlen,
	    line + sizeof(prefix) - 1);
out:
	if (raw != NULL) {
		OPENSSL_cleanse(raw, rawcap);
		free(raw);
	}
	return line;
}

/* libcurl write callback: count the response, keep none of it. */
static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct cs_reporter *r = userdata;
	size_t n = size * nmemb;

	(void)ptr;
	if (n > RESPONSE_MAX - r->response_len)
		return 0;	/* aborts the transfer: not our broker */
	r->response_len += n;
	return n;
}

/*
 * The JSON body for batch[0..n) into r->body. Uses too old for the broker
 * to accept (queued through a long outage) are left out, since one of them
 * would get the whole batch refused; *kept says how many went in. Returns
 * the body's length, or 0 if there is nothing to send.
 */
static size_t
build_body(struct cs_reporter *r, size_t n, size_t *kept)
{
	size_t i, len, cap = r->body_cap;
	int64_t oldest = (int64_t)time(NULL) - STALE_S;
	int w;

	*kept = 0;
	len = (size_t)snprintf(r->body, cap, "{\"uses\":[");
	for (i = 0; i < n; i++) {
		const struct entry *e = &r->batch[i];

		if (e->at < oldest)
			continue;
		/* jti was checked to be base64url: nothing to escape. */
		w = snprintf(r->body + len, cap - len,
		    "%s{\"jti\":\"%s\",\"at\":%lld,\"result\":\"%s\"}",
		    *kept > 0 ? "," : "", e->jti, (long long)e->at,
		    cs_verify_result_name((enum cs_verify_result)e->result));
		if (w < 0 || (size_t)w >= cap - len)
			return 0;
		len += (size_t)w;
		(*kept)++;
	}
	if (*kept == 0)
		return 0;
	w = snprintf(r->body + len, cap - len, "]}");
	if (w < 0 || (size_t)w >= cap - len)
		return 0;
	return len + (size_t)w;
}

/* One POST. Returns the HTTP status, or 0 when there was no answer. */
static long
post_once(struct cs_reporter *r, size_t len, int64_t timeout_ms)
{
	long status = 0;

	r->response_len = 0;
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	if (curl_easy_perform(r->curl) != CURLE_OK ||
	    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status) !=
	    CURLE_OK)
		return 0;
	return status;
}

/*
 * Failures worth another attempt: no answer, a timeout, overload or a
 * broker that cannot reach its database. A 4xx other than 408/429 means
 * the request itself is wrong (bad credentials, a clock far off) and would
 * fail the same way again.
 */
static int
transient(long status)
{
	return status == 0 || status == 408 || status == 429 || status >= 500;
}

/*
 * How long the next attempt may take, or -1 if none may start: while
 * stopping, everything must end by stop_by_ms.
 */
static int64_t
attempt_budget(struct cs_reporter *r)
{
	int64_t budget = REQUEST_TIMEOUT_MS, left;

	pthread_mutex_lock(&r->mu);
	if (r->stopping) {
		left = r->stop_by_ms - mono_ms();
		if (left < budget)
			budget = left;
	}
	pthread_mutex_unlock(&r->mu);
	return budget > 0 ? budget : -1;
}

/* Sleep ms before a retry; a stop shortens it to the stop deadline. */
static void
backoff(struct cs_reporter *r, int64_t ms)
{
	int64_t until = mono_ms() + ms;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		int64_t end = until;

		if (r->stopping && r->stop_by_ms < end)
			end = r->stop_by_ms;
		if (mono_ms() >= end)
			break;
		wait_until(&r->wake, &r->mu, end);
	}
	pthread_mutex_unlock(&r->mu);
}

/*
 * Send batch[0..n) with retries. Returns how many uses the broker
 * recorded: all that build_body kept, or 0.
 */
static size_t
send_batch(struct cs_reporter *r, size_t n)
{
	size_t len, kept;
	int64_t budget;
	long status;
	int attempt;

	len = build_body(r, n, &kept);
	if (len == 0)
		return 0;
	for (attempt = 0; attempt < ATTEMPTS; attempt++) {
		if (attempt > 0)
			backoff(r, (int64_t)BACKOFF_MS << (attempt - 1));
		budget = attempt_budget(r);
		if (budget < 0)
			return 0;
		status = post_once(r, len, budget);
		if (status == 200)
			return kept;
		if (!transient(status))
			return 0;
	}
	return 0;
}

/*
 * With mu held: wait until a batch is due and move it from the ring into
 * r->batch. Returns its size, or 0 when the worker should exit.
 */
static size_t
next_batch(struct cs_reporter *r)
{
	size_t n, i;

	for (;;) {
		if (r->stopping) {
			if (r->count == 0 || mono_ms() >= r->stop_by_ms)
				return 0;
			break;
		}
		if (r->count >= (size_t)r->max_batch ||
		    (r->count > 0 && r->flush_to > r->handled))
			break;
		if (r->count == 0) {
			pthread_cond_wait(&r->wake, &r->mu);
			continue;
		}
		if (mono_ms() >= r->ring[r->head].queued_ms + r->flush_ms)
			break;
		wait_until(&r->wake, &r->mu,
		    r->ring[r->head].queued_ms + r->flush_ms);
	}
	n = r->count < (size_t)r->max_batch ? r->count : (size_t)r->max_batch;
	for (i = 0; i < n; i++)
		r->batch[i] = r->ring[(r->head + i) % CS_REPORT_QUEUE_MAX];
	r->head = (r->head + n) % CS_REPORT_QUEUE_MAX;
	r->count -= n;
	return n;
}

static void *
worker(void *arg)
{
	struct cs_reporter *r = arg;
	size_t n, sent;

	pthread_mutex_lock(&r->mu);
	while ((n = next_batch(r)) > 0) {
		/* The network is used without the lock, so callers never wait. */
		pthread_mutex_unlock(&r->mu);
		sent = send_batch(r, n);
		atomic_fetch_add_explicit(&r->sent, sent, memory_order_relaxed);
		atomic_fetch_add_explicit(&r->failed, n - sent,
		    memory_order_relaxed);
		pthread_mutex_lock(&r->mu);
		r->handled += n;
		pthread_cond_broadcast(&r->done);
	}
	/* Stopping, and the time to send is up: the rest is lost. */
	atomic_fetch_add_explicit(&r->failed, r->count, memory_order_relaxed);
	r->handled += r->count;
	r->count = 0;
	pthread_cond_broadcast(&r->done);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static int
clamp(int v, int lo, int hi, int dflt)
{
	if (v <= 0)
		return dflt;
	return v < lo ? lo : v > hi ? hi : v;
}

/* Set up the handle once; it is reused so connections are kept alive. */
static int
setup_curl(struct cs_reporter *r, const char *broker_url, const char *id,
    const char *secret)
{
	char url[URL_MAX + sizeof("/v1/uses")], *auth = NULL;
	size_t len = strlen(broker_url);
	struct curl_slist *h;
	int rc = -1;

	while (len > 0 && broker_url[len - 1] == '/')
		len--;
	snprintf(url, sizeof(url), "%.*s/v1/uses", (int)len, broker_url);
	auth = basic_header(id, secret);
	if (auth == NULL)
		goto out;
	/* Each append copies; on failure the list built so far is kept. */
	if ((h = curl_slist_append(r->headers, auth)) == NULL)
		goto out;
	r->headers = h;
	if ((h = curl_slist_append(r->headers,
	    "Content-Type: application/json")) == NULL)
		goto out;
	r->headers = h;
	if ((h = curl_slist_append(r->headers, "Expect:")) == NULL)
		goto out;
	r->headers = h;
	r->curl = curl_easy_init();
	if (r->curl == NULL)
		goto out;
	/* Only http(s), and never a redirect: the credentials stay put. */
	if (curl_easy_setopt(r->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https") !=
	    CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_POST, 1L) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers) !=
	    CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_USERAGENT,
	    "countersign-report/1") != CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, discard) !=
	    CURLE_OK ||
	    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r) != CURLE_OK)
		goto out;
	rc = 0;
out:
	if (auth != NULL) {
		OPENSSL_cleanse(auth, strlen(auth));
		free(auth);
	}
	return rc;
}

/* Wipe the credential header's copy in the list, then free the list. */
static void
free_headers(struct curl_slist *list)
{
	struct curl_slist *h;

	for (h = list; h != NULL; h = h->next)
		if (h->data != NULL)
			OPENSSL_cleanse(h->data, strlen(h->data));
	curl_slist_free_all(list);
}

/* Free what cs_reporter_new allocated; the thread is not running. */
static void
destroy(struct cs_reporter *r, int curl_inited, int sync_inited)
{
	if (r->curl != NULL)
		curl_easy_cleanup(r->curl);
	free_headers(r->headers);
	if (curl_inited)
		curl_global_cleanup();
	if (sync_inited) {
		pthread_cond_destroy(&r->done);
		pthread_cond_destroy(&r->wake);
		pthread_mutex_destroy(&r->mu);
	}
	free(r->body);
	free(r->batch);
	free(r->ring);
	free(r);
}

struct cs_reporter *
cs_reporter_new(const char *broker_url, const char *service_id,
    const char *service_secret, int max_batch, int flush_ms)
{
	struct cs_reporter *r = NULL;
	pthread_condattr_t ca;
	sigset_t all, old;
	size_t idlen, slen;
	int curl_inited = 0, sync_inited = 0, rc;

	if (broker_url == NULL || service_id == NULL || service_secret == NULL)
		return NULL;
	idlen = strnlen(service_id, ID_MAX + 1);
	slen = strnlen(service_secret, SECRET_MAX + 1);
	if (idlen == 0 || idlen > ID_MAX || slen == 0 || slen > SECRET_MAX ||
	    strnlen(broker_url, URL_MAX + 1) > URL_MAX ||
	    (strncmp(broker_url, "http://", 7) != 0 &&
	    strncmp(broker_url, "https://", 8) != 0))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->max_batch = clamp(max_batch, 1, CS_REPORT_BATCH_MAX, 100);
	r->flush_ms = clamp(flush_ms, 10, 60000, 1000);
	atomic_init(&r->sent, 0);
	atomic_init(&r->dropped, 0);
	atomic_init(&r->failed, 0);
	r->ring = calloc(CS_REPORT_QUEUE_MAX, sizeof(*r->ring));
	r->batch = calloc((size_t)r->max_batch, sizeof(*r->batch));
	r->body_cap = BODY_MAX(r->max_batch);
	r->body = malloc(r->body_cap);
	if (r->ring == NULL || r->batch == NULL || r->body == NULL)
		goto fail;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		goto fail;
	curl_inited = 1;
	if (setup_curl(r, broker_url, service_id, service_secret) != 0)
		goto fail;
	/* Timed waits run on the monotonic clock: wall-clock jumps are not waits. */
	if (pthread_condattr_init(&ca) != 0)
		goto fail;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0 && (rc = pthread_mutex_init(&r->mu, NULL)) == 0) {
		if ((rc = pthread_cond_init(&r->wake, &ca)) != 0)
			pthread_mutex_destroy(&r->mu);
		else if ((rc = pthread_cond_init(&r->done, &ca)) != 0) {
			pthread_cond_destroy(&r->wake);
			pthread_mutex_destroy(&r->mu);
		}
	}
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		goto fail;
	sync_inited = 1;
	/*
	 * The worker starts with every signal blocked, so the application's
	 * signals go to its own threads and a SIGPIPE from a dropped
	 * connection stays pending on the worker instead of killing the
	 * process (CURLOPT_NOSIGNAL stops libcurl from touching handlers).
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&r->thread, NULL, worker, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		goto fail;
	return r;
fail:
	destroy(r, curl_inited, sync_inited);
	return NULL;
}

int
cs_report_use(struct cs_reporter *r, const char *jti,
    enum cs_verify_result result)
{
	struct entry *e;
	size_t len;

	if (r == NULL)
		return -1;
	len = jti != NULL ? strnlen(jti, JTI_MAX + 1) : 0;
	if (!valid_jti(jti, len) || (unsigned)result > CS_VERIFY_INTERNAL)
		goto drop;
	pthread_mutex_lock(&r->mu);
	if (r->stopping || r->count == CS_REPORT_QUEUE_MAX) {
		pthread_mutex_unlock(&r->mu);
		goto drop;
	}
	e = &r->ring[(r->head + r->count) % CS_REPORT_QUEUE_MAX];
	memcpy(e->jti, jti, len);
	e->jti[len] = '\0';
	e->result = (unsigned char)result;
	e->at = (int64_t)time(NULL);
	e->queued_ms = mono_ms();
	r->count++;
	r->queued++;
	/* The worker cares about the first entry (a timer) and a full batch. */
	if (r->count == 1 || r->count == (size_t)r->max_batch)
		pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->mu);
	return 0;
drop:
	atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
	return -1;
}

void
cs_reporter_flush(struct cs_reporter *r)
{
	uint64_t target;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	target = r->queued;
	if (target > r->flush_to)
		r->flush_to = target;
	pthread_cond_signal(&r->wake);
	/* The worker handles entries in order, so this covers all of ours. */
	while (r->handled < target)
		pthread_cond_wait(&r->done, &r->mu);
	pthread_mutex_unlock(&r->mu);
}

void
cs_reporter_stats(const struct cs_reporter *r, uint64_t *sent,
    uint64_t *dropped, uint64_t *failed)
{
	if (sent != NULL)
		*sent = r != NULL ? atomic_load_explicit(&r->sent,
		    memory_order_relaxed) : 0;
	if (dropped != NULL)
		*dropped = r != NULL ? atomic_load_explicit(&r->dropped,
		    memory_order_relaxed) : 0;
	if (failed != NULL)
		*failed = r != NULL ? atomic_load_explicit(&r->failed,
		    memory_order_relaxed) : 0;
}

void
cs_reporter_free(struct cs_reporter *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	r->stop_by_ms = mono_ms() + FREE_WAIT_MS;
	pthread_cond_broadcast(&r->wake);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	destroy(r, 1, 1);
}
