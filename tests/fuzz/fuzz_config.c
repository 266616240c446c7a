/*
 * fuzz_config.c: libFuzzer target for the config file parser (config.c).
 *
 * config_parse_text reads a file an operator wrote, but a parser that can
 * be crashed or driven past its buffers by a config line is still a bug.
 * Besides memory safety, a successful parse must leave every setting in
 * the range config.c documents and every string NUL-terminated within its
 * buffer; a failed one must leave a message.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
terminated(const char *buf, size_t cap)
{
	return memchr(buf, '\0', cap) != NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct broker_config cfg;
	char err[512];
	char *text;

	if (size > CONFIG_MAX_FILE)
		return 0;
	if ((text = malloc(size + 1)) == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	config_defaults(&cfg);
	err[0] = '\0';

	if (config_parse_text(&cfg, "fuzz.conf", text, size, err,
	    sizeof(err)) != 0) {
		if (err[0] == '\0' || !terminated(err, sizeof(err)))
			abort();
		free(text);
		return 0;
	}
	if (!terminated(cfg.database_url, sizeof(cfg.database_url)) ||
	    !terminated(cfg.listen_host, sizeof(cfg.listen_host)) ||
	    !terminated(cfg.issuer, sizeof(cfg.issuer)) ||
	    !terminated(cfg.master_key_file, sizeof(cfg.master_key_file)) ||
	    !terminated(cfg.webhook_url, sizeof(cfg.webhook_url)) ||
	    cfg.listen_host[0] == '\0')
		abort();
	if (cfg.listen_port < 1 || cfg.listen_port > 65535 ||
	    cfg.default_ttl < 1 || cfg.default_ttl > 86400 ||
	    cfg.max_ttl < 1 || cfg.max_ttl > 86400 ||
	    cfg.threads < 1 || cfg.threads > 256 ||
	    cfg.max_body < 1024 || cfg.max_body > 16 * 1024 * 1024 ||
	    cfg.max_header < 4096 || cfg.max_header > 1024 * 1024 ||
	    cfg.connection_timeout < 1 || cfg.connection_timeout > 3600 ||
	    cfg.max_connections < 1 || cfg.max_connections > 100000 ||
	    cfg.max_connections_per_ip < 0 ||
	    cfg.max_connections_per_ip > 100000 ||
	    cfg.db_connect_timeout < 1 || cfg.db_connect_timeout > 60 ||
	    cfg.db_statement_timeout < 1 ||
	    cfg.db_statement_timeout > 600000 ||
	    cfg.key_refresh < 1 || cfg.key_refresh > 86400 ||
	    cfg.approval_timeout < 10 || cfg.approval_timeout > 86400 ||
	    cfg.poll_interval < 1 || cfg.poll_interval > 60 ||
	    cfg.webhook_timeout < 1 || cfg.webhook_timeout > 60 ||
	    cfg.log_level < LOG_LEVEL_DEBUG || cfg.log_level > LOG_LEVEL_ERROR)
		abort();
	free(text);
	return 0;
}
