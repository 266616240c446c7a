/*
 * http.c: see http.h.
 *
 * libmicrohttpd calls access_cb several times per request: once when the
 * headers are in, once per chunk of body, and once more when the body is
 * complete. We answer in that last call: answering in the first one makes
 * libmicrohttpd close the connection instead of keeping it alive (see
 * docs/architecture.md). Limits that can be judged from the headers alone
 * (a Content-Length over the cap) are answered in the first call, where
 * closing the connection is what we want.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <openssl/rand.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "util.h"

#define MAX_RESP_HEADERS	12
#define MAX_PATH_LOG		200

struct resp_header {
	char *name;
	char *value;
};

struct http_req {
	struct MHD_Connection *conn;
	const struct http_route *route;
	char method[16];
	char path[MAX_PATH_LOG + 1];
	char id[17];
	int64_t start_ms;
	char *body;
	size_t body_len;
	size_t body_cap;
	int overflow;
	int handled;
	unsigned status;
	char *resp_body;
	size_t resp_len;
	char resp_ctype[64];
	struct resp_header headers[MAX_RESP_HEADERS];
	size_t nheaders;
	json_t *logf;
	char peer[INET6_ADDRSTRLEN + 8];
};

static struct MHD_Daemon *daemon_;
static const struct http_route *routes_;
static const struct broker_config *cfg_;

static const struct {
	unsigned status;
	const char *error;
} err_map[CS_ERR__COUNT] = {
	[CS_OK] = { 200, NULL },
	[CS_ERR_INVALID_REQUEST] = { 400, "invalid_request" },
	[CS_ERR_INVALID_CLIENT] = { 401, "invalid_client" },
	[CS_ERR_INVALID_GRANT] = { 400, "invalid_grant" },
	[CS_ERR_UNAUTHORIZED_CLIENT] = { 400, "unauthorized_client" },
	[CS_ERR_UNSUPPORTED_GRANT_TYPE] = { 400, "unsupported_grant_type" },
	[CS_ERR_INVALID_SCOPE] = { 400, "invalid_scope" },
	[CS_ERR_INVALID_TARGET] = { 400, "invalid_target" },
	[CS_ERR_ACCESS_DENIED] = { 403, "access_denied" },
	[CS_ERR_NOT_FOUND] = { 404, "not_found" },
	[CS_ERR_METHOD_NOT_ALLOWED] = { 405, "method_not_allowed" },
	[CS_ERR_CONFLICT] = { 409, "conflict" },
	[CS_ERR_TOO_LARGE] = { 413, "request_too_large" },
	[CS_ERR_UNSUPPORTED_MEDIA_TYPE] = { 415, "unsupported_media_type" },
	[CS_ERR_RATE_LIMITED] = { 429, "rate_limited" },
	[CS_ERR_AUTHORIZATION_PENDING] = { 400, "authorization_pending" },
	[CS_ERR_SLOW_DOWN] = { 400, "slow_down" },
	[CS_ERR_EXPIRED_TOKEN] = { 400, "expired_token" },
	[CS_ERR_REQUEST_DENIED] = { 400, "access_denied" },
	[CS_ERR_INVALID_TOKEN] = { 401, "invalid_token" },
	[CS_ERR_FORBIDDEN] = { 403, "forbidden" },
	[CS_ERR_INTERNAL] = { 500, "server_error" },
	[CS_ERR_UNAVAILABLE] = { 503, "temporarily_unavailable" },
	[CS_ERR_INVALID_DPOP_PROOF] = { 400, "invalid_dpop_proof" },
};

unsigned
http_status_for(enum cs_err code)
{
	if ((unsigned)code >= CS_ERR__COUNT || err_map[code].status == 0)
		return 500;
	return err_map[code].status;
}

const char *
http_oauth_error_for(enum cs_err code)
{
	if ((unsigned)code >= CS_ERR__COUNT || err_map[code].error == NULL)
		return "server_error";
	return err_map[code].error;
}

const char *
http_req_method(const struct http_req *req)
{
	return req->method;
}

const char *
http_req_path(const struct http_req *req)
{
	return req->path;
}

const char *
http_req_id(const struct http_req *req)
{
	return req->id;
}

const char *
http_req_peer(struct http_req *req)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;

	if (req->peer[0] != '\0')
		return req->peer;
	ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || (sa = ci->client_addr) == NULL)
		return "";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, req->peer, sizeof(req->peer));
	} else if (sa->sa_family == AF_INET6) {
		struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;

		/* A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(&a)) {
			inet_ntop(AF_INET, a.s6_addr + 12, req->peer,
			    sizeof(req->peer));
			return req->peer;
		}
		/* One host usually holds a whole /64: key the block. */
		memset(a.s6_addr + 8, 0, 8);
		if (inet_ntop(AF_INET6, &a, req->peer, sizeof(req->peer)) != NULL) {
			size_t n = strlen(req->peer);

			snprintf(req->peer + n, sizeof(req->peer) - n, "/64");
		}
	}
	return req->peer;
}

struct header_count {
	const char *name;
	size_t n;
};

static enum MHD_Result
count_header(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct header_count *hc = cls;

	(void)kind;
	(void)value;
	if (strcasecmp(key, hc->name) == 0)
		hc->n++;
	return MHD_YES;
}

/* RFC 9110 §5.6.2: the characters of a token (a header name). */
static int
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * MHD_get_connection_values callback: clear *cls (an int) at the first
 * header that only a folded line or a stray control character can make.
 * libmicrohttpd 0.9.75 accepts obs-fold but appends the continuation to the
 * header's *name* ("Content-Length:\r\n 40" arrives as "Content-Length40"
 * with an empty value, "X-A: 1\r\n Content-Length: 40" as a name holding
 * ": "), and keeps a bare CR inside a value. A proxy that unfolds or splits
 * such lines would frame the body differently from us.
 */
static enum MHD_Result
check_header(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	static const char *const framing[] = { "content-length",
	    "transfer-encoding" };
	int *ok = cls;
	const unsigned char *p;
	size_t i;

	(void)kind;
	for (p = (const unsigned char *)key; *p != '\0'; p++)
		if (!is_tchar(*p))
			goto bad;
	if (*key == '\0')
		goto bad;
	for (i = 0; i < sizeof(framing) / sizeof(framing[0]); i++)
		if (strncasecmp(key, framing[i], strlen(framing[i])) == 0 &&
		    key[strlen(framing[i])] != '\0')
			goto bad;
	for (p = (const unsigned char *)(value != NULL ? value : ""); *p != '\0';
	    p++)
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			goto bad;
	return MHD_YES;
bad:
	*ok = 0;
	return MHD_NO;
}

const char *
http_req_header(const struct http_req *req, const char *name, size_t *count)
{
	if (count != NULL) {
		struct header_count hc = { name, 0 };

		MHD_get_connection_values(req->conn, MHD_HEADER_KIND,
		    count_header, &hc);
		*count = hc.n;
	}
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
http_req_cookie(const struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, name);
}

const char *
http_req_body(const struct http_req *req, size_t *len)
{
	*len = req->body_len;
	return req->body != NULL ? req->body : "";
}

const char *
http_req_query(const struct http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
	    name);
}

int
http_req_content_type_is(const struct http_req *req, const char *type)
{
	const char *ct = http_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE, NULL);
	size_t n = strlen(type);

	if (ct == NULL)
		return 0;
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, type, n) != 0)
		return 0;
	ct += n;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static void
set_reply(struct http_req *req, unsigned status, const char *ctype,
    char *body, size_t len)
{
	/* The first reply wins; a handler bug must not leak the old body. */
	if (req->status != 0) {
		free(body);
		return;
	}
	req->status = status;
	req->resp_body = body;
	req->resp_len = len;
	snprintf(req->resp_ctype, sizeof(req->resp_ctype), "%s", ctype);
}

void
http_reply_json(struct http_req *req, unsigned status, json_t *json)
{
	char *body = json != NULL ? json_dumps(json, JSON_COMPACT) : NULL;

	json_decref(json);
	if (body == NULL) {
		set_reply(req, 500, "application/json",
		    strdup("{\"error\":\"server_error\"}"), 24);
		return;
	}
	set_reply(req, status, "application/json", body, strlen(body));
}

void
http_reply_error(struct http_req *req, const struct cs_error *err)
{
	json_t *j;

	j = json_pack("{s:s, s:s}", "error", http_oauth_error_for(err->code),
	    "error_description", err->desc);
	if (err->code == CS_ERR_UNAVAILABLE)
		http_add_header(req, "Retry-After", "1");
	http_reply_json(req, http_status_for(err->code), j);
}

void
http_reply_errorf(struct http_req *req, enum cs_err code, const char *fmt, ...)
{
	struct cs_error err;
	va_list ap;

	err.code = code;
	va_start(ap, fmt);
	vsnprintf(err.desc, sizeof(err.desc), fmt, ap);
	va_end(ap);
	http_reply_error(req, &err);
}

void
http_reply_bytes(struct http_req *req, unsigned status,
    const char *content_type, const char *body, size_t len)
{
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		set_reply(req, 500, "application/json",
		    strdup("{\"error\":\"server_error\"}"), 24);
		return;
	}
	memcpy(copy, body, len);
	copy[len] = '\0';
	set_reply(req, status, content_type, copy, len);
}

void
http_add_header(struct http_req *req, const char *name, const char *value)
{
	struct resp_header *h;

	if (req->nheaders == MAX_RESP_HEADERS)
		return;
	h = &req->headers[req->nheaders];
	h->name = strdup(name);
	h->value = strdup(value);
	if (h->name == NULL || h->value == NULL) {
		free(h->name);
		free(h->value);
		return;
	}
	req->nheaders++;
}

void
http_log_field(struct http_req *req, const char *key, const char *value)
{
	if (req->logf == NULL)
		req->logf = json_object();
	if (req->logf != NULL && value != NULL)
		json_object_set_new(req->logf, key, json_string(value));
}

static int
has_header(const struct http_req *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return 1;
	return 0;
}

static enum MHD_Result
send_reply(struct http_req *req)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t i;

	if (req->status == 0) {
		/* A handler that chose no reply is a bug; fail closed. */
		log_fields(LOG_LEVEL_ERROR, "handler set no reply",
		    json_pack("{s:s}", "path", req->path));
		http_reply_errorf(req, CS_ERR_INTERNAL, "internal error");
	}
	resp = MHD_create_response_from_buffer(req->resp_len, req->resp_body,
	    MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
		return MHD_NO;
	req->resp_body = NULL;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	    req->resp_ctype);
	for (i = 0; i < req->nheaders; i++)
		MHD_add_response_header(resp, req->headers[i].name,
		    req->headers[i].value);
	if (!has_header(req, "Cache-Control")) {
		/* Everything here is per-client or secret unless said otherwise. */
		MHD_add_response_header(resp, "Cache-Control", "no-store");
		MHD_add_response_header(resp, "Pragma", "no-cache");
	}
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	if (!has_header(req, "Content-Security-Policy"))
		MHD_add_response_header(resp, "Content-Security-Policy",
		    "default-src 'none'; frame-ancestors 'none'");
	MHD_add_response_header(resp, "X-Request-Id", req->id);
	ret = MHD_queue_response(req->conn, req->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int
route_matches(const struct http_route *r, const char *path)
{
	if (r->prefix)
		return strncmp(r->path, path, strlen(r->path)) == 0 &&
		    path[strlen(r->path)] != '\0';
	return strcmp(r->path, path) == 0;
}

static const struct http_route *
find_route(const char *method, const char *path, int *path_known)
{
	const struct http_route *r;

	*path_known = 0;
	for (r = routes_; r->method != NULL; r++) {
		if (!route_matches(r, path))
			continue;
		*path_known = 1;
		if (strcmp(r->method, method) == 0 ||
		    (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
			return r;
	}
	return NULL;
}

static void
reply_no_route(struct http_req *req, int path_known)
{
	const struct http_route *r;
	char allow[64] = "";

	if (!path_known) {
		http_reply_errorf(req, CS_ERR_NOT_FOUND, "no such endpoint");
		return;
	}
	for (r = routes_; r->method != NULL; r++) {
		if (!route_matches(r, req->path) || strstr(allow, r->method) != NULL)
			continue;
		if (allow[0] != '\0')
			strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
		strncat(allow, r->method, sizeof(allow) - strlen(allow) - 1);
		if (strcmp(r->method, "GET") == 0)
			strncat(allow, ", HEAD", sizeof(allow) - strlen(allow) - 1);
	}
	http_add_header(req, "Allow", allow);
	http_reply_errorf(req, CS_ERR_METHOD_NOT_ALLOWED,
	    "method not allowed on this endpoint");
}

static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct http_req *req = *con_cls;
	int path_known;

	(void)cls;
	(void)version;
	if (req == NULL) {
		const char *cl;
		unsigned char rnd[8];
		size_t i;
		int64_t clen;

		req = calloc(1, sizeof(*req));
		if (req == NULL)
			return MHD_NO;
		*con_cls = req;
		req->conn = conn;
		req->start_ms = util_monotonic_ms();
		snprintf(req->method, sizeof(req->method), "%s", method);
		snprintf(req->path, sizeof(req->path), "%s", url);
		/* A request id to correlate log lines; not a secret. */
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			memset(rnd, 0, sizeof(rnd));
		for (i = 0; i < sizeof(rnd); i++)
			snprintf(req->id + 2 * i, 3, "%02x", rnd[i]);
		req->route = find_route(method, url, &path_known);
		if (strlen(url) > MAX_PATH_LOG)
			req->route = NULL;
		if (req->route == NULL) {
			reply_no_route(req, path_known);
			req->handled = 1;
			return send_reply(req);
		}
		/*
		 * Request smuggling: a body framed two ways, or two lengths,
		 * or a header mangled by line folding, could be read
		 * differently by a proxy in front of us. Refuse it outright
		 * (and the connection closes with the answer).
		 */
		{
			struct header_count ncl = { MHD_HTTP_HEADER_CONTENT_LENGTH, 0 };
			struct header_count nte = { MHD_HTTP_HEADER_TRANSFER_ENCODING, 0 };
			int well_formed = 1;

			MHD_get_connection_values(conn, MHD_HEADER_KIND,
			    check_header, &well_formed);
			if (!well_formed) {
				http_reply_errorf(req, CS_ERR_INVALID_REQUEST,
				    "malformed header line (folded, or with a "
				    "control character)");
				req->handled = 1;
				return send_reply(req);
			}

			MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header,
			    &ncl);
			MHD_get_connection_values(conn, MHD_HEADER_KIND, count_header,
			    &nte);
			if (ncl.n > 1 || nte.n > 1 || (ncl.n > 0 && nte.n > 0)) {
				http_reply_errorf(req, CS_ERR_INVALID_REQUEST, "ambiguous "
				    "message framing (Content-Length and "
				    "Transfer-Encoding)");
				req->handled = 1;
				return send_reply(req);
			}
		}
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && (util_parse_int64(cl, 0, INT64_MAX, &clen) != 0 ||
		    (uint64_t)clen > cfg_->max_body)) {
			http_reply_errorf(req, CS_ERR_TOO_LARGE,
			    "request body larger than %zu bytes", cfg_->max_body);
			req->handled = 1;
			return send_reply(req);
		}
		return MHD_YES;
	}
	if (req->handled) {
		/* Already answered in the first call; swallow any body. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (req->overflow || req->body_len + n > cfg_->max_body) {
			/*
			 * A chunked body past the cap. libmicrohttpd cannot
			 * answer mid-body, so drop the connection.
			 */
			req->overflow = 1;
			return MHD_NO;
		}
		/*
		 * connection_timeout only measures silence: a body sent a
		 * byte at a time, just often enough, would hold this worker's
		 * connection for as long as the client likes. The whole body
		 * gets body_timeout from the end of the headers.
		 */
		if (util_monotonic_ms() - req->start_ms >
		    (int64_t)cfg_->body_timeout * 1000) {
			req->overflow = 1;
			return MHD_NO;
		}
		if (req->body_len + n + 1 > req->body_cap) {
			size_t cap = req->body_cap == 0 ? 1024 : req->body_cap;
			char *nb;

			while (cap < req->body_len + n + 1)
				cap *= 2;
			if (cap > cfg_->max_body + 1)
				cap = cfg_->max_body + 1;
			nb = realloc(req->body, cap);
			if (nb == NULL)
				return MHD_NO;
			req->body = nb;
			req->body_cap = cap;
		}
		memcpy(req->body + req->body_len, upload_data, n);
		req->body_len += n;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	}
	req->handled = 1;
	{
		enum MHD_Result ret;

		log_set_request(req->id);
		req->route->handler(req);
		ret = send_reply(req);
		log_set_request(NULL);
		return ret;
	}
}

static void
completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct http_req *req = *con_cls;
	json_t *f;
	size_t i;

	(void)cls;
	(void)conn;
	if (req == NULL)
		return;
	*con_cls = NULL;
	metrics_request(req->route != NULL ? req->route->path : "unmatched",
	    req->status, (double)(util_monotonic_ms() - req->start_ms) / 1000.0);
	if (log_enabled(LOG_LEVEL_INFO)) {
		f = req->logf != NULL ? req->logf : json_object();
		req->logf = NULL;
		json_object_set_new(f, "request_id", json_string(req->id));
		json_object_set_new(f, "method", json_string(req->method));
		json_object_set_new(f, "path", json_string(req->path));
		json_object_set_new(f, "endpoint", json_string(
		    req->route != NULL ? req->route->path : "unmatched"));
		json_object_set_new(f, "status", json_integer(req->status));
		json_object_set_new(f, "duration_ms",
		    json_integer(util_monotonic_ms() - req->start_ms));
		if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
			json_object_set_new(f, "aborted", json_true());
		log_fields(LOG_LEVEL_INFO, "request", f);
	}
	json_decref(req->logf);
	if (req->body != NULL) {
		/* Bodies carry client secrets. */
		util_secure_zero(req->body, req->body_cap);
		free(req->body);
	}
	free(req->resp_body);
	for (i = 0; i < req->nheaders; i++) {
		free(req->headers[i].name);
		free(req->headers[i].value);
	}
	free(req);
}

static void mhd_logger(void *, const char *, va_list)
    __attribute__((format(printf, 2, 0)));

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	log_fields(LOG_LEVEL_DEBUG, "libmicrohttpd", json_pack("{s:s}",
	    "detail", buf));
}

int
http_start(const struct broker_config *cfg, const struct http_route *routes)
{
	struct addrinfo hints, *ai = NULL;
	char port[8];
	unsigned flags;
	int rc;

	cfg_ = cfg;
	routes_ = routes;
	/*
	 * libmicrohttpd can be built without TLS, or with a GnuTLS too old
	 * for the certificate callback; say so instead of failing to start
	 * with a vague error.
	 */
	if (tls_enabled(cfg) &&
	    (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
	    MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) !=
	    MHD_YES)) {
		log_error("tls_cert_file is set but this libmicrohttpd has no "
		    "TLS with certificate callbacks; use a reverse proxy");
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", cfg->listen_port);
	rc = getaddrinfo(cfg->listen_host, port, &hints, &ai);
	if (rc != 0) {
		log_error("listen address %s: %s (use a numeric address)",
		    cfg->listen_host, gai_strerror(rc));
		return -1;
	}
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	{
		struct MHD_OptionItem common[] = {
			{ MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr },
			{ MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, NULL },
			{ MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL },
			{ MHD_OPTION_PER_IP_CONNECTION_LIMIT,
			    cfg->max_connections_per_ip, NULL },
			{ MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout,
			    NULL },
			{ MHD_OPTION_CONNECTION_MEMORY_LIMIT,
			    (intptr_t)cfg->max_header, NULL },
			{ MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL },
			{ MHD_OPTION_END, 0, NULL },
		};

		/*
		 * With TLS the certificate comes from tls.c at each
		 * handshake (never from a file libmicrohttpd holds), so that
		 * SIGHUP can replace it while the listener stays open.
		 */
		if (tls_enabled(cfg))
			daemon_ = MHD_start_daemon(flags | MHD_USE_TLS,
			    (uint16_t)cfg->listen_port, NULL, NULL,
			    access_cb, NULL,
			    MHD_OPTION_HTTPS_CERT_CALLBACK, tls_cert_callback(),
			    MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
			    MHD_OPTION_ARRAY, common,
			    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
			    MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
			    MHD_OPTION_END);
		else
			daemon_ = MHD_start_daemon(flags,
			    (uint16_t)cfg->listen_port, NULL, NULL,
			    access_cb, NULL,
			    MHD_OPTION_ARRAY, common,
			    MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
			    MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
			    MHD_OPTION_END);
	}
	freeaddrinfo(ai);
	if (daemon_ == NULL) {
		log_error("cannot listen on %s:%d", cfg->listen_host,
		    cfg->listen_port);
		return -1;
	}
	return 0;
}

void
http_stop(void)
{
	if (daemon_ != NULL)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}
