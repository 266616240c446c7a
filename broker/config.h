/*
 * config.h: the broker's settings, from defaults, then a config file, then
 * the environment (COUNTERSIGN_*), each overriding the one before. The
 * struct is filled once at start-up and read-only afterwards.
 * docs/configuration.md lists every setting.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_FILE		65536

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR
};

struct broker_config {
	char database_url[1024];	/* libpq conninfo or URL */
	char migrate_database_url[1024];	/* owner's, for migrate only */
	char listen_host[256];
	int listen_port;
	char issuer[512];		/* iss; derived from listen if unset */
	char master_key_file[1024];
	char tls_cert_file[1024];	/* PEM chain; "" for plain HTTP */
	char tls_key_file[1024];	/* PEM private key of its leaf */
	int64_t default_ttl;		/* seconds, when no lifetime requested */
	int64_t max_ttl;		/* seconds, global ceiling */
	int threads;			/* HTTP worker threads */
	size_t max_body;		/* bytes */
	size_t max_header;		/* bytes of header memory per connection */
	int connection_timeout;		/* seconds of inactivity */
	int body_timeout;		/* seconds a request body may take */
	int max_connections;
	int max_connections_per_ip;
	int db_connect_timeout;		/* seconds */
	int db_pool;			/* connections shared by the HTTP workers */
	int db_statement_timeout;	/* milliseconds */
	int key_refresh;		/* seconds between signing-key reloads */
	int key_retire_margin;		/* seconds a previous key outlives max_ttl */
	int audit_gap_grace;		/* seconds before a missing seq is a gap */
	int audit_seal;			/* 1: run the sealer (0 only to measure) */
	int rate_token;			/* token requests per agent per minute */
	int rate_bc_authorize;		/* bc-authorize requests per agent per minute */
	int rate_auth_failures;		/* failed authentications per client id per minute */
	char rate_scopes[1024];		/* "SCOPE=N,...": per agent per scope per minute */
	int rate_introspect;		/* introspection requests per service per minute */
	int rate_approver;		/* approver API requests per approver per minute */
	int cache_ttl_ms;		/* read-path caches (0: off) */
	int verify_cache;		/* tokens introspection remembers as verified */
	int group_commit;		/* committer threads (0: insert one by one) */
	int group_commit_window;	/* microseconds a batch waits for company */
	int64_t approval_timeout;	/* seconds a step-up request lives */
	int poll_interval;		/* CIBA polling interval, seconds */
	char webhook_url[1024];		/* approver notifications; "" for none */
	int webhook_timeout;		/* seconds per delivery attempt */
	int64_t ui_session_ttl;		/* seconds a web page sign-in lasts */
	int64_t ui_session_idle;	/* seconds unused before a sign-in ends */
	int64_t approver_key_ttl;	/* seconds a new approver key lasts; 0: ever */
	int ui_cookie_secure;		/* 1: the page is reached over https */
	enum log_level log_level;
};

/*
 * config_load(path, cfg, errbuf, errlen): fill cfg from defaults, the file
 * at path (NULL for none) and the environment. The file holds "key = value"
 * lines (keys as in docs/configuration.md, '#' starts a comment line).
 * Unknown keys and bad values are errors, so a typo cannot silently weaken
 * a setting. Returns 0, or -1 with a message in errbuf.
 */
int config_load(const char *path, struct broker_config *cfg, char *errbuf,
    size_t errlen);

/*
 * config_set(cfg, key, value, errbuf, errlen): apply one setting by its
 * file key (e.g. "max_ttl"). Returns 0 or -1 with a message.
 */
int config_set(struct broker_config *cfg, const char *key, const char *value,
    char *errbuf, size_t errlen);

/*
 * config_parse_text(cfg, name, text, len, errbuf, errlen): apply the
 * "key = value" lines of a config file held in text (len bytes followed by
 * a NUL; modified in place). name labels error messages. Returns 0 or -1.
 */
int config_parse_text(struct broker_config *cfg, const char *name, char *text,
    size_t len, char *errbuf, size_t errlen);

/* config_defaults(cfg): the built-in defaults. */
void config_defaults(struct broker_config *cfg);

#endif
