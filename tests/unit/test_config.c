/*
 * test_config.c: unit tests for the broker's settings (config.c).
 *
 * A typo in a config file must never silently weaken a setting, so most of
 * this file checks that unknown keys, out-of-range numbers and malformed
 * values are refused, and that a refused value leaves the old one in place.
 * config_load is run against real temporary files and real environment
 * variables, which this process sets and clears itself.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

/* Every setting's key; the environment name is COUNTERSIGN_ + upper(key). */
static const char *const keys[] = {
	"database_url", "listen", "issuer", "master_key_file", "default_ttl",
	"max_ttl", "threads", "max_body", "max_header", "connection_timeout",
	"max_connections", "max_connections_per_ip", "db_connect_timeout",
	"db_statement_timeout", "key_refresh", "log_level", "approval_timeout",
	"poll_interval", "webhook_url", "webhook_timeout", "ui_session_ttl",
	"ui_session_idle",
	"ui_cookie_secure", "tls_cert_file", "tls_key_file",
};

static void
env_name(const char *key, char *buf, size_t cap)
{
	size_t i;

	snprintf(buf, cap, "COUNTERSIGN_%s", key);
	for (i = 12; buf[i] != '\0'; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - 'a' + 'A');
}

/* Remove every COUNTERSIGN_* setting from this process's environment. */
static void
env_clear(void)
{
	char name[64];
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		env_name(keys[i], name, sizeof(name));
		unsetenv(name);
	}
}

static int
set_ok(struct broker_config *cfg, const char *key, const char *value)
{
	char err[256] = "";

	if (config_set(cfg, key, value, err, sizeof(err)) != 0) {
		fprintf(stderr, "config_set %s=\"%s\": %s\n", key, value, err);
		return 0;
	}
	return 1;
}

/*
 * 1 if setting key to value fails with a message and leaves the whole
 * struct as it was.
 */
static int
set_bad(struct broker_config *cfg, const char *key, const char *value)
{
	struct broker_config before;
	char err[256] = "";

	memcpy(&before, cfg, sizeof(before));
	if (config_set(cfg, key, value, err, sizeof(err)) != -1 ||
	    err[0] == '\0' || memcmp(&before, cfg, sizeof(before)) != 0) {
		fprintf(stderr, "config_set %s=\"%s\" not refused cleanly\n",
		    key, value);
		return 0;
	}
	return 1;
}

static void
test_defaults(void)
{
	struct broker_config cfg;

	memset(&cfg, 0xa5, sizeof(cfg));
	config_defaults(&cfg);
	CHECK_STR(cfg.database_url, "postgresql:///countersign");
	CHECK_STR(cfg.listen_host, "127.0.0.1");
	CHECK(cfg.listen_port == 8080);
	CHECK_STR(cfg.issuer, "");
	CHECK_STR(cfg.master_key_file, "");
	CHECK(cfg.default_ttl == 300);
	CHECK(cfg.max_ttl == 3600);
	CHECK(cfg.default_ttl <= cfg.max_ttl);
	CHECK(cfg.threads == 64);
	CHECK(cfg.group_commit == 2);
	CHECK(cfg.group_commit_window == 0);
	CHECK(cfg.cache_ttl_ms == 1000);
	CHECK(cfg.rate_token == 6000);
	CHECK(cfg.rate_bc_authorize == 30);
	CHECK(cfg.rate_auth_failures == 30);
	CHECK(cfg.rate_introspect == 60000);
	CHECK(cfg.rate_approver == 600);
	CHECK(cfg.audit_seal == 1);
	CHECK(cfg.audit_gap_grace == 60);
	CHECK(cfg.max_body == 65536);
	CHECK(cfg.max_header == 32768);
	CHECK(cfg.connection_timeout == 10);
	CHECK(cfg.max_connections == 1024);
	CHECK(cfg.max_connections_per_ip == 0);
	CHECK(cfg.db_connect_timeout == 3);
	CHECK(cfg.db_statement_timeout == 5000);
	CHECK(cfg.key_refresh == 30);
	CHECK(cfg.log_level == LOG_LEVEL_INFO);
	CHECK(cfg.approval_timeout == 600);
	CHECK(cfg.poll_interval == 5);
	CHECK_STR(cfg.webhook_url, "");
	CHECK(cfg.webhook_timeout == 5);
	CHECK(cfg.ui_session_ttl == 8 * 3600);
	CHECK(cfg.ui_session_idle == 30 * 60);
	CHECK(cfg.ui_cookie_secure == 0);
}

static void
test_set_strings(void)
{
	struct broker_config cfg;
	char big[1100];
	char err[256];

	config_defaults(&cfg);
	CHECK(set_ok(&cfg, "database_url", "host=/tmp dbname=cs user=broker"));
	CHECK_STR(cfg.database_url, "host=/tmp dbname=cs user=broker");
	CHECK(set_ok(&cfg, "issuer", "https://auth.example.com"));
	CHECK_STR(cfg.issuer, "https://auth.example.com");
	CHECK(set_ok(&cfg, "master_key_file", "/etc/countersign/master.key"));
	CHECK_STR(cfg.master_key_file, "/etc/countersign/master.key");
	CHECK(set_ok(&cfg, "issuer", ""));
	CHECK_STR(cfg.issuer, "");

	/* Strings up to their buffer's size less the NUL. */
	memset(big, 'x', sizeof(big));
	big[sizeof(cfg.database_url) - 1] = '\0';
	CHECK(set_ok(&cfg, "database_url", big));
	CHECK(strlen(cfg.database_url) == sizeof(cfg.database_url) - 1);
	big[sizeof(cfg.database_url) - 1] = 'x';
	big[sizeof(cfg.database_url)] = '\0';
	CHECK(set_bad(&cfg, "database_url", big));
	memset(big, 'y', sizeof(big));
	big[sizeof(cfg.issuer)] = '\0';
	CHECK(set_bad(&cfg, "issuer", big));
	big[sizeof(cfg.issuer) - 1] = '\0';
	CHECK(set_ok(&cfg, "issuer", big));

	/* Unknown keys, including near misses, are errors that name the key. */
	CHECK(set_bad(&cfg, "no_such_key", "1"));
	CHECK(set_bad(&cfg, "MAX_TTL", "5m"));
	CHECK(set_bad(&cfg, "max_ttl ", "5m"));
	CHECK(set_bad(&cfg, "maxttl", "5m"));
	CHECK(set_bad(&cfg, "", "5m"));
	CHECK(config_set(&cfg, "no_such_key", "1", err, sizeof(err)) == -1);
	CHECK(strstr(err, "no_such_key") != NULL);
}

static void
test_set_listen(void)
{
	static const char *bad[] = {
		"", "localhost", "localhost:", ":8080", "localhost:0",
		"localhost:65536", "localhost:-1", "localhost:08080",
		"localhost:http", "localhost:80 ", "localhost: 80",
		"localhost:+80", "[::1]", "[]:8080", "[::1]:", "[::1]8080",
		"host:99999999999999999999",
	};
	struct broker_config cfg;
	char big[300];
	size_t i;
	int ok = 1;

	config_defaults(&cfg);
	CHECK(set_ok(&cfg, "listen", "0.0.0.0:9000"));
	CHECK_STR(cfg.listen_host, "0.0.0.0");
	CHECK(cfg.listen_port == 9000);
	CHECK(set_ok(&cfg, "listen", "localhost:1"));
	CHECK_STR(cfg.listen_host, "localhost");
	CHECK(cfg.listen_port == 1);
	CHECK(set_ok(&cfg, "listen", "broker.internal:65535"));
	CHECK_STR(cfg.listen_host, "broker.internal");
	CHECK(cfg.listen_port == 65535);
	/* IPv6 in brackets; the brackets are not part of the host. */
	CHECK(set_ok(&cfg, "listen", "[::1]:8080"));
	CHECK_STR(cfg.listen_host, "::1");
	CHECK(cfg.listen_port == 8080);
	CHECK(set_ok(&cfg, "listen", "[fe80::1:2]:443"));
	CHECK_STR(cfg.listen_host, "fe80::1:2");
	CHECK(cfg.listen_port == 443);

	config_defaults(&cfg);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!set_bad(&cfg, "listen", bad[i]))
			ok = 0;
	CHECK(ok);
	CHECK_STR(cfg.listen_host, "127.0.0.1");
	CHECK(cfg.listen_port == 8080);

	/* A host of 255 characters fits, 256 does not. */
	memset(big, 'h', sizeof(big));
	snprintf(big + 255, sizeof(big) - 255, ":80");
	CHECK(set_ok(&cfg, "listen", big));
	CHECK(strlen(cfg.listen_host) == 255 && cfg.listen_port == 80);
	memset(big, 'h', sizeof(big));
	snprintf(big + 256, sizeof(big) - 256, ":80");
	CHECK(set_bad(&cfg, "listen", big));
}

static void
test_set_numbers(void)
{
	static const struct {
		const char *key, *value;
	} bad[] = {
		{ "default_ttl", "0" }, { "default_ttl", "86401" },
		{ "default_ttl", "1d1s" }, { "default_ttl", "2d" },
		{ "default_ttl", "5x" }, { "default_ttl", "" },
		{ "default_ttl", "-5" }, { "default_ttl", "5 m" },
		{ "max_ttl", "1h1h" }, { "max_ttl", "1m1h" }, { "max_ttl", "1h30" },
		{ "key_refresh", "0s" }, { "key_refresh", "25h" },
		{ "threads", "0" }, { "threads", "257" }, { "threads", "-1" },
		{ "threads", "8 " }, { "threads", " 8" }, { "threads", "08" },
		{ "threads", "+8" }, { "threads", "8.0" }, { "threads", "" },
		{ "threads", "0x10" },
		{ "max_body", "1023" }, { "max_body", "16777217" },
		{ "max_body", "64k" }, { "max_body", "-1" },
		{ "max_body", "18446744073709551616" },
		{ "max_header", "4095" }, { "max_header", "1048577" },
		{ "connection_timeout", "0" }, { "connection_timeout", "3601" },
		{ "connection_timeout", "10s" },
		{ "max_connections", "0" }, { "max_connections", "100001" },
		{ "max_connections_per_ip", "-1" },
		{ "max_connections_per_ip", "100001" },
		{ "db_connect_timeout", "0" }, { "db_connect_timeout", "61" },
		{ "db_statement_timeout", "0" },
		{ "db_statement_timeout", "600001" },
		{ "log_level", "" }, { "log_level", "INFO" },
		{ "log_level", "warning" }, { "log_level", "trace" },
		{ "log_level", "info " }, { "log_level", "0" },
		{ "approval_timeout", "9s" }, { "approval_timeout", "1d1s" },
		{ "poll_interval", "0" }, { "poll_interval", "61" },
		{ "poll_interval", "5s" },
		{ "webhook_timeout", "0" }, { "webhook_timeout", "61" },
		{ "ui_session_ttl", "59s" }, { "ui_session_ttl", "8d" },
		{ "ui_session_idle", "1s" }, { "ui_session_idle", "8d" },
		{ "ui_cookie_secure", "2" }, { "ui_cookie_secure", "yes" },
	};
	struct broker_config cfg;
	size_t i;
	int ok = 1;

	config_defaults(&cfg);
	CHECK(set_ok(&cfg, "default_ttl", "5m") && cfg.default_ttl == 300);
	CHECK(set_ok(&cfg, "default_ttl", "90") && cfg.default_ttl == 90);
	CHECK(set_ok(&cfg, "default_ttl", "1") && cfg.default_ttl == 1);
	CHECK(set_ok(&cfg, "max_ttl", "1d") && cfg.max_ttl == 86400);
	CHECK(set_ok(&cfg, "max_ttl", "86400s") && cfg.max_ttl == 86400);
	CHECK(set_ok(&cfg, "max_ttl", "1h30m") && cfg.max_ttl == 5400);
	/* key_refresh is an int field filled from a duration. */
	CHECK(set_ok(&cfg, "key_refresh", "2m") && cfg.key_refresh == 120);
	CHECK(set_ok(&cfg, "key_refresh", "1d") && cfg.key_refresh == 86400);
	CHECK(set_ok(&cfg, "threads", "1") && cfg.threads == 1);
	CHECK(set_ok(&cfg, "threads", "256") && cfg.threads == 256);
	CHECK(set_ok(&cfg, "max_body", "1024") && cfg.max_body == 1024);
	CHECK(set_ok(&cfg, "max_body", "16777216") &&
	    cfg.max_body == 16777216);
	CHECK(set_ok(&cfg, "max_header", "4096") && cfg.max_header == 4096);
	CHECK(set_ok(&cfg, "max_header", "1048576") &&
	    cfg.max_header == 1048576);
	CHECK(set_ok(&cfg, "connection_timeout", "3600") &&
	    cfg.connection_timeout == 3600);
	CHECK(set_ok(&cfg, "max_connections", "100000") &&
	    cfg.max_connections == 100000);
	CHECK(set_ok(&cfg, "max_connections_per_ip", "0") &&
	    cfg.max_connections_per_ip == 0);
	CHECK(set_ok(&cfg, "max_connections_per_ip", "16") &&
	    cfg.max_connections_per_ip == 16);
	CHECK(set_ok(&cfg, "db_connect_timeout", "60") &&
	    cfg.db_connect_timeout == 60);
	CHECK(set_ok(&cfg, "db_statement_timeout", "600000") &&
	    cfg.db_statement_timeout == 600000);
	CHECK(set_ok(&cfg, "log_level", "debug") &&
	    cfg.log_level == LOG_LEVEL_DEBUG);
	CHECK(set_ok(&cfg, "log_level", "warn") &&
	    cfg.log_level == LOG_LEVEL_WARN);
	CHECK(set_ok(&cfg, "log_level", "error") &&
	    cfg.log_level == LOG_LEVEL_ERROR);
	CHECK(set_ok(&cfg, "log_level", "info") &&
	    cfg.log_level == LOG_LEVEL_INFO);
	CHECK(set_ok(&cfg, "approval_timeout", "10s") &&
	    cfg.approval_timeout == 10);
	CHECK(set_ok(&cfg, "approval_timeout", "1d") &&
	    cfg.approval_timeout == 86400);
	CHECK(set_ok(&cfg, "poll_interval", "60") && cfg.poll_interval == 60);
	CHECK(set_ok(&cfg, "webhook_timeout", "1") &&
	    cfg.webhook_timeout == 1);
	CHECK(set_ok(&cfg, "ui_session_ttl", "30m") &&
	    cfg.ui_session_ttl == 1800);
	CHECK(set_ok(&cfg, "ui_cookie_secure", "1") &&
	    cfg.ui_cookie_secure == 1);
	CHECK(set_ok(&cfg, "webhook_url", "https://hooks.example/x") &&
	    strcmp(cfg.webhook_url, "https://hooks.example/x") == 0);

	/* Neighbouring fields must be untouched by an int write. */
	config_defaults(&cfg);
	CHECK(set_ok(&cfg, "threads", "200"));
	CHECK(cfg.threads == 200 && cfg.max_body == 65536 &&
	    cfg.max_ttl == 3600);
	CHECK(set_ok(&cfg, "key_refresh", "1h"));
	CHECK(cfg.key_refresh == 3600 && cfg.log_level == LOG_LEVEL_INFO &&
	    cfg.db_statement_timeout == 5000);

	config_defaults(&cfg);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (!set_bad(&cfg, bad[i].key, bad[i].value))
			ok = 0;
	CHECK(ok);
}

/* config_parse_text on a writable copy of s; 0 or -1. */
static int
parse_text(struct broker_config *cfg, const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);
	char *copy = malloc(n + 1);
	int rc;

	if (copy == NULL)
		return -2;
	memcpy(copy, s, n + 1);
	rc = config_parse_text(cfg, "test.conf", copy, n, err, errlen);
	free(copy);
	return rc;
}

static void
test_parse_text(void)
{
	struct broker_config cfg;
	char err[512];
	char text[] = "threads = 4\nmax\0_ttl = 5m\n";

	config_defaults(&cfg);
	err[0] = '\0';
	CHECK(parse_text(&cfg,
	    "# Countersign configuration\n"
	    "\n"
	    "   # an indented comment\n"
	    "listen = 0.0.0.0:9000\n"
	    "  max_ttl\t=\t2h  \n"
	    "default_ttl=10m\n"
	    "\t\n"
	    "database_url = \"host=db dbname=cs sslmode=require\"\n"
	    "issuer = \" https://quoted.example \"\n"
	    "master_key_file = \"\"\n"
	    "log_level = debug",
	    err, sizeof(err)) == 0);
	CHECK_STR(err, "");
	CHECK_STR(cfg.listen_host, "0.0.0.0");
	CHECK(cfg.listen_port == 9000);
	CHECK(cfg.max_ttl == 7200);
	CHECK(cfg.default_ttl == 600);
	CHECK_STR(cfg.database_url, "host=db dbname=cs sslmode=require");
	/* Spaces inside quotes are kept. */
	CHECK_STR(cfg.issuer, " https://quoted.example ");
	CHECK_STR(cfg.master_key_file, "");
	CHECK(cfg.log_level == LOG_LEVEL_DEBUG);

	/* CRLF line endings, and a file that is only comments. */
	config_defaults(&cfg);
	CHECK(parse_text(&cfg, "threads = 3\r\nmax_ttl = 1h\r\n# x\r\n\r\n",
	    err, sizeof(err)) == 0);
	CHECK(cfg.threads == 3 && cfg.max_ttl == 3600);
	CHECK(parse_text(&cfg, "", err, sizeof(err)) == 0);
	CHECK(parse_text(&cfg, "\n\n# only\n#comments", err, sizeof(err)) == 0);
	/* A lone quote is not a quoted value; a value may contain '='. */
	CHECK(parse_text(&cfg, "master_key_file = \"", err, sizeof(err)) == 0);
	CHECK_STR(cfg.master_key_file, "\"");
	CHECK(parse_text(&cfg, "database_url = a=b c=d", err, sizeof(err)) == 0);
	CHECK_STR(cfg.database_url, "a=b c=d");
	/* A later line overrides an earlier one. */
	CHECK(parse_text(&cfg, "threads = 5\nthreads = 6\n", err,
	    sizeof(err)) == 0);
	CHECK(cfg.threads == 6);

	/* Bad lines name the file and line. */
	config_defaults(&cfg);
	CHECK(parse_text(&cfg, "threads = 4\n\njust some words\n", err,
	    sizeof(err)) == -1);
	CHECK(strstr(err, "test.conf:3") != NULL);
	CHECK(parse_text(&cfg, "threads = 4\nbogus = 1\n", err,
	    sizeof(err)) == -1);
	CHECK(strstr(err, "test.conf:2") != NULL && strstr(err, "bogus"));
	CHECK(parse_text(&cfg, "threads = 999\n", err, sizeof(err)) == -1);
	CHECK(strstr(err, "test.conf:1") != NULL);
	CHECK(parse_text(&cfg, "= 5\n", err, sizeof(err)) == -1);
	CHECK(parse_text(&cfg, "threads\n", err, sizeof(err)) == -1);
	/* Comments are whole lines only: a trailing one makes a bad value. */
	CHECK(parse_text(&cfg, "max_ttl = 5m # five minutes\n", err,
	    sizeof(err)) == -1);
	CHECK(parse_text(&cfg, "threads = 4 ; x\n", err, sizeof(err)) == -1);
	CHECK(parse_text(&cfg, "threads = \"4\n", err, sizeof(err)) == -1);
	CHECK(parse_text(&cfg, "threads = '4'\n", err, sizeof(err)) == -1);
	/* Earlier lines have taken effect; the struct is not rolled back. */
	CHECK(cfg.threads == 4);

	/* A NUL byte anywhere in the text is refused. */
	config_defaults(&cfg);
	CHECK(config_parse_text(&cfg, "nul.conf", text, sizeof(text) - 1, err,
	    sizeof(err)) == -1);
	CHECK(strstr(err, "NUL") != NULL);
	CHECK(cfg.threads == 64);

	/* A tiny error buffer still gets a terminated (truncated) message. */
	CHECK(parse_text(&cfg, "bogus = 1", err, 8) == -1);
	CHECK(strlen(err) == 7);
}

/* Write text to a new temporary file; its path goes to path. 0 or -1. */
static int
write_temp(const char *text, size_t n, char *path, size_t cap)
{
	const char *dir = getenv("TMPDIR");
	FILE *fp;
	int fd;

	snprintf(path, cap, "%s/cs-test-config.XXXXXX",
	    dir != NULL && dir[0] != '\0' ? dir : "/tmp");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	fp = fdopen(fd, "w");
	if (fp == NULL) {
		close(fd);
		unlink(path);
		return -1;
	}
	if (fwrite(text, 1, n, fp) != n) {
		fclose(fp);
		unlink(path);
		return -1;
	}
	return fclose(fp) == 0 ? 0 : -1;
}

static int
write_str(const char *text, char *path, size_t cap)
{
	return write_temp(text, strlen(text), path, cap);
}

static void
test_load(void)
{
	static const char file[] =
	    "# test file\n"
	    "listen = 127.0.0.2:9443\n"
	    "max_ttl = 2h\n"
	    "default_ttl = 10m\n"
	    "threads = 2\n"
	    "log_level = warn\n";
	struct broker_config cfg;
	char err[512], path[512], *big;
	size_t n;

	env_clear();

	/* Defaults alone; the issuer is derived from listen. */
	err[0] = '\0';
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(err, "");
	CHECK_STR(cfg.issuer, "http://127.0.0.1:8080");
	CHECK(cfg.max_ttl == 3600);

	/* A file. */
	CHECK(write_str(file, path, sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.listen_host, "127.0.0.2");
	CHECK(cfg.listen_port == 9443);
	CHECK_STR(cfg.issuer, "http://127.0.0.2:9443");
	CHECK(cfg.max_ttl == 7200 && cfg.default_ttl == 600);
	CHECK(cfg.threads == 2 && cfg.log_level == LOG_LEVEL_WARN);

	/* The environment overrides the file; empty variables are ignored. */
	setenv("COUNTERSIGN_MAX_TTL", "30m", 1);
	setenv("COUNTERSIGN_THREADS", "", 1);
	setenv("COUNTERSIGN_LOG_LEVEL", "error", 1);
	setenv("COUNTERSIGN_MAX_CONNECTIONS_PER_IP", "4", 1);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == 0);
	CHECK(cfg.max_ttl == 1800 && cfg.default_ttl == 600);
	CHECK(cfg.threads == 2);
	CHECK(cfg.log_level == LOG_LEVEL_ERROR);
	CHECK(cfg.max_connections_per_ip == 4);
	/* Lowercase or misspelt variables are not ours. */
	setenv("countersign_max_ttl", "1m", 1);
	setenv("COUNTERSIGN_MAXTTL", "1m", 1);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == 0);
	CHECK(cfg.max_ttl == 1800);
	unsetenv("countersign_max_ttl");
	unsetenv("COUNTERSIGN_MAXTTL");

	/* A bad variable is an error naming the variable. */
	setenv("COUNTERSIGN_MAX_TTL", "forever", 1);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "COUNTERSIGN_MAX_TTL") != NULL);
	setenv("COUNTERSIGN_MAX_TTL", "2d", 1);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	/* default_ttl above max_ttl, wherever each came from. */
	setenv("COUNTERSIGN_MAX_TTL", "5m", 1);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "default_ttl") != NULL);
	setenv("COUNTERSIGN_DEFAULT_TTL", "5m", 1);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == 0);
	CHECK(cfg.default_ttl == 300 && cfg.max_ttl == 300);
	env_clear();

	/* Issuers: derived for IPv6, given, trailing slash dropped. */
	setenv("COUNTERSIGN_LISTEN", "[::1]:8443", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.listen_host, "::1");
	CHECK_STR(cfg.issuer, "http://[::1]:8443");
	setenv("COUNTERSIGN_ISSUER", "https://auth.example.com/", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.issuer, "https://auth.example.com");
	setenv("COUNTERSIGN_ISSUER", "https://auth.example.com/cs/", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.issuer, "https://auth.example.com/cs");
	setenv("COUNTERSIGN_ISSUER", "http://localhost:8080", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.issuer, "http://localhost:8080");
	setenv("COUNTERSIGN_ISSUER", "ftp://auth.example.com", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "issuer") != NULL);
	setenv("COUNTERSIGN_ISSUER", "auth.example.com", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	setenv("COUNTERSIGN_ISSUER", "HTTPS://auth.example.com", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	setenv("COUNTERSIGN_ISSUER", "/", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	unsetenv("COUNTERSIGN_ISSUER");
	setenv("COUNTERSIGN_WEBHOOK_URL", "https://hooks.example/cs", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.webhook_url, "https://hooks.example/cs");
	setenv("COUNTERSIGN_WEBHOOK_URL", "file:///etc/passwd", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "webhook_url") != NULL);
	unsetenv("COUNTERSIGN_WEBHOOK_URL");
	setenv("COUNTERSIGN_LISTEN", "nowhere", 1);
	unsetenv("COUNTERSIGN_ISSUER");
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "COUNTERSIGN_LISTEN") != NULL);
	env_clear();

	/* The issuer in the file is subject to the same rules. */
	unlink(path);
	CHECK(write_str("issuer = \"https://f.example/\"\n", path,
	    sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.issuer, "https://f.example");
	unlink(path);
	CHECK(write_str("issuer = javascript:x\n", path, sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);

	/* A bad file, a NUL byte in a file, a missing file, a huge file. */
	unlink(path);
	CHECK(write_str("threads = 4\nnonsense\n", path, sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, path) != NULL && strstr(err, ":2:") != NULL);
	unlink(path);
	CHECK(write_temp("threads = 4\n\0", 13, path, sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "NUL") != NULL);
	unlink(path);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "cannot read") != NULL);
	CHECK(config_load("/", &cfg, err, sizeof(err)) == -1);

	n = CONFIG_MAX_FILE + 1;
	big = malloc(n);
	CHECK(big != NULL);
	if (big == NULL)
		return;
	memset(big, '\n', n);
	memcpy(big, "# big\n", 6);
	CHECK(write_temp(big, n, path, sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == -1);
	unlink(path);
	/* Exactly CONFIG_MAX_FILE bytes are fine. */
	CHECK(write_temp(big, n - 1, path, sizeof(path)) == 0);
	CHECK(config_load(path, &cfg, err, sizeof(err)) == 0);
	unlink(path);
	free(big);
}

/* TLS needs both files; with it the derived issuer is https. */
static void
test_tls(void)
{
	struct broker_config cfg;
	char err[512];

	env_clear();
	setenv("COUNTERSIGN_TLS_CERT_FILE", "/etc/countersign/tls.pem", 1);
	err[0] = '\0';
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	CHECK(strstr(err, "tls_cert_file and tls_key_file") != NULL);
	setenv("COUNTERSIGN_TLS_KEY_FILE", "/etc/countersign/tls.key", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.tls_cert_file, "/etc/countersign/tls.pem");
	CHECK_STR(cfg.tls_key_file, "/etc/countersign/tls.key");
	CHECK_STR(cfg.issuer, "https://127.0.0.1:8080");
	/* An explicit issuer is kept as given. */
	setenv("COUNTERSIGN_ISSUER", "https://auth.example.com", 1);
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == 0);
	CHECK_STR(cfg.issuer, "https://auth.example.com");
	unsetenv("COUNTERSIGN_TLS_CERT_FILE");
	CHECK(config_load(NULL, &cfg, err, sizeof(err)) == -1);
	env_clear();
}

int
main(int argc, char **argv)
{
	(void)argc;
	test_defaults();
	test_set_strings();
	test_set_listen();
	test_set_numbers();
	test_parse_text();
	test_load();
	test_tls();
	return check_summary(argv[0]);
}
