/*
 * cli.c: see cli.h.
 *
 * Every command prints a short human line on success, or with --json one
 * JSON object that scripts and tests rely on (field names are documented in
 * docs/cli.md and must stay stable).
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agents.h"
#include "cli.h"
#include "db.h"
#include "grants.h"
#include "keys.h"
#include "log.h"
#include "migrate.h"
#include "util.h"

#define MAX_POS		4

/* Parsed arguments of one command: positionals and known --flags. */
struct args {
	const char *pos[MAX_POS];
	int npos;
	int json;
	const char *owner, *kind, *max_ttl, *audience, *expires_at;
};

static char actor[CS_NAME_MAX + 16];

void
cli_usage(void)
{
	fprintf(stderr,
	    "usage: countersign [--config FILE] COMMAND ...\n"
	    "\n"
	    "  serve                               run the broker\n"
	    "  migrate                             apply database migrations\n"
	    "  agent add NAME [--owner EMAIL] [--json]\n"
	    "  agent disable NAME\n"
	    "  agent list [--json]\n"
	    "  scope add NAME --kind read|write [--max-ttl DURATION] [--json]\n"
	    "  scope list [--json]\n"
	    "  grant add AGENT SCOPE --audience AUD [--max-ttl DURATION]\n"
	    "            [--expires-at RFC3339] [--json]\n"
	    "  grant revoke ID | grant revoke AGENT SCOPE --audience AUD\n"
	    "  grant list [AGENT] [--json]\n"
	    "  keys rotate [--json]\n"
	    "  version\n"
	    "\n"
	    "Settings come from --config FILE and COUNTERSIGN_* variables;\n"
	    "see docs/configuration.md.\n");
}

/*
 * Parse argv after the verb. Flags take a value as the next argument;
 * allowed lists the flags this command accepts. Returns 0 or -1 (after
 * printing why).
 */
static int
parse_args(int argc, char **argv, const char *allowed, struct args *a)
{
	int i;

	memset(a, 0, sizeof(*a));
	for (i = 0; i < argc; i++) {
		const char *arg = argv[i];
		const char **slot = NULL;

		if (strncmp(arg, "--", 2) != 0) {
			if (a->npos == MAX_POS) {
				fprintf(stderr, "countersign: too many arguments\n");
				return -1;
			}
			a->pos[a->npos++] = arg;
			continue;
		}
		if (strstr(allowed, arg) == NULL ||
		    strstr(allowed, arg)[strlen(arg)] > ' ') {
			fprintf(stderr, "countersign: unknown option %s\n", arg);
			return -1;
		}
		if (strcmp(arg, "--json") == 0) {
			a->json = 1;
			continue;
		}
		if (strcmp(arg, "--owner") == 0)
			slot = &a->owner;
		else if (strcmp(arg, "--kind") == 0)
			slot = &a->kind;
		else if (strcmp(arg, "--max-ttl") == 0)
			slot = &a->max_ttl;
		else if (strcmp(arg, "--audience") == 0)
			slot = &a->audience;
		else if (strcmp(arg, "--expires-at") == 0)
			slot = &a->expires_at;
		if (slot == NULL || i + 1 >= argc) {
			fprintf(stderr, "countersign: %s needs a value\n", arg);
			return -1;
		}
		*slot = argv[++i];
	}
	return 0;
}

static int
fail(const struct cs_error *err)
{
	fprintf(stderr, "countersign: %s\n", err->desc);
	return 1;
}

static void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	if (s != NULL)
		printf("%s\n", s);
	free(s);
	json_decref(j);
}

static int
print_list(enum cs_err rc, json_t *list, int as_json, const char *what)
{
	size_t i;
	json_t *item;

	if (rc != CS_OK) {
		fprintf(stderr, "countersign: cannot list %s (database error)\n",
		    what);
		return 1;
	}
	if (as_json) {
		print_json(list);
		return 0;
	}
	json_array_foreach(list, i, item) {
		char *s = json_dumps(item, JSON_COMPACT);

		if (s != NULL)
			printf("%s\n", s);
		free(s);
	}
	json_decref(list);
	return 0;
}

static int
parse_ttl_flag(const char *text, int64_t *out)
{
	*out = 0;
	if (text == NULL)
		return 0;
	if (util_parse_duration(text, out) != 0) {
		fprintf(stderr, "countersign: --max-ttl expects a duration such "
		    "as 300, 5m or 1h\n");
		return -1;
	}
	return 0;
}

static int
cmd_agent(int argc, char **argv)
{
	struct cs_error err;
	struct args a;

	if (argc < 1)
		goto usage;
	if (strcmp(argv[0], "add") == 0) {
		char client_id[CS_NAME_MAX + 1], secret[AGENTS_SECRET_LEN + 1];

		if (parse_args(argc - 1, argv + 1, "--owner --json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (agents_add(a.pos[0], a.owner, actor, client_id, secret,
		    &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:s, s:s, s:s?}", "name",
			    a.pos[0], "client_id", client_id, "client_secret",
			    secret, "owner", a.owner));
		else
			printf("agent %s created\nclient_id:     %s\n"
			    "client_secret: %s\n(the secret is shown only once)\n",
			    a.pos[0], client_id, secret);
		util_secure_zero(secret, sizeof(secret));
		return 0;
	}
	if (strcmp(argv[0], "disable") == 0) {
		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (agents_disable(a.pos[0], actor, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:b}", "name", a.pos[0],
			    "disabled", 1));
		else
			printf("agent %s disabled\n", a.pos[0]);
		return 0;
	}
	if (strcmp(argv[0], "list") == 0) {
		json_t *list = NULL;
		enum cs_err rc;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 0)
			goto usage;
		rc = agents_list(&list);
		return print_list(rc, list, a.json, "agents");
	}
usage:
	fprintf(stderr, "usage: countersign agent add NAME [--owner EMAIL] "
	    "[--json] | agent disable NAME | agent list [--json]\n");
	return 2;
}

static int
cmd_scope(int argc, char **argv)
{
	struct cs_error err;
	struct args a;
	int64_t ttl;

	if (argc < 1)
		goto usage;
	if (strcmp(argv[0], "add") == 0) {
		if (parse_args(argc - 1, argv + 1, "--kind --max-ttl --json",
		    &a) != 0 || a.npos != 1 || a.kind == NULL)
			goto usage;
		if (parse_ttl_flag(a.max_ttl, &ttl) != 0)
			return 2;
		if (grants_scope_add(a.pos[0], a.kind, ttl, actor, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:s, s:I*}", "name", a.pos[0],
			    "kind", a.kind, "max_ttl", (json_int_t)ttl));
		else
			printf("scope %s (%s) created\n", a.pos[0], a.kind);
		return 0;
	}
	if (strcmp(argv[0], "list") == 0) {
		json_t *list = NULL;
		enum cs_err rc;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 0)
			goto usage;
		rc = grants_scope_list(&list);
		return print_list(rc, list, a.json, "scopes");
	}
usage:
	fprintf(stderr, "usage: countersign scope add NAME --kind read|write "
	    "[--max-ttl DURATION] [--json] | scope list [--json]\n");
	return 2;
}

static int
cmd_grant(int argc, char **argv)
{
	struct cs_error err;
	struct args a;
	int64_t ttl = 0, exp = 0, id = 0;

	if (argc < 1)
		goto usage;
	if (strcmp(argv[0], "add") == 0) {
		if (parse_args(argc - 1, argv + 1,
		    "--audience --max-ttl --expires-at --json", &a) != 0 ||
		    a.npos != 2 || a.audience == NULL)
			goto usage;
		if (parse_ttl_flag(a.max_ttl, &ttl) != 0)
			return 2;
		if (a.expires_at != NULL &&
		    util_parse_rfc3339(a.expires_at, &exp) != 0) {
			fprintf(stderr, "countersign: --expires-at expects an RFC "
			    "3339 time such as 2026-12-31T23:59:59Z\n");
			return 2;
		}
		if (grants_add(a.pos[0], a.pos[1], a.audience, ttl, exp, actor,
		    &id, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:I, s:s, s:s, s:s}", "id",
			    (json_int_t)id, "agent", a.pos[0], "scope", a.pos[1],
			    "audience", a.audience));
		else
			printf("grant %lld: %s may get %s for %s\n", (long long)id,
			    a.pos[0], a.pos[1], a.audience);
		return 0;
	}
	if (strcmp(argv[0], "revoke") == 0) {
		if (parse_args(argc - 1, argv + 1, "--audience --json", &a) != 0)
			goto usage;
		if (a.npos == 1 && a.audience == NULL) {
			if (util_parse_int64(a.pos[0], 1, INT64_MAX, &id) != 0)
				goto usage;
			if (grants_revoke(id, NULL, NULL, NULL, actor, &err) != CS_OK)
				return fail(&err);
		} else if (a.npos == 2 && a.audience != NULL) {
			if (grants_revoke(0, a.pos[0], a.pos[1], a.audience, actor,
			    &err) != CS_OK)
				return fail(&err);
		} else {
			goto usage;
		}
		if (a.json)
			print_json(json_pack("{s:b}", "revoked", 1));
		else
			printf("grant revoked\n");
		return 0;
	}
	if (strcmp(argv[0], "list") == 0) {
		json_t *list = NULL;
		enum cs_err rc;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos > 1)
			goto usage;
		rc = grants_list(a.npos == 1 ? a.pos[0] : NULL, &list);
		return print_list(rc, list, a.json, "grants");
	}
usage:
	fprintf(stderr, "usage: countersign grant add AGENT SCOPE --audience AUD "
	    "[--max-ttl DURATION] [--expires-at RFC3339] [--json]\n"
	    "       countersign grant revoke ID | grant revoke AGENT SCOPE "
	    "--audience AUD\n"
	    "       countersign grant list [AGENT] [--json]\n");
	return 2;
}

static int
cmd_keys(int argc, char **argv)
{
	char kid[JOSE_KID_LEN + 1];
	struct args a;
	struct keyset *ks = NULL;

	if (argc < 1 || strcmp(argv[0], "rotate") != 0 ||
	    parse_args(argc - 1, argv + 1, "--json", &a) != 0 || a.npos != 0) {
		fprintf(stderr, "usage: countersign keys rotate [--json]\n");
		return 2;
	}
	/* Make sure a first key exists, so rotation always has a predecessor. */
	if (keys_acquire(&ks) != CS_OK) {
		fprintf(stderr, "countersign: cannot load signing keys\n");
		return 1;
	}
	keys_release(ks);
	if (keys_rotate(actor, kid, sizeof(kid)) != CS_OK) {
		fprintf(stderr, "countersign: rotation failed\n");
		return 1;
	}
	if (a.json)
		print_json(json_pack("{s:s}", "kid", kid));
	else
		printf("new signing key %s is current\n", kid);
	return 0;
}

static int
cmd_migrate(void)
{
	char err[512];
	int applied = 0;

	if (migrate_run(&applied, err, sizeof(err)) != CS_OK) {
		fprintf(stderr, "countersign: migration failed: %s\n", err);
		return 1;
	}
	printf("migrations: %d applied, schema up to date\n", applied);
	return 0;
}

int
cli_run(const struct broker_config *cfg, int argc, char **argv)
{
	struct passwd *pw = getpwuid(geteuid());
	char errbuf[512];
	int rc;

	snprintf(actor, sizeof(actor), "admin:%.48s",
	    pw != NULL ? pw->pw_name : "unknown");
	if (db_init(cfg->database_url, cfg->db_connect_timeout,
	    cfg->db_statement_timeout) != 0)
		return 1;
	if (strcmp(argv[0], "migrate") == 0) {
		rc = cmd_migrate();
		goto out;
	}
	/* Everything else may hash secrets or touch keys. */
	if (keys_init(cfg, errbuf, sizeof(errbuf)) != 0) {
		fprintf(stderr, "countersign: %s\n", errbuf);
		rc = 1;
		goto out;
	}
	if (strcmp(argv[0], "agent") == 0)
		rc = cmd_agent(argc - 1, argv + 1);
	else if (strcmp(argv[0], "scope") == 0)
		rc = cmd_scope(argc - 1, argv + 1);
	else if (strcmp(argv[0], "grant") == 0)
		rc = cmd_grant(argc - 1, argv + 1);
	else if (strcmp(argv[0], "keys") == 0)
		rc = cmd_keys(argc - 1, argv + 1);
	else {
		cli_usage();
		rc = 2;
	}
	keys_shutdown();
out:
	db_shutdown();
	return rc;
}
