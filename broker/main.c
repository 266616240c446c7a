/*
 * main.c: the countersign binary: option parsing, subcommand dispatch, and
 * the serve loop (signals, start-up and shutdown order).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "agents.h"
#include "api.h"
#include "approvals.h"
#include "audit.h"
#include "batch.h"
#include "httpclient.h"
#include "cli.h"
#include "config.h"
#include "db.h"
#include "dpop.h"
#include "grants.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "notify.h"
#include "services.h"
#include "tls.h"
#include "vcache.h"

static int
serve(const struct broker_config *cfg)
{
	struct keyset *ks = NULL;
	sigset_t set;
	char errbuf[512];
	int sig = 0, rc = 1;

	if (keys_init(cfg, errbuf, sizeof(errbuf)) != 0) {
		log_error("%s", errbuf);
		return 1;
	}
	if (db_init(cfg->database_url, cfg->db_connect_timeout,
	    cfg->db_statement_timeout) != 0 || api_init(cfg) != 0) {
		log_error("start-up failed");
		goto out;
	}
	/*
	 * Block the signals we wait for before any thread starts, so every
	 * thread inherits the mask and only sigwait() below sees them.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * Load (or create) the signing keys now if the database is there; if
	 * it is not, start anyway: /readyz says not ready and issuing
	 * requests fail closed until it comes back.
	 */
	if (keys_acquire(&ks) != CS_OK)
		log_warn("database not reachable at start-up; serving "
		    "fail-closed until it is");
	keys_release(ks);
	if (agents_cache_init(cfg->cache_ttl_ms) != 0 ||
	    grants_cache_init(cfg->cache_ttl_ms) != 0 ||
	    dpop_cache_init(cfg->cache_ttl_ms) != 0 ||
	    services_cache_init(cfg->cache_ttl_ms) != 0 ||
	    vcache_init((size_t)cfg->verify_cache) != 0) {
		log_error("out of memory");
		goto out;
	}
	if (cfg->group_commit > 0 &&
	    batch_start(cfg->group_commit, cfg->group_commit_window) != 0) {
		log_error("cannot start the group commit threads");
		goto out;
	}
	if (httpclient_global_init() != 0 || notify_start(cfg) != 0 ||
	    approvals_start_sweeper() != 0 ||
	    (cfg->audit_seal && audit_start_sealer(cfg->audit_gap_grace) != 0)) {
		log_error("cannot start background threads");
		goto out;
	}
	if (tls_enabled(cfg) && tls_init(cfg, errbuf, sizeof(errbuf)) != 0) {
		log_error("%s", errbuf);
		goto out;
	}
	if (db_pool_start(cfg->db_pool) != 0) {
		log_error("cannot start the database pool");
		goto out;
	}
	if (http_start(cfg, api_routes) != 0)
		goto out;
	log_fields(LOG_LEVEL_INFO, "countersign listening", json_pack(
	    "{s:s, s:i, s:s, s:b, s:s}", "host", cfg->listen_host, "port",
	    cfg->listen_port, "issuer", cfg->issuer, "tls", tls_enabled(cfg),
	    "version", CS_VERSION));
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			break;
		if (sig == SIGHUP) {
			/*
			 * Only the TLS certificate is reloaded; everything
			 * else in the config needs a restart. A bad new
			 * certificate keeps the old one serving.
			 */
			if (!tls_enabled(cfg))
				log_info("SIGHUP: nothing to reload (TLS is off)");
			else if (tls_reload(errbuf, sizeof(errbuf)) != 0)
				log_fields(LOG_LEVEL_ERROR, "TLS reload failed; "
				    "still serving the previous certificate",
				    json_pack("{s:s, s:s}", "event",
				    "tls.reload_failed", "detail", errbuf));
			continue;
		}
		break;
	}
	log_fields(LOG_LEVEL_INFO, "shutting down", json_pack("{s:i}",
	    "signal", sig));
	rc = 0;
out:
	http_stop();
	tls_shutdown();
	/* After the workers: every pooled connection is back by now. */
	db_pool_stop();
	batch_stop();
	audit_stop_sealer();
	agents_cache_free();
	grants_cache_free();
	dpop_cache_free();
	services_cache_free();
	vcache_free();
	approvals_stop_sweeper();
	notify_stop();
	api_shutdown();
	keys_shutdown();
	db_shutdown();
	return rc;
}

int
main(int argc, char **argv)
{
	struct broker_config cfg;
	const char *config_path = NULL;
	char errbuf[512];
	char **args;
	int i, n = 0, rc;

	/*
	 * Keep key material, client secrets and approver keys out of core
	 * dumps and away from ptrace and /proc/PID/mem of other processes of
	 * the same user: the broker loads the signing keys, and so do the CLI
	 * commands that hash secrets, rotate keys, sign checkpoints or carry
	 * an approver's key. Done first, before anything secret is read.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		perror("countersign: prctl(PR_SET_DUMPABLE)");
		return 1;
	}
	/* Pull --config FILE out of the arguments, wherever it is. */
	args = calloc((size_t)argc + 1, sizeof(*args));
	if (args == NULL)
		return 1;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "countersign: --config needs a file\n");
				free(args);
				return 2;
			}
			config_path = argv[++i];
			continue;
		}
		args[n++] = argv[i];
	}
	if (n == 0 || strcmp(args[0], "help") == 0 ||
	    strcmp(args[0], "--help") == 0 || strcmp(args[0], "-h") == 0) {
		cli_usage();
		free(args);
		return n == 0 ? 2 : 0;
	}
	if (strcmp(args[0], "version") == 0 || strcmp(args[0], "--version") == 0) {
		printf("countersign %s\n", CS_VERSION);
		free(args);
		return 0;
	}
	if (config_load(config_path, &cfg, errbuf, sizeof(errbuf)) != 0) {
		fprintf(stderr, "countersign: %s\n", errbuf);
		free(args);
		return 2;
	}
	log_set_level(cfg.log_level);
	if (strcmp(args[0], "serve") == 0) {
		if (n != 1) {
			cli_usage();
			rc = 2;
		} else {
			rc = serve(&cfg);
		}
	} else {
		rc = cli_run(&cfg, n, args);
	}
	free(args);
	return rc;
}
