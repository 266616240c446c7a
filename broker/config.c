/*
 * config.c: see config.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "util.h"

enum setting_type { T_STRING, T_DURATION, T_INT, T_SIZE, T_LISTEN, T_LEVEL };

struct setting {
	const char *key;	/* file key; env is COUNTERSIGN_ + upper(key) */
	enum setting_type type;
	size_t offset;
	size_t size;		/* for strings: buffer size */
	int64_t min, max;	/* for numbers */
};

#define S(k, t, f, mn, mx) \
	{ k, t, offsetof(struct broker_config, f), \
	  sizeof(((struct broker_config *)0)->f), mn, mx }

static const struct setting settings[] = {
	S("database_url", T_STRING, database_url, 0, 0),
	S("migrate_database_url", T_STRING, migrate_database_url, 0, 0),
	S("listen", T_LISTEN, listen_host, 0, 0),
	S("issuer", T_STRING, issuer, 0, 0),
	S("master_key_file", T_STRING, master_key_file, 0, 0),
	S("tls_cert_file", T_STRING, tls_cert_file, 0, 0),
	S("tls_key_file", T_STRING, tls_key_file, 0, 0),
	S("default_ttl", T_DURATION, default_ttl, 1, 86400),
	S("max_ttl", T_DURATION, max_ttl, 1, 86400),
	S("threads", T_INT, threads, 1, 256),
	S("max_body", T_SIZE, max_body, 1024, 16 * 1024 * 1024),
	S("max_header", T_SIZE, max_header, 4096, 1024 * 1024),
	S("connection_timeout", T_INT, connection_timeout, 1, 3600),
	S("body_timeout", T_INT, body_timeout, 1, 3600),
	S("max_connections", T_INT, max_connections, 1, 100000),
	S("max_connections_per_ip", T_INT, max_connections_per_ip, 0, 100000),
	S("db_connect_timeout", T_INT, db_connect_timeout, 1, 60),
	S("db_pool", T_INT, db_pool, 1, 1024),
	S("db_statement_timeout", T_INT, db_statement_timeout, 1, 600000),
	S("key_refresh", T_DURATION, key_refresh, 1, 86400),
	S("key_retire_margin", T_INT, key_retire_margin, 0, 86400),
	S("audit_gap_grace", T_INT, audit_gap_grace, 1, 86400),
	S("audit_seal", T_INT, audit_seal, 0, 1),
	S("rate_token", T_INT, rate_token, 0, 10000000),
	S("rate_bc_authorize", T_INT, rate_bc_authorize, 0, 10000000),
	S("rate_auth_failures", T_INT, rate_auth_failures, 0, 10000000),
	S("rate_scopes", T_STRING, rate_scopes, 0, 0),
	S("rate_introspect", T_INT, rate_introspect, 0, 10000000),
	S("rate_approver", T_INT, rate_approver, 0, 10000000),
	S("cache_ttl_ms", T_INT, cache_ttl_ms, 0, 60000),
	S("verify_cache", T_INT, verify_cache, 0, 1000000),
	S("group_commit", T_INT, group_commit, 0, 8),
	S("group_commit_window", T_INT, group_commit_window, 0, 100000),
	S("log_level", T_LEVEL, log_level, 0, 0),
	S("approval_timeout", T_DURATION, approval_timeout, 10, 86400),
	S("poll_interval", T_INT, poll_interval, 1, 60),
	S("webhook_url", T_STRING, webhook_url, 0, 0),
	S("webhook_timeout", T_INT, webhook_timeout, 1, 60),
	S("ui_session_ttl", T_DURATION, ui_session_ttl, 60, 7 * 86400),
	S("ui_session_idle", T_DURATION, ui_session_idle, 2, 7 * 86400),
	S("ui_cookie_secure", T_INT, ui_cookie_secure, 0, 1),
	S("approver_key_ttl", T_DURATION, approver_key_ttl, 0,
	    UTIL_DURATION_MAX),
};

void
config_defaults(struct broker_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->database_url, sizeof(cfg->database_url),
	    "postgresql:///countersign");
	snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
	cfg->listen_port = 8080;
	cfg->default_ttl = 300;
	cfg->max_ttl = 3600;
	cfg->threads = 64;
	cfg->max_body = 65536;
	cfg->max_header = 32768;
	cfg->connection_timeout = 10;
	cfg->body_timeout = 30;
	cfg->max_connections = 1024;
	cfg->max_connections_per_ip = 0;
	cfg->db_connect_timeout = 3;
	cfg->db_pool = 16;
	cfg->db_statement_timeout = 5000;
	cfg->key_refresh = 30;
	cfg->key_retire_margin = 60;
	cfg->audit_gap_grace = 60;
	cfg->audit_seal = 1;
	cfg->rate_token = 6000;
	cfg->rate_bc_authorize = 30;
	cfg->rate_auth_failures = 30;
	cfg->rate_introspect = 60000;
	cfg->rate_approver = 600;
	cfg->cache_ttl_ms = 1000;
	cfg->verify_cache = 4096;
	cfg->group_commit = 2;
	cfg->group_commit_window = 0;
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->approval_timeout = 600;
	cfg->poll_interval = 5;
	cfg->webhook_timeout = 5;
	cfg->ui_session_ttl = 8 * 3600;
	cfg->ui_session_idle = 30 * 60;
	cfg->ui_cookie_secure = 0;
	cfg->approver_key_ttl = 90 * 86400;
}

static int
set_listen(struct broker_config *cfg, const char *v, char *errbuf,
    size_t errlen)
{
	const char *colon = strrchr(v, ':');
	const char *host = v;
	size_t hlen;
	int64_t port;

	if (colon == NULL || util_parse_int64(colon + 1, 1, 65535, &port) != 0) {
		snprintf(errbuf, errlen, "listen: expected HOST:PORT");
		return -1;
	}
	hlen = (size_t)(colon - v);
	/* [::1]:8080 */
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(cfg->listen_host)) {
		snprintf(errbuf, errlen, "listen: bad host");
		return -1;
	}
	memcpy(cfg->listen_host, host, hlen);
	cfg->listen_host[hlen] = '\0';
	cfg->listen_port = (int)port;
	return 0;
}

int
config_set(struct broker_config *cfg, const char *key, const char *value,
    char *errbuf, size_t errlen)
{
	const struct setting *s = NULL;
	char *field;
	int64_t v;
	size_t i;

	for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].key, key) == 0)
			s = &settings[i];
	if (s == NULL) {
		snprintf(errbuf, errlen, "unknown setting '%.64s'", key);
		return -1;
	}
	field = (char *)cfg + s->offset;
	switch (s->type) {
	case T_STRING:
		if (strlen(value) >= s->size) {
			snprintf(errbuf, errlen, "%s: value too long", key);
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case T_LISTEN:
		return set_listen(cfg, value, errbuf, errlen);
	case T_DURATION:
		/* "0" is a duration only where 0 means "off" or "never". */
		if (s->min == 0 && strcmp(value, "0") == 0)
			v = 0;
		else if (util_parse_duration(value, &v) != 0 || v < s->min ||
		    v > s->max) {
			snprintf(errbuf, errlen,
			    "%s: expected a duration such as 300, 5m or 1h "
			    "between %llds and %llds", key, (long long)s->min,
			    (long long)s->max);
			return -1;
		}
		if (s->size == sizeof(int64_t))
			memcpy(field, &v, sizeof(v));
		else {
			int iv = (int)v;

			memcpy(field, &iv, sizeof(iv));
		}
		return 0;
	case T_INT:
	case T_SIZE:
		if (util_parse_int64(value, s->min, s->max, &v) != 0) {
			snprintf(errbuf, errlen,
			    "%s: expected an integer between %lld and %lld",
			    key, (long long)s->min, (long long)s->max);
			return -1;
		}
		if (s->type == T_SIZE) {
			size_t sv = (size_t)v;

			memcpy(field, &sv, sizeof(sv));
		} else {
			int iv = (int)v;

			memcpy(field, &iv, sizeof(iv));
		}
		return 0;
	case T_LEVEL:
		if (strcmp(value, "debug") == 0)
			cfg->log_level = LOG_LEVEL_DEBUG;
		else if (strcmp(value, "info") == 0)
			cfg->log_level = LOG_LEVEL_INFO;
		else if (strcmp(value, "warn") == 0)
			cfg->log_level = LOG_LEVEL_WARN;
		else if (strcmp(value, "error") == 0)
			cfg->log_level = LOG_LEVEL_ERROR;
		else {
			snprintf(errbuf, errlen,
			    "log_level: expected debug, info, warn or error");
			return -1;
		}
		return 0;
	}
	return -1;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

int
config_parse_text(struct broker_config *cfg, const char *name, char *text,
    size_t len, char *errbuf, size_t errlen)
{
	char *line, *next;
	size_t lineno = 0;

	if (memchr(text, '\0', len) != NULL) {
		snprintf(errbuf, errlen, "%.200s: contains a NUL byte", name);
		return -1;
	}
	for (line = text; line != NULL; line = next) {
		char *eq, *key, *val, sub[256];

		lineno++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		line = trim(line);
		if (*line == '\0' || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (eq == NULL) {
			snprintf(errbuf, errlen, "%.200s:%zu: expected key = value",
			    name, lineno);
			return -1;
		}
		*eq = '\0';
		key = trim(line);
		val = trim(eq + 1);
		/* Optional double quotes around a value. */
		if (strlen(val) >= 2 && val[0] == '"' && val[strlen(val) - 1] == '"') {
			val[strlen(val) - 1] = '\0';
			val++;
		}
		if (config_set(cfg, key, val, sub, sizeof(sub)) != 0) {
			snprintf(errbuf, errlen, "%.200s:%zu: %s", name, lineno, sub);
			return -1;
		}
	}
	return 0;
}

static int
load_file(const char *path, struct broker_config *cfg, char *errbuf,
    size_t errlen)
{
	char *text = NULL;
	size_t len;
	int rc;

	if (util_read_file(path, CONFIG_MAX_FILE, &text, &len) != 0) {
		snprintf(errbuf, errlen, "cannot read config file %.200s", path);
		return -1;
	}
	rc = config_parse_text(cfg, path, text, len, errbuf, errlen);
	free(text);
	return rc;
}

int
config_load(const char *path, struct broker_config *cfg, char *errbuf,
    size_t errlen)
{
	size_t i;

	config_defaults(cfg);
	if (path != NULL && load_file(path, cfg, errbuf, errlen) != 0)
		return -1;
	for (i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		char env[64], sub[256];
		const char *v;
		size_t k;

		snprintf(env, sizeof(env), "COUNTERSIGN_%s", settings[i].key);
		for (k = 12; env[k] != '\0'; k++)
			env[k] = (char)toupper((unsigned char)env[k]);
		v = getenv(env);
		if (v == NULL || *v == '\0')
			continue;
		if (config_set(cfg, settings[i].key, v, sub, sizeof(sub)) != 0) {
			snprintf(errbuf, errlen, "%s: %s", env, sub);
			return -1;
		}
	}
	if ((cfg->tls_cert_file[0] == '\0') != (cfg->tls_key_file[0] == '\0')) {
		snprintf(errbuf, errlen, "tls_cert_file and tls_key_file go "
		    "together: set both for HTTPS, or neither");
		return -1;
	}
	if (cfg->issuer[0] == '\0') {
		int ipv6 = strchr(cfg->listen_host, ':') != NULL;

		snprintf(cfg->issuer, sizeof(cfg->issuer), "%s://%s%s%s:%d",
		    cfg->tls_cert_file[0] != '\0' ? "https" : "http",
		    ipv6 ? "[" : "", cfg->listen_host, ipv6 ? "]" : "",
		    cfg->listen_port);
	}
	/* An issuer with a trailing slash makes every endpoint URL ambiguous. */
	if (strlen(cfg->issuer) > 1 && cfg->issuer[strlen(cfg->issuer) - 1] == '/')
		cfg->issuer[strlen(cfg->issuer) - 1] = '\0';
	if (strncmp(cfg->issuer, "https://", 8) != 0 &&
	    strncmp(cfg->issuer, "http://", 7) != 0) {
		snprintf(errbuf, errlen, "issuer must be an http(s) URL");
		return -1;
	}
	if (cfg->webhook_url[0] != '\0' &&
	    strncmp(cfg->webhook_url, "https://", 8) != 0 &&
	    strncmp(cfg->webhook_url, "http://", 7) != 0) {
		snprintf(errbuf, errlen, "webhook_url must be an http(s) URL");
		return -1;
	}
	if (cfg->default_ttl > cfg->max_ttl) {
		snprintf(errbuf, errlen, "default_ttl must not exceed max_ttl");
		return -1;
	}
	return 0;
}
