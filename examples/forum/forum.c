/*
 * forum.c: a tiny forum that accepts Countersign tokens, for the demo
 * (docs/demo.md).
 *
 *   GET  /threads/{id}           scope forum:read   the thread and its replies
 *   POST /threads/{id}/replies   scope forum:post   append the body as a reply
 *
 * It is the resource server of the story in docs/demo.md: an agent that may
 * read the forum cannot post to it, and a post needs a token a human
 * approved for exactly that text. Every request is checked twice:
 *
 * 1. offline, with the C verify library (signature against the broker's
 *    JWKS, typ, iss, aud, exp), then the scope the route needs;
 * 2. online, by introspection at the broker, which records the use in the
 *    audit log and is the only place that knows about revocation and use
 *    limits. Write tokens are single-use, so a post is accepted only if
 *    the broker says the token is still active while counting this use.
 *
 * A post must also carry the exact text that was approved: the SHA-256 of
 * the request body has to equal an `action_digest` of a `forum_post` entry
 * in the token's `authorization_details`, and that entry's `preview` (what
 * the approver read) has to be the body itself, byte for byte. The broker
 * does not know what a forum_post is, so it cannot tell a faithful preview
 * from a harmless-looking one next to the digest of something else; the
 * forum, which owns the type, can. The forum checks everything it can
 * decide by itself (token, proof, scope, thread, body, digest, preview)
 * before it introspects, so a request it would refuse anyway never spends
 * the one use a human approved.
 *
 * Tokens bound to a key (RFC 9449 DPoP, `cnf.jkt`) are accepted only with
 * the DPoP scheme and a fresh proof of that key for this very request
 * (method and URL, `ath`, `iat` within a minute, a `jti` not seen before);
 * a bound token sent as a Bearer token is refused, so a stolen one is
 * useless without its key. The proof is also forwarded with the
 * introspection, so the broker checks it again and audits a refusal.
 *
 * Refusals follow RFC 6750 (see docs/demo.md for the table). Threads live in
 * memory only: the forum starts with thread 42 and forgets every reply when
 * it stops. One JSON line per request goes to stderr; it names the token's
 * jti and agent, never the token.
 *
 * Configuration, from the environment:
 *   FORUM_LISTEN          HOST:PORT (numeric; default 127.0.0.1:8090; port 0
 *                         picks a free one, printed in the start-up line)
 *   FORUM_ISSUER          the broker's issuer URL (required)
 *   FORUM_AUDIENCE        this service's audience (https://forum.example)
 *   FORUM_JWKS_URL        default FORUM_ISSUER/.well-known/jwks.json
 *   FORUM_INTROSPECT_URL  default FORUM_ISSUER/oauth2/introspect
 *   FORUM_SERVICE_ID      default forum
 *   FORUM_SERVICE_SECRET  from `countersign service add` (required)
 *   FORUM_LEEWAY          seconds of clock skew allowed on exp/nbf (0-300, 30)
 *   FORUM_PUBLIC_URL      the URL clients use to reach the forum, as DPoP
 *                         proofs name it in htu (default http://HOST:PORT
 *                         of FORUM_LISTEN, with the port actually bound)
 *
 * Build: cc -std=c11 -Iinclude examples/forum/forum.c \
 *     build/libcountersign-verify.a -lmicrohttpd -ljansson -lcrypto -lcurl \
 *     -lpthread
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L	/* strndup, gmtime_r, getaddrinfo, rwlocks */
#endif
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "countersign/verify.h"

#define FORUM_MAX_BODY		65536		/* largest reply, bytes */
#define FORUM_MAX_DISCARD	(1024 * 1024)	/* oversized body we read before hanging up */
#define FORUM_MAX_REPLIES	1000		/* per thread; memory is all we have */
#define FORUM_MAX_RESPONSE	(1024 * 1024)	/* JWKS or introspection answer */
#define FORUM_HTTP_TIMEOUT	5		/* seconds per call to the broker */
#define FORUM_JWKS_MIN_MS	10000		/* at most one JWKS fetch per 10 s */
#define FORUM_THREADS		4
#define FORUM_PATH_LOG		128
#define FORUM_DPOP_WINDOW	60		/* seconds a proof's iat may be off */
#define FORUM_DPOP_SEEN		4096		/* proof jtis remembered */

enum route {
	ROUTE_THREAD,		/* GET /threads/{id} */
	ROUTE_REPLIES		/* POST /threads/{id}/replies */
};

struct config {
	char *listen_host;
	int listen_port;
	char *issuer;
	char *audience;
	char *jwks_url;
	char *introspect_url;
	char *service_id;
	char *basic_auth;	/* "Authorization: Basic ..." for introspection */
	char *public_url;	/* scheme://host:port, the htu of DPoP proofs */
	int leeway;
};

/* A DPoP proof that was accepted: its key and jti, and when. */
struct seen_proof {
	char key[160];		/* jkt ":" jti */
	int64_t at;
};

/* What one request answers and logs; owned by the request. */
struct request {
	int64_t start_ms;
	char method[16];
	char path[FORUM_PATH_LOG + 1];
	enum route route;
	long thread;
	char *body;
	size_t body_len;
	size_t discarded;
	int too_large;

	unsigned status;
	json_t *reply;			/* JSON body of the answer */
	char challenge[512];		/* WWW-Authenticate, if any */
	const char *challenge2;		/* a second one, offering DPoP */
	int dpop;			/* the token came, or must come, as DPoP */
	const char *allow;		/* Allow, for 405 */
	const char *outcome;		/* the log's "result" */
	json_t *log;			/* extra log fields (agent, jti, ...) */
};

static struct config cfg;
static struct cs_verifier *verifier;
/* cs_verify runs concurrently; reloading keys must be alone. */
static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
/* One JWKS fetch at a time, and not more often than FORUM_JWKS_MIN_MS. */
static pthread_mutex_t fetch_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_fetch_ms = -FORUM_JWKS_MIN_MS;
static _Atomic unsigned keys_generation;
/* The threads; every access to them holds store_lock. */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *threads;		/* object: id (decimal) -> thread */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
/* Proof jtis accepted in the last 2 * FORUM_DPOP_WINDOW s (RFC 9449 §11.1). */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seen_proof seen_proofs[FORUM_DPOP_SEEN];

/* ---------------------------------------------------------------- helpers */

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* now_rfc3339(buf): the wall clock as 2026-11-28T05:14:04.195Z. */
static void
now_rfc3339(char buf[32])
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

/*
 * log_line(msg, fields): write one JSON line {"time", "msg", ...fields} to
 * stderr. Steals fields (which may be NULL).
 */
static void
log_line(const char *msg, json_t *fields)
{
	char when[32];
	json_t *o;
	char *s = NULL;

	now_rfc3339(when);
	o = json_pack("{s:s,s:s}", "time", when, "msg", msg);
	if (o != NULL && fields != NULL)
		json_object_update(o, fields);
	json_decref(fields);
	if (o != NULL)
		s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (s != NULL) {
		pthread_mutex_lock(&log_lock);
		fprintf(stderr, "%s\n", s);
		pthread_mutex_unlock(&log_lock);
	}
	free(s);
	json_decref(o);
}

static void
die(const char *what)
{
	log_line("cannot start", json_pack("{s:s}", "error", what));
	exit(2);
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		die("out of memory");
	return d;
}

/* env_or(name, fallback): a copy of $name, or of fallback if unset/empty. */
static char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0') {
		if (fallback == NULL)
			return NULL;
		v = fallback;
	}
	return xstrdup(v);
}

/* joined(a, b): a newly allocated a + b. */
static char *
joined(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 1;
	char *s = malloc(n);

	if (s == NULL)
		die("out of memory");
	snprintf(s, n, "%s%s", a, b);
	return s;
}

/*
 * sha256_forms(data, len, hex, b64u): the SHA-256 of data as 64 lowercase
 * hex digits and as 43 base64url characters (the two spellings the broker
 * accepts in an action_digest). Returns 0, or -1 if OpenSSL fails.
 */
static int
sha256_forms(const void *data, size_t len, char hex[65], char b64u[44])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned char b64[48];
	unsigned int mdlen = 0;
	size_t i;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32)
		return -1;
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	EVP_EncodeBlock(b64, md, 32);	/* 44 characters, one '=' */
	for (i = 0; i < 43; i++)
		b64u[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
	b64u[43] = '\0';
	return 0;
}

/* ------------------------------------------------------ calls to the broker */

struct sink {
	char *data;
	size_t len;
	int overflow;
};

static size_t
sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	char *nd;

	if (s->len + n > FORUM_MAX_RESPONSE) {
		s->overflow = 1;
		return 0;
	}
	nd = realloc(s->data, s->len + n + 1);
	if (nd == NULL)
		return 0;
	s->data = nd;
	memcpy(s->data + s->len, ptr, n);
	s->len += n;
	s->data[s->len] = '\0';
	return n;
}

/*
 * http_call(url, auth, form, status, body): GET url, or POST the form
 * (application/x-www-form-urlencoded) when form is not NULL, with the
 * extra header auth if not NULL. No redirects, FORUM_HTTP_TIMEOUT seconds,
 * answers capped at FORUM_MAX_RESPONSE. On success returns 0 with the HTTP
 * status in *status and the answer (NUL-terminated, caller frees) in
 * *body; -1 on any transport failure, with *body NULL.
 */
static int
http_call(const char *url, const char *auth, const char *form, long *status,
    char **body)
{
	struct curl_slist *hdrs = NULL, *h;
	struct sink s = { NULL, 0, 0 };
	CURL *c = NULL;
	int rc = -1;

	*status = 0;
	*body = NULL;
	c = curl_easy_init();
	if (c == NULL)
		goto out;
	if (auth != NULL) {
		if ((h = curl_slist_append(hdrs, auth)) == NULL)
			goto out;
		hdrs = h;
	}
	/* No "Expect: 100-continue" round trip for small forms. */
	if ((h = curl_slist_append(hdrs, "Expect:")) == NULL)
		goto out;
	hdrs = h;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)FORUM_HTTP_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)FORUM_HTTP_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "countersign-forum-example");
	if (form != NULL) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(form));
	}
	if (curl_easy_perform(c) != CURLE_OK || s.overflow)
		goto out;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	*body = s.data != NULL ? s.data : xstrdup("");
	s.data = NULL;
	rc = 0;
out:
	free(s.data);
	curl_slist_free_all(hdrs);
	if (c != NULL)
		curl_easy_cleanup(c);
	return rc;
}

/*
 * jwks_fetch(): fetch the JWKS and load it into the verifier. Returns the
 * number of keys loaded, or -1 leaving the old keys in place.
 */
static int
jwks_fetch(void)
{
	char *body = NULL;
	long status;
	int n = -1;

	if (http_call(cfg.jwks_url, NULL, NULL, &status, &body) != 0 ||
	    status != 200) {
		log_line("jwks fetch failed", json_pack("{s:s,s:i}", "url",
		    cfg.jwks_url, "status", (int)status));
		goto out;
	}
	pthread_rwlock_wrlock(&keys_lock);
	n = cs_verifier_load_jwks(verifier, body, strlen(body));
	pthread_rwlock_unlock(&keys_lock);
	if (n > 0)
		atomic_fetch_add(&keys_generation, 1);
	log_line(n > 0 ? "jwks loaded" : "jwks refused", json_pack("{s:s,s:i}",
	    "url", cfg.jwks_url, "keys", n));
out:
	free(body);
	return n;
}

/*
 * jwks_refresh(seen): called after a token named an unknown kid while the
 * keys were at generation seen. Returns 1 if newer keys are now loaded
 * (by this call or by another thread meanwhile), so the token is worth
 * verifying again; 0 if not. Fetches at most once per FORUM_JWKS_MIN_MS,
 * so tokens with made-up kids cannot make the forum hammer the broker.
 */
static int
jwks_refresh(unsigned seen)
{
	int rc = 0;

	pthread_mutex_lock(&fetch_lock);
	if (atomic_load(&keys_generation) != seen) {
		rc = 1;
		goto out;
	}
	if (monotonic_ms() - last_fetch_ms < FORUM_JWKS_MIN_MS)
		goto out;
	last_fetch_ms = monotonic_ms();
	rc = jwks_fetch() > 0;
out:
	pthread_mutex_unlock(&fetch_lock);
	return rc;
}

/* verify(token, c): cs_verify, fetching the JWKS again on an unknown kid. */
static enum cs_verify_result
verify(const char *token, struct cs_claims *c)
{
	unsigned gen = atomic_load(&keys_generation);
	enum cs_verify_result r;

	pthread_rwlock_rdlock(&keys_lock);
	r = cs_verify(verifier, token, c);
	pthread_rwlock_unlock(&keys_lock);
	if (r == CS_VERIFY_UNKNOWN_KEY && jwks_refresh(gen)) {
		pthread_rwlock_rdlock(&keys_lock);
		r = cs_verify(verifier, token, c);
		pthread_rwlock_unlock(&keys_lock);
	}
	return r;
}

/* has_word(list, word): 1 if word is one of the space-separated list. */
static int
has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p = list;

	while ((p = strstr(p, word)) != NULL) {
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

/*
 * introspect(token, c, scope, dpop, active): ask the broker (RFC 7662)
 * whether token is active, which also records this use and, for a
 * single-use token, spends it. dpop, if not NULL, is the request's DPoP
 * proof with its method and URL, forwarded for the broker to check again.
 * *active is 1 only if the broker says active and agrees with the offline
 * check on the jti and the scope. Returns 0, or -1 if the broker could not
 * be asked or gave no usable answer.
 */
struct proof_ctx {
	const char *proof;	/* the DPoP header */
	const char *htm;	/* the request's method */
	const char *htu;	/* public_url + path */
};

static int
introspect(const char *token, const struct cs_claims *c, const char *scope,
    const struct proof_ctx *dpop, int *active)
{
	char *esc = NULL, *form = NULL, *body = NULL;
	char *eproof = NULL, *ehtm = NULL, *ehtu = NULL;
	json_t *doc = NULL;
	const char *jti, *sc;
	size_t n;
	long status = 0;
	int rc = -1;

	*active = 0;
	esc = curl_easy_escape(NULL, token, 0);
	if (esc == NULL)
		goto out;
	n = strlen(esc) + sizeof("token=&token_type_hint=access_token");
	if (dpop != NULL) {
		eproof = curl_easy_escape(NULL, dpop->proof, 0);
		ehtm = curl_easy_escape(NULL, dpop->htm, 0);
		ehtu = curl_easy_escape(NULL, dpop->htu, 0);
		if (eproof == NULL || ehtm == NULL || ehtu == NULL)
			goto out;
		n += strlen(eproof) + strlen(ehtm) + strlen(ehtu) +
		    sizeof("&dpop_proof=&htm=&htu=");
	}
	if ((form = malloc(n)) == NULL)
		goto out;
	if (dpop != NULL)
		snprintf(form, n, "token=%s&token_type_hint=access_token"
		    "&dpop_proof=%s&htm=%s&htu=%s", esc, eproof, ehtm, ehtu);
	else
		snprintf(form, n, "token=%s&token_type_hint=access_token", esc);
	if (http_call(cfg.introspect_url, cfg.basic_auth, form, &status,
	    &body) != 0 || status != 200)
		goto out;
	doc = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(doc) || !json_is_boolean(json_object_get(doc,
	    "active")))
		goto out;
	rc = 0;
	if (!json_is_true(json_object_get(doc, "active")))
		goto out;
	/*
	 * The broker verified the same token with the same code; a different
	 * jti or scope would mean something between us is badly wrong.
	 */
	jti = json_string_value(json_object_get(doc, "jti"));
	sc = json_string_value(json_object_get(doc, "scope"));
	if (jti == NULL || strcmp(jti, c->jti) != 0 || sc == NULL)
		goto out;
	if (!has_word(sc, scope))
		goto out;
	*active = 1;
out:
	if (esc != NULL) {
		OPENSSL_cleanse(esc, strlen(esc));
		curl_free(esc);
	}
	if (form != NULL) {
		OPENSSL_cleanse(form, strlen(form));
		free(form);
	}
	curl_free(eproof);
	curl_free(ehtm);
	curl_free(ehtu);
	json_decref(doc);
	free(body);
	if (rc != 0)
		log_line("introspection failed", json_pack("{s:s,s:i}", "url",
		    cfg.introspect_url, "status", (int)status));
	return rc;
}

/* ------------------------------------------------------------------ answers */

/*
 * answer(rq, status, outcome, error, description): a JSON answer
 * {"error", "error_description"} (error NULL: no body set here).
 */
static void
answer(struct request *rq, unsigned status, const char *outcome,
    const char *error, const char *description)
{
	rq->status = status;
	rq->outcome = outcome;
	if (error != NULL) {
		json_decref(rq->reply);
		rq->reply = json_pack("{s:s,s:s}", "error", error,
		    "error_description", description);
	}
}

/*
 * refuse_token(rq, status, outcome, error, description, scope): an RFC 6750
 * refusal with its WWW-Authenticate challenge, of the DPoP scheme (RFC 9449
 * §7.1) if rq->dpop. error NULL is the answer to a request without a token
 * (§3.1: no error code then). description and scope are our own constants,
 * so they need no quoting.
 */
static void
refuse_token(struct request *rq, unsigned status, const char *outcome,
    const char *error, const char *description, const char *scope)
{
	size_t n;

	/* RFC 9449 §7.1: a DPoP challenge names the algorithms it accepts. */
	n = (size_t)snprintf(rq->challenge, sizeof(rq->challenge), rq->dpop ?
	    "DPoP realm=\"forum\", algs=\"ES256 EdDSA\"" :
	    "Bearer realm=\"forum\"");
	if (error != NULL)
		n += (size_t)snprintf(rq->challenge + n, sizeof(rq->challenge) - n,
		    ", error=\"%s\", error_description=\"%s\"", error, description);
	if (scope != NULL && n < sizeof(rq->challenge))
		snprintf(rq->challenge + n, sizeof(rq->challenge) - n,
		    ", scope=\"%s\"", scope);
	answer(rq, status, outcome, error != NULL ? error : "unauthorized",
	    description);
}

static const char *
verify_description(enum cs_verify_result r)
{
	switch (r) {
	case CS_VERIFY_MALFORMED:	return "the token is malformed";
	case CS_VERIFY_TOO_LARGE:	return "the token is too large";
	case CS_VERIFY_BAD_HEADER:	return "the token header is not ES256 at+jwt";
	case CS_VERIFY_UNKNOWN_KEY:	return "the token is signed by an unknown key";
	case CS_VERIFY_BAD_SIGNATURE:	return "the token signature is invalid";
	case CS_VERIFY_MISSING_CLAIM:	return "the token lacks a required claim";
	case CS_VERIFY_WRONG_ISSUER:	return "the token is from another issuer";
	case CS_VERIFY_WRONG_AUDIENCE:	return "the token is for another audience";
	case CS_VERIFY_EXPIRED:		return "the token has expired";
	case CS_VERIFY_NOT_YET_VALID:	return "the token is not valid yet";
	default:			return "the token is invalid";
	}
}

/* ------------------------------------------------------------------- store */

static int
seed_store(void)
{
	char when[32];
	json_t *t;

	now_rfc3339(when);
	threads = json_object();
	t = json_pack("{s:i,s:s,s:s,s:s,s:s,s:[]}",
	    "id", 42,
	    "title", "Our deploy token showed up in a public CI log. What now?",
	    "author", "mira",
	    "question", "An hour ago the release pipeline printed the registry "
	    "deploy token in a public build log. The log is still up. What do "
	    "we do first, and who needs to know?",
	    "created_at", when,
	    "replies");
	if (threads == NULL || t == NULL ||
	    json_object_set_new(threads, "42", t) != 0)
		return -1;
	return 0;
}

/* thread_get(id): the thread (borrowed; hold store_lock) or NULL. */
static json_t *
thread_get(long id)
{
	char key[24];

	snprintf(key, sizeof(key), "%ld", id);
	return json_object_get(threads, key);
}

/* ---------------------------------------------------------------- requests */

/*
 * parse_path(url, route, id): match /threads/{id} and
 * /threads/{id}/replies, id being 1-9 digits without a leading zero.
 * Returns 0 on a match, -1 otherwise.
 */
static int
parse_path(const char *url, enum route *route, long *id)
{
	const char *p;
	long v = 0;
	int digits = 0;

	if (strncmp(url, "/threads/", 9) != 0)
		return -1;
	p = url + 9;
	if (*p == '0')
		return -1;
	for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++)
		v = v * 10 + (*p - '0');
	if (digits == 0 || digits > 9)
		return -1;
	*id = v;
	if (*p == '\0')
		*route = ROUTE_THREAD;
	else if (strcmp(p, "/replies") == 0)
		*route = ROUTE_REPLIES;
	else
		return -1;
	return 0;
}

/* How many Authorization and DPoP headers a request has. */
struct header_count {
	int authorization;
	int dpop;
};

static enum MHD_Result
count_headers(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct header_count *n = cls;

	(void)kind;
	(void)value;
	if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
		n->authorization++;
	else if (strcasecmp(key, "DPoP") == 0)
		n->dpop++;
	return MHD_YES;
}

enum scheme {
	SCHEME_NONE,		/* no Authorization, or another scheme */
	SCHEME_BEARER,		/* RFC 6750 §2.1 */
	SCHEME_DPOP		/* RFC 9449 §7.1, with the proof in DPoP */
};

/*
 * credentials(conn, token, proof): find the access token of the request
 * (tokens in the query or the body are not accepted) and its DPoP proof,
 * if any. Returns the scheme, with *token (and *proof, or NULL) pointing
 * into the connection's memory; -1 if there are several Authorization or
 * DPoP headers, which would leave it open which one was checked.
 */
static int
credentials(struct MHD_Connection *conn, const char **token,
    const char **proof)
{
	struct header_count n = { 0, 0 };
	enum scheme scheme;
	const char *h;

	*token = NULL;
	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_headers, &n);
	if (n.authorization > 1 || n.dpop > 1)
		return -1;
	*proof = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "DPoP");
	h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION);
	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
		scheme = SCHEME_BEARER;
		h += 7;
	} else if (h != NULL && strncasecmp(h, "DPoP ", 5) == 0) {
		scheme = SCHEME_DPOP;
		h += 5;
	} else
		return SCHEME_NONE;
	for (; *h == ' '; h++)
		;
	*token = h;
	return (int)scheme;
}

/*
 * proof_fresh(jkt, jti): remember that key jkt signed a proof with jti.
 * Returns 1 the first time, 0 for a replay within 2 * FORUM_DPOP_WINDOW
 * seconds (after that the proof's iat is stale anyway), -1 if the table is
 * full of fresh proofs (refused: better than forgetting one).
 */
static int
proof_fresh(const char *jkt, const char *jti)
{
	char key[sizeof(seen_proofs[0].key)];
	int64_t now = monotonic_ms();
	int i, slot = -1, rc = 1;

	if ((size_t)snprintf(key, sizeof(key), "%s:%s", jkt, jti) >= sizeof(key))
		return -1;
	pthread_mutex_lock(&seen_lock);
	for (i = 0; i < FORUM_DPOP_SEEN; i++) {
		if (seen_proofs[i].at != 0 &&
		    now - seen_proofs[i].at > 2 * FORUM_DPOP_WINDOW * 1000)
			seen_proofs[i].at = 0;
		if (seen_proofs[i].at == 0) {
			if (slot < 0)
				slot = i;
			continue;
		}
		if (strcmp(seen_proofs[i].key, key) == 0) {
			rc = 0;
			break;
		}
	}
	if (rc == 1 && slot < 0)
		rc = -1;
	if (rc == 1) {
		memcpy(seen_proofs[slot].key, key, sizeof(key));
		seen_proofs[slot].at = now > 0 ? now : 1;
	}
	pthread_mutex_unlock(&seen_lock);
	return rc;
}

/*
 * check_binding(rq, scheme, token, c, proof, ctx, htu): the sender
 * constraint. A token bound to a key (cnf.jkt) must come with the DPoP
 * scheme and a fresh proof of that key for this request; an unbound token
 * with the Bearer scheme. Returns 0 (with *ctx filled in for a bound
 * token, the proof to forward with the introspection) or -1 with the
 * refusal answered.
 */
static int
check_binding(struct request *rq, enum scheme scheme, const char *token,
    const struct cs_claims *c, const char *proof, struct proof_ctx *ctx,
    char *htu, size_t htucap)
{
	enum cs_dpop_result r;
	char jti[100];
	int fresh;

	if (c->cnf_jkt == NULL) {
		if (scheme == SCHEME_BEARER)
			return 0;
		rq->dpop = 1;
		refuse_token(rq, 401, "dpop_unbound", "invalid_token", "the token "
		    "is not bound to a key: send it with the Bearer scheme", NULL);
		return -1;
	}
	rq->dpop = 1;
	if (scheme != SCHEME_DPOP) {
		refuse_token(rq, 401, "dpop_required", "invalid_token", "the token "
		    "is bound to a key: send it with the DPoP scheme and a proof",
		    NULL);
		return -1;
	}
	if (proof == NULL) {
		refuse_token(rq, 401, "dpop_missing", "invalid_dpop_proof",
		    "a DPoP proof is required", NULL);
		return -1;
	}
	snprintf(htu, htucap, "%s%s", cfg.public_url, rq->path);
	r = cs_verify_dpop_proof(c, token, proof, rq->method, htu,
	    (int64_t)time(NULL), FORUM_DPOP_WINDOW, jti, sizeof(jti));
	if (r != CS_DPOP_OK) {
		json_object_set_new(rq->log, "dpop", json_string(
		    cs_dpop_result_name(r)));
		refuse_token(rq, 401, "dpop_invalid", "invalid_dpop_proof",
		    r == CS_DPOP_WRONG_KEY ? "the proof is signed by another key" :
		    r == CS_DPOP_WRONG_HTM || r == CS_DPOP_WRONG_HTU ? "the proof "
		    "is for another request" : r == CS_DPOP_BAD_IAT ? "the proof is "
		    "not fresh" : r == CS_DPOP_BAD_ATH ? "the proof is for another "
		    "token" : "the proof is invalid", NULL);
		return -1;
	}
	fresh = proof_fresh(c->cnf_jkt, jti);
	if (fresh != 1) {
		refuse_token(rq, 401, fresh == 0 ? "dpop_replay" : "dpop_busy",
		    "invalid_dpop_proof", fresh == 0 ? "the proof was used before" :
		    "too many proofs at once, try again", NULL);
		return -1;
	}
	json_object_set_new(rq->log, "dpop", json_string("ok"));
	ctx->proof = proof;
	ctx->htm = rq->method;
	ctx->htu = htu;
	return 0;
}

enum digest_check {
	DIGEST_MATCH,
	DIGEST_NONE,		/* no forum_post entry with an action_digest */
	DIGEST_MISMATCH,
	DIGEST_OTHER_THREAD,	/* the text matches, approved for another thread */
	DIGEST_UNSEEN		/* the digest matches, the preview is not the text */
};

/* thread_matches(v, id): an absent "thread", or one equal to id. */
static int
thread_matches(json_t *v, long id)
{
	char buf[24];

	if (v == NULL)
		return 1;
	if (json_is_integer(v))
		return json_integer_value(v) == id;
	snprintf(buf, sizeof(buf), "%ld", id);
	return json_is_string(v) && strcmp(json_string_value(v), buf) == 0;
}

/*
 * check_digest(claims_json, thread, body, len, hex, b64u): look for a
 * forum_post entry of the token's authorization_details whose
 * action_digest is "sha256:" followed by hex (any case) or b64u (the
 * digest of body), whose "thread", if it has one, is thread, and whose
 * "preview" is body itself: the approver must have read exactly the text
 * that is posted, not a description an agent wrote next to the digest of
 * something else.
 */
static enum digest_check
check_digest(const char *claims_json, long thread, const char *body,
    size_t len, const char *hex, const char *b64u)
{
	enum digest_check best = DIGEST_NONE;
	json_t *claims, *details, *d, *preview;
	size_t i;

	claims = json_loads(claims_json, 0, NULL);
	details = json_object_get(claims, "authorization_details");
	json_array_foreach(details, i, d) {
		const char *type = json_string_value(json_object_get(d, "type"));
		const char *ad = json_string_value(json_object_get(d,
		    "action_digest"));
		int same;

		if (type == NULL || strcmp(type, "forum_post") != 0 || ad == NULL)
			continue;
		if (best == DIGEST_NONE)
			best = DIGEST_MISMATCH;
		if (strncmp(ad, "sha256:", 7) != 0)
			continue;
		ad += 7;
		same = (strlen(ad) == 64 && strcasecmp(ad, hex) == 0) ||
		    strcmp(ad, b64u) == 0;
		if (!same)
			continue;
		if (!thread_matches(json_object_get(d, "thread"), thread)) {
			if (best != DIGEST_UNSEEN)
				best = DIGEST_OTHER_THREAD;
			continue;
		}
		preview = json_object_get(d, "preview");
		if (json_is_string(preview) && json_string_length(preview) == len &&
		    memcmp(json_string_value(preview), body, len) == 0) {
			best = DIGEST_MATCH;
			break;
		}
		best = DIGEST_UNSEEN;
	}
	json_decref(claims);
	return best;
}

/* approvers(claims_json): a new array of the approval's approvers. */
static json_t *
approvers(const char *claims_json)
{
	json_t *claims = json_loads(claims_json, 0, NULL);
	json_t *a = json_object_get(json_object_get(claims, "approval"),
	    "approvers");
	json_t *copy = json_is_array(a) ? json_deep_copy(a) : json_array();

	json_decref(claims);
	return copy;
}

/*
 * serve_post(rq, token, c, dpop): the checks only a post needs, then the
 * post itself. The token, its proof (dpop, NULL for a bearer token) and
 * its scope were verified by the caller.
 */
static void
serve_post(struct request *rq, const char *token, const struct cs_claims *c,
    const struct proof_ctx *dpop)
{
	char hex[65], b64u[44], digest[72], when[32];
	json_t *reply = NULL, *text = NULL, *t, *list;
	enum digest_check dc;
	int active, full;

	if (rq->body_len == 0) {
		answer(rq, 400, "empty_body", "invalid_request",
		    "the reply is empty");
		return;
	}
	/* json_stringn refuses text that is not UTF-8. */
	text = json_stringn(rq->body, rq->body_len);
	if (text == NULL) {
		answer(rq, 400, "not_utf8", "invalid_request",
		    "the reply is not UTF-8 text");
		return;
	}
	if (sha256_forms(rq->body, rq->body_len, hex, b64u) != 0) {
		answer(rq, 500, "internal", "server_error", "cannot hash");
		goto out;
	}
	snprintf(digest, sizeof(digest), "sha256:%s", hex);
	json_object_set_new(rq->log, "body_digest", json_string(digest));
	dc = check_digest(c->json, rq->thread, rq->body, rq->body_len, hex,
	    b64u);
	if (dc != DIGEST_MATCH) {
		refuse_token(rq, 403, dc == DIGEST_NONE ? "no_action_digest" :
		    dc == DIGEST_OTHER_THREAD ? "other_thread" :
		    dc == DIGEST_UNSEEN ? "preview_mismatch" : "digest_mismatch",
		    "insufficient_scope",
		    dc == DIGEST_NONE ? "the token approves no forum_post "
		    "action_digest" : dc == DIGEST_OTHER_THREAD ? "the approved "
		    "reply is for another thread" : dc == DIGEST_UNSEEN ? "the "
		    "approver was not shown this text: the approved preview is "
		    "not the request body" : "the request body does not "
		    "match the approved action_digest", "forum:post");
		json_object_set_new(rq->reply, "body_digest", json_string(digest));
		goto out;
	}
	pthread_mutex_lock(&store_lock);
	full = json_array_size(json_object_get(thread_get(rq->thread),
	    "replies")) >= FORUM_MAX_REPLIES;
	pthread_mutex_unlock(&store_lock);
	if (full) {
		answer(rq, 507, "thread_full", "thread_full",
		    "the thread has too many replies");
		goto out;
	}
	/* Last, because it spends the token's one use. */
	if (introspect(token, c, "forum:post", dpop, &active) != 0) {
		answer(rq, 503, "introspection_failed", "temporarily_unavailable",
		    "cannot reach the authorization server");
		goto out;
	}
	if (!active) {
		refuse_token(rq, 401, "inactive", "invalid_token", "the token is "
		    "not active: used, revoked, or its agent disabled", NULL);
		goto out;
	}
	now_rfc3339(when);
	pthread_mutex_lock(&store_lock);
	t = thread_get(rq->thread);
	list = json_object_get(t, "replies");
	if (json_array_size(list) >= FORUM_MAX_REPLIES) {
		pthread_mutex_unlock(&store_lock);
		answer(rq, 507, "thread_full", "thread_full",
		    "the thread has too many replies");
		goto out;
	}
	reply = json_pack("{s:I,s:s,s:O,s:s*,s:o,s:s,s:s}",
	    "id", (json_int_t)json_array_size(list) + 1,
	    "author", c->sub,
	    "text", text,
	    "approval", c->approval_id,
	    "approved_by", approvers(c->json),
	    "digest", digest,
	    "posted_at", when);
	/*
	 * The store keeps its own copy, so that this request's answer never
	 * shares a JSON value with what other threads read under the lock.
	 */
	if (reply == NULL ||
	    json_array_append_new(list, json_deep_copy(reply)) != 0) {
		pthread_mutex_unlock(&store_lock);
		answer(rq, 500, "internal", "server_error", "out of memory");
		goto out;
	}
	pthread_mutex_unlock(&store_lock);
	json_object_set(rq->log, "reply_id", json_object_get(reply, "id"));
	json_decref(rq->reply);
	rq->reply = json_pack("{s:I,s:O}", "thread", (json_int_t)rq->thread,
	    "reply", reply);
	answer(rq, 201, "posted", NULL, NULL);
out:
	json_decref(reply);
	json_decref(text);
}

/* serve(rq, conn): authenticate, authorise and answer a routed request. */
static void
serve(struct request *rq, struct MHD_Connection *conn)
{
	const char *scope = rq->route == ROUTE_THREAD ? "forum:read" : "forum:post";
	const char *token, *proof;
	struct proof_ctx ctx = { NULL, NULL, NULL }, *dpop = NULL;
	char htu[1024];
	struct cs_claims c;
	enum cs_verify_result r;
	int active, found, scheme;

	memset(&c, 0, sizeof(c));
	scheme = credentials(conn, &token, &proof);
	switch (scheme) {
	case -1:
		answer(rq, 400, "several_authorization", "invalid_request",
		    "more than one Authorization or DPoP header");
		return;
	case SCHEME_NONE:
		refuse_token(rq, 401, "no_token", NULL,
		    "a bearer token is required", scope);
		rq->challenge2 = "DPoP realm=\"forum\", algs=\"ES256 EdDSA\"";
		return;
	case SCHEME_DPOP:
		rq->dpop = 1;
		break;
	default:
		break;
	}
	r = verify(token, &c);
	if (r == CS_VERIFY_INTERNAL) {
		answer(rq, 500, "internal", "server_error", "out of memory");
		return;
	}
	if (r != CS_VERIFY_OK) {
		refuse_token(rq, 401, cs_verify_result_name(r), "invalid_token",
		    verify_description(r), NULL);
		return;
	}
	json_object_set_new(rq->log, "agent", json_string(c.sub));
	json_object_set_new(rq->log, "jti", json_string(c.jti));
	if (c.approval_id != NULL)
		json_object_set_new(rq->log, "approval",
		    json_string(c.approval_id));
	if (check_binding(rq, (enum scheme)scheme, token, &c, proof, &ctx, htu,
	    sizeof(htu)) != 0)
		goto out;
	if (ctx.proof != NULL)
		dpop = &ctx;
	if (!cs_claims_has_scope(&c, scope)) {
		refuse_token(rq, 403, "insufficient_scope", "insufficient_scope",
		    rq->route == ROUTE_THREAD ? "reading needs the forum:read "
		    "scope" : "posting needs the forum:post scope", scope);
		goto out;
	}
	pthread_mutex_lock(&store_lock);
	found = thread_get(rq->thread) != NULL;
	pthread_mutex_unlock(&store_lock);
	if (!found) {
		answer(rq, 404, "no_such_thread", "not_found", "no such thread");
		goto out;
	}
	if (rq->route == ROUTE_REPLIES) {
		serve_post(rq, token, &c, dpop);
		goto out;
	}
	if (introspect(token, &c, scope, dpop, &active) != 0) {
		answer(rq, 503, "introspection_failed", "temporarily_unavailable",
		    "cannot reach the authorization server");
		goto out;
	}
	if (!active) {
		refuse_token(rq, 401, "inactive", "invalid_token", "the token is "
		    "not active: revoked, or its agent disabled", NULL);
		goto out;
	}
	pthread_mutex_lock(&store_lock);
	json_decref(rq->reply);
	rq->reply = json_deep_copy(thread_get(rq->thread));
	pthread_mutex_unlock(&store_lock);
	if (rq->reply == NULL)
		answer(rq, 500, "internal", "server_error", "out of memory");
	else
		answer(rq, 200, "read", NULL, NULL);
out:
	cs_claims_clear(&c);
}

/* send_answer(rq, conn): queue rq's answer on the connection. */
static enum MHD_Result
send_answer(struct request *rq, struct MHD_Connection *conn)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char *text = NULL;
	size_t len;

	static char oom[] = "{\"error\":\"server_error\"}\n";

	if (rq->reply != NULL)
		text = json_dumps(rq->reply, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (text != NULL) {
		len = strlen(text);
		text[len] = '\n';	/* the NUL becomes a newline for curl users */
		resp = MHD_create_response_from_buffer(len + 1, text,
		    MHD_RESPMEM_MUST_FREE);
	} else {
		/* Out of memory: answer from static memory, stay up. */
		if (rq->status < 400)
			rq->status = 500;
		resp = MHD_create_response_from_buffer(sizeof(oom) - 1, oom,
		    MHD_RESPMEM_PERSISTENT);
	}
	if (resp == NULL) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	    "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (rq->challenge[0] != '\0')
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		    rq->challenge);
	if (rq->challenge2 != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		    rq->challenge2);
	if (rq->allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rq->allow);
	ret = MHD_queue_response(conn, rq->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * access_cb: libmicrohttpd calls it once with the headers, once per chunk
 * of body, and once more at the end of the body. Wrong paths, methods and
 * announced sizes are answered at once; everything else at the end.
 */
static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct request *rq = *con_cls;

	(void)cls;
	(void)version;
	if (rq == NULL) {
		const char *cl;
		const char *want;

		if ((rq = calloc(1, sizeof(*rq))) == NULL)
			return MHD_NO;
		*con_cls = rq;
		rq->start_ms = monotonic_ms();
		rq->log = json_object();
		snprintf(rq->method, sizeof(rq->method), "%s", method);
		snprintf(rq->path, sizeof(rq->path), "%s", url);
		/*
		 * The log is JSON: a path byte that is not printable ASCII
		 * (no route has one) is logged as '?', so the line keeps its
		 * fields. Routing uses url itself.
		 */
		for (char *q = rq->path; *q != '\0'; q++)
			if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
				*q = '?';
		if (strlen(url) > FORUM_PATH_LOG ||
		    parse_path(url, &rq->route, &rq->thread) != 0) {
			answer(rq, 404, "no_route", "not_found", "no such path");
			return send_answer(rq, conn);
		}
		want = rq->route == ROUTE_THREAD ? "GET" : "POST";
		if (strcmp(method, want) != 0) {
			rq->allow = want;
			answer(rq, 405, "wrong_method", "method_not_allowed",
			    rq->route == ROUTE_THREAD ? "threads are read with "
			    "GET" : "replies are posted with POST");
			return send_answer(rq, conn);
		}
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && (strspn(cl, "0123456789") != strlen(cl) ||
		    strlen(cl) > 9 || strtol(cl, NULL, 10) > FORUM_MAX_BODY)) {
			answer(rq, 413, "too_large", "request_too_large",
			    "the body is larger than 65536 bytes");
			return send_answer(rq, conn);
		}
		return MHD_YES;
	}
	if (rq->status != 0) {
		/* Answered on the first call; ignore what else arrives. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		char *nb;

		*upload_data_size = 0;
		if (rq->too_large || rq->body_len + n > FORUM_MAX_BODY) {
			/*
			 * A chunked body past the limit: read on (up to a
			 * point) so the client gets its 413, then hang up.
			 */
			rq->too_large = 1;
			rq->discarded += n;
			return rq->discarded > FORUM_MAX_DISCARD ? MHD_NO : MHD_YES;
		}
		if ((nb = realloc(rq->body, rq->body_len + n + 1)) == NULL)
			return MHD_NO;
		rq->body = nb;
		memcpy(rq->body + rq->body_len, upload_data, n);
		rq->body_len += n;
		rq->body[rq->body_len] = '\0';
		return MHD_YES;
	}
	if (rq->too_large)
		answer(rq, 413, "too_large", "request_too_large",
		    "the body is larger than 65536 bytes");
	else
		serve(rq, conn);
	return send_answer(rq, conn);
}

/* completed_cb: log the request and free everything it owned. */
static void
completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;
	json_t *f;

	(void)cls;
	(void)conn;
	if (rq == NULL)
		return;
	*con_cls = NULL;
	f = json_pack("{s:s,s:s,s:i,s:s,s:I}", "method", rq->method,
	    "path", rq->path, "status", (int)rq->status,
	    "result", rq->outcome != NULL ? rq->outcome : "none",
	    "duration_ms", (json_int_t)(monotonic_ms() - rq->start_ms));
	if (f != NULL && rq->log != NULL)
		json_object_update(f, rq->log);
	if (f != NULL && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
		json_object_set_new(f, "aborted", json_true());
	log_line("request", f);
	json_decref(rq->log);
	json_decref(rq->reply);
	free(rq->body);
	free(rq);
}

/* ----------------------------------------------------------------- startup */

/* parse_listen(s): HOST:PORT or [V6]:PORT into cfg. Returns 0 or -1. */
static int
parse_listen(const char *s)
{
	const char *colon, *host = s;
	size_t hlen;
	char *end;
	long port;

	colon = strrchr(s, ':');
	if (colon == NULL || colon == s)
		return -1;
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hlen < 3 || s[hlen - 1] != ']')
			return -1;
		host = s + 1;
		hlen -= 2;
	}
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
		return -1;
	cfg.listen_host = strndup(host, hlen);
	if (cfg.listen_host == NULL)
		return -1;
	cfg.listen_port = (int)port;
	return 0;
}

/*
 * basic_header(id, secret): "Authorization: Basic base64(urlenc(id) ':'
 * urlenc(secret))", as RFC 6749 §2.3.1 spells client_secret_basic.
 */
static char *
basic_header(const char *id, const char *secret)
{
	char *eid = curl_easy_escape(NULL, id, 0);
	char *esec = curl_easy_escape(NULL, secret, 0);
	char *pair = NULL, *hdr = NULL;
	size_t plen, hlen;

	if (eid == NULL || esec == NULL)
		goto out;
	plen = strlen(eid) + strlen(esec) + 2;
	if ((pair = malloc(plen)) == NULL)
		goto out;
	snprintf(pair, plen, "%s:%s", eid, esec);
	hlen = sizeof("Authorization: Basic ") + 4 * (plen / 3 + 1);
	if ((hdr = malloc(hlen)) == NULL)
		goto out;
	memcpy(hdr, "Authorization: Basic ", 21);
	EVP_EncodeBlock((unsigned char *)hdr + 21, (unsigned char *)pair,
	    (int)strlen(pair));
out:
	if (esec != NULL) {
		OPENSSL_cleanse(esec, strlen(esec));
		curl_free(esec);
	}
	curl_free(eid);
	if (pair != NULL) {
		OPENSSL_cleanse(pair, strlen(pair));
		free(pair);
	}
	return hdr;
}

static void
load_config(void)
{
	char *listen, *secret_env;
	char *secret;

	listen = env_or("FORUM_LISTEN", "127.0.0.1:8090");
	if (parse_listen(listen) != 0)
		die("FORUM_LISTEN must be HOST:PORT with a numeric host");
	free(listen);
	cfg.issuer = env_or("FORUM_ISSUER", NULL);
	if (cfg.issuer == NULL)
		die("FORUM_ISSUER is required (the broker's issuer URL)");
	cfg.audience = env_or("FORUM_AUDIENCE", "https://forum.example");
	{
		char *d1 = joined(cfg.issuer, "/.well-known/jwks.json");
		char *d2 = joined(cfg.issuer, "/oauth2/introspect");

		cfg.jwks_url = env_or("FORUM_JWKS_URL", d1);
		cfg.introspect_url = env_or("FORUM_INTROSPECT_URL", d2);
		free(d1);
		free(d2);
	}
	cfg.service_id = env_or("FORUM_SERVICE_ID", "forum");
	cfg.public_url = env_or("FORUM_PUBLIC_URL", NULL);
	if (cfg.public_url != NULL) {
		size_t n = strlen(cfg.public_url);

		if (strncmp(cfg.public_url, "http://", 7) != 0 &&
		    strncmp(cfg.public_url, "https://", 8) != 0)
			die("FORUM_PUBLIC_URL must be an http or https URL");
		while (n > 0 && cfg.public_url[n - 1] == '/')
			cfg.public_url[--n] = '\0';
	}
	{
		char *l = env_or("FORUM_LEEWAY", "30"), *end;
		long v = strtol(l, &end, 10);

		if (*end != '\0' || end == l || v < 0 || v > 300)
			die("FORUM_LEEWAY must be 0-300 seconds");
		cfg.leeway = (int)v;
		free(l);
	}
	secret_env = getenv("FORUM_SERVICE_SECRET");
	if (secret_env == NULL || *secret_env == '\0')
		die("FORUM_SERVICE_SECRET is required (from countersign service add)");
	secret = xstrdup(secret_env);
	/* Wipe it from our environment (and /proc/PID/environ). */
	OPENSSL_cleanse(secret_env, strlen(secret_env));
	unsetenv("FORUM_SERVICE_SECRET");
	cfg.basic_auth = basic_header(cfg.service_id, secret);
	OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
	if (cfg.basic_auth == NULL)
		die("out of memory");
}

static void
free_config(void)
{
	free(cfg.listen_host);
	free(cfg.issuer);
	free(cfg.audience);
	free(cfg.jwks_url);
	free(cfg.introspect_url);
	free(cfg.service_id);
	free(cfg.public_url);
	if (cfg.basic_auth != NULL)
		OPENSSL_cleanse(cfg.basic_auth, strlen(cfg.basic_auth));
	free(cfg.basic_auth);
	memset(&cfg, 0, sizeof(cfg));
}

int
main(void)
{
	struct addrinfo hints, *ai = NULL;
	struct MHD_Daemon *d = NULL;
	const union MHD_DaemonInfo *info;
	char port[8];
	sigset_t stop;
	int sig = 0, i;

	/*
	 * Block the stop signals before any thread starts, so every thread
	 * inherits the mask and only sigwait below sees them.
	 */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("cannot initialise libcurl");
	load_config();
	if (seed_store() != 0)
		die("out of memory");
	verifier = cs_verifier_new(cfg.issuer, cfg.audience);
	if (verifier == NULL)
		die("out of memory");
	cs_verifier_set_leeway(verifier, cfg.leeway);
	/* The broker may still be starting: try for about five seconds. */
	for (i = 0; i < 25; i++) {
		last_fetch_ms = monotonic_ms();
		if (jwks_fetch() > 0)
			break;
		nanosleep(&(struct timespec){ 0, 200 * 1000000L }, NULL);
	}
	if (i == 25)
		die("cannot load the JWKS");

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", cfg.listen_port);
	if (getaddrinfo(cfg.listen_host, port, &hints, &ai) != 0)
		die("FORUM_LISTEN host must be a numeric address");
	d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG |
	    (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    (uint16_t)cfg.listen_port, NULL, NULL, access_cb, NULL,
	    MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)FORUM_THREADS,
	    MHD_OPTION_CONNECTION_LIMIT, 256u,
	    MHD_OPTION_CONNECTION_TIMEOUT, 10u,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
	    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
	    MHD_OPTION_END);
	freeaddrinfo(ai);
	if (d == NULL)
		die("cannot listen on FORUM_LISTEN");
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (cfg.public_url == NULL) {
		size_t n = strlen(cfg.listen_host) + 32;

		if ((cfg.public_url = malloc(n)) == NULL)
			die("out of memory");
		snprintf(cfg.public_url, n, strchr(cfg.listen_host, ':') != NULL ?
		    "http://[%s]:%d" : "http://%s:%d", cfg.listen_host,
		    info != NULL ? (int)info->port : cfg.listen_port);
	}
	log_line("forum listening", json_pack("{s:s,s:i,s:s,s:s,s:s}",
	    "host", cfg.listen_host,
	    "port", info != NULL ? (int)info->port : cfg.listen_port,
	    "url", cfg.public_url,
	    "issuer", cfg.issuer, "audience", cfg.audience));

	sigwait(&stop, &sig);
	log_line("shutting down", json_pack("{s:i}", "signal", sig));
	MHD_stop_daemon(d);
	cs_verifier_free(verifier);
	json_decref(threads);
	free_config();
	curl_global_cleanup();
	return 0;
}
