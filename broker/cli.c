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
#include "approvals.h"
#include "audit.h"
#include "b64.h"
#include "clientauth.h"
#include "cli.h"
#include "httpclient.h"
#include "db.h"
#include "grants.h"
#include "keys.h"
#include "log.h"
#include "migrate.h"
#include "services.h"
#include "tokens.h"
#include "tripwire.h"
#include "countersign/verify.h"
#include "util.h"

#define MAX_POS		4

/* Parsed arguments of one command: positionals and known --flags. */
struct args {
	const char *pos[MAX_POS];
	int npos;
	int json;
	const char *owner, *kind, *max_ttl, *audience, *expires_at;
	const char *approvals, *group, *uses, *groups, *email, *reason;
	const char *scope, *ttl, *url, *state, *jwks, *issuer;
	const char *threshold, *window;
	const char *from, *since, *until, *type, *agent, *jti, *checkpoint, *n;
	const char *public_key, *key_ttl;
	int follow;
	int revoke_tokens;
	int require_dpop;	/* -1 unless --require-dpop or --no-require-dpop */
	int end_of_options;
	int owner_may_approve;
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
	    "  agent add NAME [--owner EMAIL] [--public-key FILE] [--json]\n"
	    "  agent disable NAME\n"
	    "  agent rotate-secret NAME [--revoke-tokens] [--json]\n"
	    "                                      new secret; the old one stops\n"
	    "  agent resume NAME                   lift a tripwire's suspension\n"
	    "  agent list [--json]\n"
	    "  scope add NAME --kind read|write [--max-ttl DURATION]\n"
	    "            [--require-dpop|--no-require-dpop] [--json]\n"
	    "  scope list [--json]\n"
	    "  grant add AGENT SCOPE --audience AUD [--max-ttl DURATION]\n"
	    "            [--expires-at RFC3339] [--json]\n"
	    "  grant revoke ID | grant revoke AGENT SCOPE --audience AUD\n"
	    "  grant list [AGENT] [--json]\n"
	    "  approver add NAME --groups G[,G...] [--email EMAIL]\n"
	    "            [--key-ttl DURATION|0] [--json]\n"
	    "  approver disable NAME\n"
	    "  approver list [--json]\n"
	    "  approver rotate-key NAME [--key-ttl DURATION|0] [--json]\n"
	    "                                      new key; the old one and its\n"
	    "                                      web sessions stop working\n"
	    "  approver signout NAME [--json]      end the approver's web sessions\n"
	    "  approvals list [--state STATE] [--json]      (as an approver, over HTTP)\n"
	    "  approvals show ID [--json]\n"
	    "  approvals approve ID [--reason TEXT] [--scope S] [--ttl SECONDS] [--json]\n"
	    "  approvals deny ID --reason TEXT [--json]\n"
	    "  tripwire add KIND [--threshold N] [--window DURATION] [--agent NAME]\n"
	    "            [--json]      KIND: write_requests, denials, new_audience\n"
	    "  tripwire list [--json]\n"
	    "  tripwire remove ID\n"
	    "  service add NAME --audience AUD[,AUD...] [--public-key FILE] [--json]\n"
	    "  service list [--json]\n"
	    "  service disable NAME [--json]       its credentials stop working\n"
	    "  service rotate-secret NAME [--json] new secret; the old one stops\n"
	    "  token revoke JTI\n"
	    "  token verify --jwks URL|FILE [--audience AUD] [--issuer ISS] TOKEN\n"
	    "  audit verify [--from SEQ] [--checkpoint JWS] [--json]\n"
	    "  audit checkpoint [--json]\n"
	    "  audit export [--since T] [--until T] [--type TYPE] [--agent NAME] [--jti JTI]\n"
	    "  audit tail [--lines N] [--follow|-f]\n"
	    "  keys rotate [--json]\n"
	    "  keys retire [KID] [--json]\n"
	    "  keys list [--json]\n"
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
	a->require_dpop = -1;
	for (i = 0; i < argc; i++) {
		const char *arg = argv[i];
		const char **slot = NULL;

		/* "--" ends the options: a jti may itself begin with "--". */
		if (strcmp(arg, "--") == 0 && !a->end_of_options) {
			a->end_of_options = 1;
			continue;
		}
		/* tail's -f, as in tail(1): the one short option we take. */
		if (strcmp(arg, "-f") == 0 && !a->end_of_options &&
		    strstr(allowed, "--follow") != NULL) {
			a->follow = 1;
			continue;
		}
		if (a->end_of_options || strncmp(arg, "--", 2) != 0) {
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
		if (strcmp(arg, "--owner-may-approve") == 0) {
			a->owner_may_approve = 1;
			continue;
		}
		if (strcmp(arg, "--follow") == 0) {
			a->follow = 1;
			continue;
		}
		if (strcmp(arg, "--revoke-tokens") == 0) {
			a->revoke_tokens = 1;
			continue;
		}
		if (strcmp(arg, "--require-dpop") == 0 ||
		    strcmp(arg, "--no-require-dpop") == 0) {
			if (a->require_dpop != -1) {
				fprintf(stderr, "countersign: give --require-dpop "
				    "or --no-require-dpop once\n");
				return -1;
			}
			a->require_dpop = strcmp(arg, "--require-dpop") == 0;
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
		else if (strcmp(arg, "--approvals") == 0)
			slot = &a->approvals;
		else if (strcmp(arg, "--approver-group") == 0)
			slot = &a->group;
		else if (strcmp(arg, "--uses") == 0)
			slot = &a->uses;
		else if (strcmp(arg, "--groups") == 0)
			slot = &a->groups;
		else if (strcmp(arg, "--email") == 0)
			slot = &a->email;
		else if (strcmp(arg, "--reason") == 0)
			slot = &a->reason;
		else if (strcmp(arg, "--scope") == 0)
			slot = &a->scope;
		else if (strcmp(arg, "--ttl") == 0)
			slot = &a->ttl;
		else if (strcmp(arg, "--url") == 0)
			slot = &a->url;
		else if (strcmp(arg, "--state") == 0)
			slot = &a->state;
		else if (strcmp(arg, "--jwks") == 0)
			slot = &a->jwks;
		else if (strcmp(arg, "--issuer") == 0)
			slot = &a->issuer;
		else if (strcmp(arg, "--from") == 0)
			slot = &a->from;
		else if (strcmp(arg, "--since") == 0)
			slot = &a->since;
		else if (strcmp(arg, "--until") == 0)
			slot = &a->until;
		else if (strcmp(arg, "--type") == 0)
			slot = &a->type;
		else if (strcmp(arg, "--agent") == 0)
			slot = &a->agent;
		else if (strcmp(arg, "--jti") == 0)
			slot = &a->jti;
		else if (strcmp(arg, "--checkpoint") == 0)
			slot = &a->checkpoint;
		else if (strcmp(arg, "--lines") == 0)
			slot = &a->n;
		else if (strcmp(arg, "--threshold") == 0)
			slot = &a->threshold;
		else if (strcmp(arg, "--window") == 0)
			slot = &a->window;
		else if (strcmp(arg, "--public-key") == 0)
			slot = &a->public_key;
		else if (strcmp(arg, "--key-ttl") == 0)
			slot = &a->key_ttl;
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

/* agent add NAME --public-key FILE: an agent without a secret. */
static int
agent_add_keyed(const struct args *a)
{
	struct jose_key key;
	struct cs_error err;
	char client_id[CS_NAME_MAX + 1];
	int rc = 1;

	if (clientauth_load_key(a->public_key, &key, &err) != CS_OK)
		return fail(&err);
	if (clientauth_register(a->pos[0], a->owner, actor, &key, client_id,
	    &err) != CS_OK) {
		fail(&err);
		goto out;
	}
	if (a->json)
		print_json(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?}", "name",
		    a->pos[0], "client_id", client_id, "token_endpoint_auth_method",
		    "private_key_jwt", "key_alg", jose_alg_name(key.alg),
		    "key_thumbprint", key.kid, "owner", a->owner));
	else
		printf("agent %s created\nclient_id:      %s\n"
		    "authentication: private_key_jwt (%s)\n"
		    "key thumbprint: %s\n", a->pos[0], client_id,
		    jose_alg_name(key.alg), key.kid);
	rc = 0;
out:
	jose_key_clear(&key);
	return rc;
}

/*
 * Show a rotated secret once, then wipe it. kind is "agent" or "service";
 * their client_id is their name.
 */
static int
print_new_secret(const char *kind, const char *name, char *secret, int json)
{
	if (json)
		print_json(json_pack("{s:s, s:s, s:s}", "name", name,
		    "client_id", name, "client_secret", secret));
	else
		printf("%s %s has a new secret\nclient_secret: %s\n"
		    "(the secret is shown only once; the old one no longer "
		    "works)\n", kind, name, secret);
	util_secure_zero(secret, AGENTS_SECRET_LEN + 1);
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

		if (parse_args(argc - 1, argv + 1, "--owner --public-key --json",
		    &a) != 0 || a.npos != 1)
			goto usage;
		if (a.public_key != NULL)
			return agent_add_keyed(&a);
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
	if (strcmp(argv[0], "rotate-secret") == 0) {
		char secret[AGENTS_SECRET_LEN + 1];
		int64_t revoked = 0;

		if (parse_args(argc - 1, argv + 1, "--revoke-tokens --json",
		    &a) != 0 || a.npos != 1)
			goto usage;
		if (agents_rotate_secret(a.pos[0], a.revoke_tokens, actor, secret,
		    &revoked, &err) != CS_OK)
			return fail(&err);
		if (a.json) {
			json_t *o = json_pack("{s:s, s:s, s:s}", "name", a.pos[0],
			    "client_id", a.pos[0], "client_secret", secret);

			if (o != NULL && a.revoke_tokens)
				json_object_set_new(o, "tokens_revoked",
				    json_integer(revoked));
			print_json(o);
			util_secure_zero(secret, sizeof(secret));
			return 0;
		}
		if (a.revoke_tokens)
			printf("%lld live token(s) revoked\n", (long long)revoked);
		return print_new_secret("agent", a.pos[0], secret, 0);
	}
	if (strcmp(argv[0], "resume") == 0) {
		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (tripwire_resume(a.pos[0], actor, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:b}", "name", a.pos[0],
			    "resumed", 1));
		else
			printf("agent %s resumed\n", a.pos[0]);
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
	    "[--public-key FILE] [--json] | agent disable NAME |\n"
	    "       agent rotate-secret NAME [--revoke-tokens] [--json] | "
	    "agent resume NAME | "
	    "agent list [--json]\n");
	return 2;
}

static int
cmd_tripwire(int argc, char **argv)
{
	struct cs_error err;
	struct args a;
	int64_t id, threshold = 0, window = 0;

	if (argc < 1)
		goto usage;
	if (strcmp(argv[0], "add") == 0) {
		if (parse_args(argc - 1, argv + 1, "--threshold --window --agent "
		    "--json", &a) != 0 || a.npos != 1)
			goto usage;
		if (a.threshold != NULL && util_parse_int64(a.threshold, 0,
		    1000000, &threshold) != 0) {
			fprintf(stderr, "countersign: --threshold must be a number "
			    "from 0 to 1000000\n");
			return 2;
		}
		if (a.window != NULL && util_parse_duration(a.window,
		    &window) != 0) {
			fprintf(stderr, "countersign: --window expects a duration "
			    "such as 300, 10m or 1h\n");
			return 2;
		}
		if (tripwire_add(a.pos[0], threshold, window, a.agent, actor, &id,
		    &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:I, s:s, s:I, s:I, s:s?}", "id",
			    (json_int_t)id, "kind", a.pos[0], "threshold",
			    (json_int_t)threshold, "window_seconds",
			    (json_int_t)window, "agent", a.agent));
		else
			printf("tripwire %lld (%s) created\n", (long long)id,
			    a.pos[0]);
		return 0;
	}
	if (strcmp(argv[0], "remove") == 0) {
		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (util_parse_int64(a.pos[0], 1, INT64_MAX, &id) != 0) {
			fprintf(stderr, "countersign: ID must be a tripwire id\n");
			return 2;
		}
		if (tripwire_remove(id, actor, &err) != CS_OK)
			return fail(&err);
		printf("tripwire %lld removed\n", (long long)id);
		return 0;
	}
	if (strcmp(argv[0], "list") == 0) {
		json_t *list = NULL;
		enum cs_err rc;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 0)
			goto usage;
		rc = tripwire_list(&list);
		return print_list(rc, list, a.json, "tripwires");
	}
usage:
	fprintf(stderr, "usage: countersign tripwire add KIND [--threshold N] "
	    "[--window DURATION] [--agent NAME] [--json]\n"
	    "       countersign tripwire list [--json] | tripwire remove ID\n"
	    "KIND is write_requests, denials or new_audience (no threshold or "
	    "window).\n");
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
		struct scope_policy p;
		int64_t n;

		if (parse_args(argc - 1, argv + 1, "--kind --max-ttl --approvals "
		    "--approver-group --owner-may-approve --uses --require-dpop "
		    "--no-require-dpop --json", &a) != 0 || a.npos != 1 ||
		    a.kind == NULL)
			goto usage;
		if (parse_ttl_flag(a.max_ttl, &ttl) != 0)
			return 2;
		memset(&p, 0, sizeof(p));
		p.name = a.pos[0];
		p.kind = a.kind;
		p.max_ttl = ttl;
		p.approvals_required = 1;
		p.approver_group = a.group;
		p.owner_may_approve = a.owner_may_approve;
		p.require_dpop = a.require_dpop;
		if (a.approvals != NULL) {
			if (util_parse_int64(a.approvals, 1, 10, &n) != 0) {
				fprintf(stderr, "countersign: --approvals must be "
				    "between 1 and 10\n");
				return 2;
			}
			p.approvals_required = (int)n;
		}
		if (a.uses != NULL) {
			if (util_parse_int64(a.uses, 1, 1000000, &p.max_uses) != 0) {
				fprintf(stderr, "countersign: --uses must be between "
				    "1 and 1000000\n");
				return 2;
			}
		}
		if (grants_scope_add(&p, actor, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:s, s:I, s:b}", "name",
			    a.pos[0], "kind", a.kind, "max_ttl", (json_int_t)ttl,
			    "require_dpop", a.require_dpop < 0 ?
			    strcmp(a.kind, "read") != 0 : a.require_dpop));
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
	    "[--max-ttl DURATION] [--approvals N] [--approver-group G]\n"
	    "           [--owner-may-approve] [--uses N]\n"
	    "           [--require-dpop|--no-require-dpop] [--json]\n"
	    "       countersign scope list [--json]\n");
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
		/* 0 would mean "never" below; any past time is refused anyway. */
		if (a.expires_at != NULL && exp <= util_now()) {
			fprintf(stderr, "countersign: --expires-at is in the past\n");
			return 1;
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
cmd_keys(const struct broker_config *cfg, int argc, char **argv)
{
	char kid[JOSE_KID_LEN + 1];
	struct args a;
	struct keyset *ks = NULL;
	json_t *list = NULL;
	enum cs_err rc;

	if (argc < 1 || parse_args(argc - 1, argv + 1, "--json", &a) != 0)
		goto usage;
	if (strcmp(argv[0], "list") == 0 && a.npos == 0) {
		rc = keys_list(&list);
		return print_list(rc, list, a.json, "keys");
	}
	if (strcmp(argv[0], "retire") == 0 && a.npos <= 1) {
		/*
		 * A previous key must outlive every token it signed: the
		 * longest lifetime plus a margin for clock skew.
		 */
		rc = keys_retire(a.npos == 1 ? a.pos[0] : NULL,
		    cfg->max_ttl + cfg->key_retire_margin, actor, &list);
		if (rc != CS_OK) {
			json_decref(list);
			fprintf(stderr, "countersign: cannot retire keys\n");
			return 1;
		}
		if (a.json)
			print_json(json_pack("{s:o}", "retired", list));
		else {
			printf("%zu key(s) retired\n", json_array_size(list));
			json_decref(list);
		}
		return 0;
	}
	if (strcmp(argv[0], "rotate") != 0 || a.npos != 0)
		goto usage;
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
usage:
	fprintf(stderr, "usage: countersign keys rotate|retire [KID]|list "
	    "[--json]\n");
	return 2;
}

/* service add NAME --audience AUD --public-key FILE: no secret. */
static int
service_add_keyed(const struct args *a)
{
	struct jose_key key;
	struct cs_error err;
	int rc = 1;

	if (clientauth_load_key(a->public_key, &key, &err) != CS_OK)
		return fail(&err);
	if (clientauth_register_service(a->pos[0], a->audience, actor, &key,
	    &err) != CS_OK) {
		fail(&err);
		goto out;
	}
	if (a->json)
		print_json(json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "name",
		    a->pos[0], "client_id", a->pos[0],
		    "introspection_endpoint_auth_method", "private_key_jwt",
		    "key_alg", jose_alg_name(key.alg), "key_thumbprint", key.kid,
		    "audiences", a->audience));
	else
		printf("service %s created\nclient_id:      %s\n"
		    "authentication: private_key_jwt (%s)\n"
		    "key thumbprint: %s\n", a->pos[0], a->pos[0],
		    jose_alg_name(key.alg), key.kid);
	rc = 0;
out:
	jose_key_clear(&key);
	return rc;
}

static int
cmd_service(int argc, char **argv)
{
	struct cs_error err;
	struct args a;

	if (argc < 1)
		goto usage;
	if (strcmp(argv[0], "add") == 0) {
		char secret[AGENTS_SECRET_LEN + 1];

		if (parse_args(argc - 1, argv + 1, "--audience --public-key --json",
		    &a) != 0 || a.npos != 1 || a.audience == NULL)
			goto usage;
		if (a.public_key != NULL)
			return service_add_keyed(&a);
		if (services_add(a.pos[0], a.audience, actor, secret, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:s, s:s, s:s}", "name", a.pos[0],
			    "client_id", a.pos[0], "client_secret", secret,
			    "audiences", a.audience));
		else
			printf("service %s created\nclient_id:     %s\n"
			    "client_secret: %s\n(the secret is shown only once)\n",
			    a.pos[0], a.pos[0], secret);
		util_secure_zero(secret, sizeof(secret));
		return 0;
	}
	if (strcmp(argv[0], "list") == 0) {
		json_t *list = NULL;
		enum cs_err rc;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 0)
			goto usage;
		rc = services_list(&list);
		return print_list(rc, list, a.json, "services");
	}
	if (strcmp(argv[0], "disable") == 0) {
		int changed = 0;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (services_disable(a.pos[0], actor, &changed, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:b, s:b}", "name", a.pos[0],
			    "disabled", 1, "changed", changed));
		else
			printf("service %s disabled%s\n", a.pos[0],
			    changed ? "" : " (it already was)");
		return 0;
	}
	if (strcmp(argv[0], "rotate-secret") == 0) {
		char secret[AGENTS_SECRET_LEN + 1];

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (services_rotate_secret(a.pos[0], actor, secret, &err) !=
		    CS_OK)
			return fail(&err);
		return print_new_secret("service", a.pos[0], secret, a.json);
	}
usage:
	fprintf(stderr, "usage: countersign service add NAME --audience "
	    "AUD[,AUD...] [--public-key FILE] [--json] | service list "
	    "[--json] | service disable NAME [--json] | service rotate-secret "
	    "NAME [--json]\n");
	return 2;
}

/* countersign token verify: the verify library, from the command line. */
static int
cmd_token_verify(const struct broker_config *cfg, struct args *a)
{
	struct cs_verifier *v = NULL;
	struct cs_claims c;
	enum cs_verify_result r;
	char *body = NULL;
	long status = 0;
	int rc = 1;

	memset(&c, 0, sizeof(c));
	v = cs_verifier_new(a->issuer != NULL ? a->issuer : cfg->issuer,
	    a->audience);
	if (v == NULL)
		goto out;
	if (strncmp(a->jwks, "http://", 7) == 0 ||
	    strncmp(a->jwks, "https://", 8) == 0) {
		size_t len = 0;

		if (httpclient_global_init() != 0 ||
		    httpclient_request("GET", a->jwks, NULL, NULL, NULL, 0, 10,
		    &status, &body, &len) != 0 || status != 200 ||
		    cs_verifier_load_jwks(v, body, len) <= 0) {
			fprintf(stderr, "countersign: cannot load a JWKS from %s\n",
			    a->jwks);
			goto out;
		}
	} else if (cs_verifier_load_jwks_file(v, a->jwks) <= 0) {
		fprintf(stderr, "countersign: cannot load a JWKS from %s\n",
		    a->jwks);
		goto out;
	}
	r = cs_verify(v, a->pos[1], &c);
	if (r != CS_VERIFY_OK) {
		printf("invalid: %s\n", cs_verify_result_name(r));
		goto out;
	}
	printf("%s\n", c.json);
	rc = 0;
out:
	cs_claims_clear(&c);
	cs_verifier_free(v);
	free(body);
	return rc;
}

static int
cmd_token(const struct broker_config *cfg, int argc, char **argv)
{
	struct cs_error err;
	struct args a;
	int revoked = 0;

	if (parse_args(argc, argv, "--jwks --audience --issuer --json", &a) != 0)
		goto usage;
	if (a.npos == 2 && strcmp(a.pos[0], "verify") == 0 && a.jwks != NULL)
		return cmd_token_verify(cfg, &a);
	if (a.npos == 2 && strcmp(a.pos[0], "revoke") == 0) {
		if (!util_valid_id(a.pos[1], strlen(a.pos[1])))
			goto usage;
		if (db_init(cfg->database_url, cfg->db_connect_timeout,
		    cfg->db_statement_timeout) != 0)
			return 1;
		if (tokens_revoke_jti(a.pos[1], 0, actor, "cli", &revoked,
		    &err) != CS_OK)
			return fail(&err);
		if (!revoked) {
			fprintf(stderr, "countersign: no live token with jti %s\n",
			    a.pos[1]);
			return 1;
		}
		if (a.json)
			print_json(json_pack("{s:s, s:b}", "jti", a.pos[1],
			    "revoked", 1));
		else
			printf("token %s revoked\n", a.pos[1]);
		return 0;
	}
usage:
	fprintf(stderr, "usage: countersign token revoke JTI | token verify "
	    "--jwks URL|FILE [--audience AUD] [--issuer ISS] TOKEN\n");
	return 2;
}

/*
 * --key-ttl DURATION: how long a new approver key lasts; 0 or "never" for
 * no expiry; approver_key_ttl when not given.
 */
static int
parse_key_ttl(const struct broker_config *cfg, const char *text,
    int64_t *out)
{
	*out = cfg->approver_key_ttl;
	if (text == NULL)
		return 0;
	if (strcmp(text, "0") == 0 || strcmp(text, "never") == 0) {
		*out = 0;
		return 0;
	}
	if (util_parse_duration(text, out) != 0) {
		fprintf(stderr, "countersign: --key-ttl expects a duration such "
		    "as 90d or 12h (at most 366d), or 0 for no expiry\n");
		return -1;
	}
	return 0;
}

/* The expiry line of approver add and rotate-key. */
static void
print_key_expiry(const char *expires)
{
	if (expires[0] != '\0')
		printf("the key expires at %s\n", expires);
	else
		printf("the key does not expire\n");
}

static int
cmd_approver(const struct broker_config *cfg, int argc, char **argv)
{
	struct cs_error err;
	struct args a;
	char expires[64];
	int64_t key_ttl;

	if (argc < 1)
		goto usage;
	if (strcmp(argv[0], "add") == 0) {
		char key[APPROVALS_KEY_LEN + 1];

		if (parse_args(argc - 1, argv + 1, "--groups --email --key-ttl "
		    "--json", &a) != 0 || a.npos != 1 || a.groups == NULL)
			goto usage;
		if (parse_key_ttl(cfg, a.key_ttl, &key_ttl) != 0)
			return 2;
		if (approvals_approver_add(a.pos[0], a.email, a.groups, key_ttl,
		    actor, key, expires, sizeof(expires), &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "name",
			    a.pos[0], "api_key", key, "groups", a.groups, "email",
			    a.email, "key_expires_at", expires[0] != '\0' ?
			    expires : NULL));
		else {
			printf("approver %s created\napi_key: %s\n"
			    "(the key is shown only once)\n", a.pos[0], key);
			print_key_expiry(expires);
		}
		util_secure_zero(key, sizeof(key));
		return 0;
	}
	if (strcmp(argv[0], "disable") == 0) {
		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (approvals_approver_disable(a.pos[0], actor, &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:b}", "name", a.pos[0],
			    "disabled", 1));
		else
			printf("approver %s disabled\n", a.pos[0]);
		return 0;
	}
	if (strcmp(argv[0], "rotate-key") == 0) {
		char key[APPROVALS_KEY_LEN + 1];

		if (parse_args(argc - 1, argv + 1, "--key-ttl --json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (parse_key_ttl(cfg, a.key_ttl, &key_ttl) != 0)
			return 2;
		if (approvals_approver_rotate_key(a.pos[0], key_ttl, actor, key,
		    expires, sizeof(expires), &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:s, s:s?}", "name", a.pos[0],
			    "api_key", key, "key_expires_at", expires[0] != '\0' ?
			    expires : NULL));
		else {
			printf("approver %s has a new key; the old one and its "
			    "web sessions no longer work\napi_key: %s\n"
			    "(the key is shown only once)\n", a.pos[0], key);
			print_key_expiry(expires);
		}
		util_secure_zero(key, sizeof(key));
		return 0;
	}
	if (strcmp(argv[0], "signout") == 0) {
		int64_t ended = 0;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 1)
			goto usage;
		if (approvals_approver_signout(a.pos[0], actor, &ended,
		    &err) != CS_OK)
			return fail(&err);
		if (a.json)
			print_json(json_pack("{s:s, s:I}", "name", a.pos[0],
			    "sessions_ended", (json_int_t)ended));
		else
			printf("approver %s: %lld web session(s) ended\n",
			    a.pos[0], (long long)ended);
		return 0;
	}
	if (strcmp(argv[0], "list") == 0) {
		json_t *list = NULL;
		enum cs_err rc;

		if (parse_args(argc - 1, argv + 1, "--json", &a) != 0 ||
		    a.npos != 0)
			goto usage;
		rc = approvals_approver_list(&list);
		return print_list(rc, list, a.json, "approvers");
	}
usage:
	fprintf(stderr, "usage: countersign approver add NAME --groups G[,G...] "
	    "[--email EMAIL] [--key-ttl DURATION|0] [--json]\n"
	    "       | approver disable NAME | approver rotate-key NAME "
	    "[--key-ttl DURATION|0] [--json]\n"
	    "       | approver signout NAME [--json] | approver list [--json]\n");
	return 2;
}

/*
 * One call to the broker's approver API with the key from
 * COUNTERSIGN_APPROVER_KEY. Returns the HTTP status (0 on transport
 * failure) and the parsed JSON body in *out (may be NULL).
 */
static long
approver_call(const char *base, const char *method, const char *path,
    json_t *body, json_t **out)
{
	const char *key = getenv("COUNTERSIGN_APPROVER_KEY");
	char url[1200], *text = NULL, *resp = NULL;
	long status = 0;

	*out = NULL;
	if (key == NULL || key[0] == '\0') {
		fprintf(stderr, "countersign: set COUNTERSIGN_APPROVER_KEY to your "
		    "approver key\n");
		return 0;
	}
	snprintf(url, sizeof(url), "%s%s", base, path);
	if (body != NULL)
		text = json_dumps(body, JSON_COMPACT);
	if (httpclient_request(method, url, key, text != NULL ?
	    "application/json" : NULL, text, text != NULL ? strlen(text) : 0,
	    10, &status, &resp, NULL) != 0) {
		fprintf(stderr, "countersign: cannot reach %s\n", base);
		status = 0;
	} else if (resp != NULL) {
		*out = json_loads(resp, 0, NULL);
	}
	free(text);
	free(resp);
	return status;
}

static int
api_failed(long status, json_t *body)
{
	if (status != 0)
		fprintf(stderr, "countersign: %ld %s: %s\n", status,
		    json_string_value(json_object_get(body, "error")) ?
		    json_string_value(json_object_get(body, "error")) : "error",
		    json_string_value(json_object_get(body, "error_description")) ?
		    json_string_value(json_object_get(body, "error_description")) :
		    "");
	json_decref(body);
	return 1;
}

/* One line per request for humans. */
static void
print_request(const json_t *r)
{
	const json_t *s, *check;
	size_t i;

	printf("%s  %-8s agent=%s scopes=", json_string_value(json_object_get(r,
	    "id")), json_string_value(json_object_get(r, "state")),
	    json_string_value(json_object_get(r, "agent")));
	json_array_foreach(json_object_get(r, "scopes"), i, s)
		printf("%s%s%s", i > 0 ? "," : "",
		    json_string_value(json_object_get(s, "name")),
		    strcmp(json_string_value(json_object_get(s, "kind")), "read") ?
		    "(WRITE)" : "");
	printf(" audience=%s ttl=%llds approvals=%lld/%lld expires_in=%llds\n"
	    "    why: %s\n", json_string_value(json_object_get(r, "audience")),
	    (long long)json_integer_value(json_object_get(r, "ttl")),
	    (long long)json_integer_value(json_object_get(r, "approvals")),
	    (long long)json_integer_value(json_object_get(r,
	    "approvals_required")),
	    (long long)json_integer_value(json_object_get(r, "expires_in")),
	    json_string_value(json_object_get(r, "binding_message")));
	/* What exactly would be done: the approver must see it to judge it. */
	json_array_foreach(json_object_get(r, "authorization_details"), i, s) {
		const char *digest = json_string_value(json_object_get(s,
		    "action_digest"));
		const char *preview = json_string_value(json_object_get(s,
		    "preview"));

		printf("    action: %s%s%s\n", json_string_value(json_object_get(s,
		    "type")), digest != NULL ? " digest=" : "",
		    digest != NULL ? digest : "");
		check = json_array_get(json_object_get(r, "preview_checks"), i);
		if (preview != NULL)
			printf("    preview%s: %s\n", json_is_true(check) ?
			    " (exact: its SHA-256 is the digest)" : json_is_false(check) ?
			    " (WARNING: NOT the content the digest binds)" :
			    " (the agent's description, not checked)", preview);
	}
}

static int
cmd_approvals(const struct broker_config *cfg, int argc, char **argv)
{
	struct args a;
	const char *base;
	char path[256];
	json_t *body = NULL;
	long status;
	size_t i;

	if (argc < 1)
		goto usage;
	if (parse_args(argc - 1, argv + 1, "--state --reason --scope --ttl "
	    "--url --json", &a) != 0)
		goto usage;
	base = a.url != NULL ? a.url : getenv("COUNTERSIGN_URL") != NULL ?
	    getenv("COUNTERSIGN_URL") : cfg->issuer;
	if (httpclient_global_init() != 0)
		return 1;
	if (strcmp(argv[0], "list") == 0 && a.npos == 0) {
		json_t *r;

		snprintf(path, sizeof(path), "/v1/approvals?state=%s",
		    a.state != NULL && util_valid_name(a.state) ? a.state : "pending");
		status = approver_call(base, "GET", path, NULL, &body);
		if (status != 200)
			return api_failed(status, body);
		if (a.json)
			print_json(json_incref(json_object_get(body, "approvals")));
		else
			json_array_foreach(json_object_get(body, "approvals"), i, r)
				print_request(r);
		json_decref(body);
		return 0;
	}
	if (a.npos != 1 || !util_valid_id(a.pos[0], strlen(a.pos[0])))
		goto usage;
	snprintf(path, sizeof(path), "/v1/approvals/%s", a.pos[0]);
	status = approver_call(base, "GET", path, NULL, &body);
	if (status != 200)
		return api_failed(status, body);
	if (strcmp(argv[0], "show") == 0) {
		if (a.json)
			print_json(body);
		else {
			print_request(body);
			json_decref(body);
		}
		return 0;
	}
	if (strcmp(argv[0], "approve") == 0 || strcmp(argv[0], "deny") == 0) {
		int approve = strcmp(argv[0], "approve") == 0;
		json_t *req, *result = NULL;
		int64_t ttl = 0;

		if (!approve && a.reason == NULL) {
			json_decref(body);
			goto usage;
		}
		/* Bind the decision to the parameters we just fetched. */
		req = json_pack("{s:s, s:s*}", "params_hash", json_string_value(
		    json_object_get(body, "params_hash")), "reason", a.reason);
		json_decref(body);
		if (approve && a.scope != NULL)
			json_object_set_new(req, "scope", json_string(a.scope));
		if (approve && a.ttl != NULL) {
			if (util_parse_int64(a.ttl, 1, UTIL_DURATION_MAX, &ttl) != 0) {
				json_decref(req);
				goto usage;
			}
			json_object_set_new(req, "ttl", json_integer(ttl));
		}
		snprintf(path, sizeof(path), "/v1/approvals/%s/%s", a.pos[0],
		    approve ? "approve" : "deny");
		status = approver_call(base, "POST", path, req, &result);
		json_decref(req);
		if (status != 200)
			return api_failed(status, result);
		if (a.json)
			print_json(result);
		else {
			printf("%s: %s\n", approve ? "approved" : "denied",
			    a.pos[0]);
			print_request(result);
			json_decref(result);
		}
		return 0;
	}
	json_decref(body);
usage:
	fprintf(stderr, "usage: countersign approvals list [--state STATE] "
	    "[--json] | approvals show ID\n"
	    "       countersign approvals approve ID [--reason TEXT] [--scope S] "
	    "[--ttl SECONDS] [--json]\n"
	    "       countersign approvals deny ID --reason TEXT [--json]\n"
	    "(the approver key comes from COUNTERSIGN_APPROVER_KEY, the broker URL "
	    "from --url, COUNTERSIGN_URL or the issuer)\n");
	return 2;
}

/*
 * The seq after which the last $1 events are: counted as events, not as
 * sequence numbers, which have gaps where a transaction rolled back.
 */
static const struct db_stmt tail_start = {
	"cli_audit_tail_start",
	"SELECT CASE WHEN $1::bigint = 0 THEN (SELECT coalesce(max(seq), 0) "
	"FROM audit_events) ELSE (SELECT coalesce(min(seq) - 1, 0) FROM "
	"(SELECT seq FROM audit_events ORDER BY seq DESC LIMIT $1::bigint) x) "
	"END",
	1
};

static const struct db_stmt checkpoint_insert = {
	"cli_audit_checkpoint",
	"WITH c AS (INSERT INTO audit_checkpoints (head_seq, head_hash, kid, jws) "
	"VALUES ($1::bigint, decode($2, 'hex'), $3, $4) RETURNING id) "
	"INSERT INTO audit_events (type, actor, subject, details) "
	"SELECT 'audit.checkpoint', $5, 'audit', jsonb_build_object('head_seq', "
	"$1::bigint, 'head_hash', $2::text, 'kid', $3::text, 'checkpoint_id', "
	"c.id) FROM c RETURNING seq",
	5
};

static const struct db_stmt chain_at = {
	"cli_audit_chain_at",
	"SELECT encode(hash, 'hex') FROM audit_chain WHERE seq = $1::bigint",
	1
};

static const struct db_stmt can_seal = {
	"cli_audit_can_seal",
	"SELECT has_table_privilege('audit_chain', 'INSERT')",
	0
};

/*
 * Seal batch after batch until the sealer has caught up. Only a role that
 * may extend the chain (the broker's) seals: an auditor's read-only role
 * reads what the brokers have sealed, without a permission error.
 */
static enum cs_err
seal_all(const struct broker_config *cfg)
{
	struct db_result *res = NULL;
	enum cs_err rc;
	int sealed = 0, may;

	if ((rc = db_exec(&can_seal, NULL, &res)) != CS_OK)
		return rc;
	may = strcmp(db_value(res, 0, 0), "t") == 0;
	db_result_free(res);
	if (!may)
		return CS_OK;
	do
		rc = audit_seal(cfg->audit_gap_grace, &sealed);
	while (rc == CS_OK && sealed >= AUDIT_SEAL_BATCH);
	return rc;
}

/*
 * Print the events after seq after as JSON Lines; with follow, keep
 * printing new ones. Following pages by seq, but seq order is not commit
 * order: a transaction that drew seq 10 may commit after seq 11 was
 * printed, and a reader that only asks for seq > 11 never sees it. So
 * follow prints sealed events only: the sealer chains events in seq order
 * and waits at a missing seq until it commits or is old enough to be a
 * rolled-back number (audit_gap_grace), so the sealed events are a prefix
 * of the log with no holes and never gain one behind us. The cost is the
 * sealer's delay: normally under 200 ms, up to audit_gap_grace behind a
 * rolled-back number. Following also seals each round where its role
 * may, so it works without a running broker.
 */
static int
audit_export(const struct broker_config *cfg, struct args *a, int64_t after,
    int follow)
{
	struct audit_filter f;

	memset(&f, 0, sizeof(f));
	f.sealed = follow;
	if (a->since != NULL && util_parse_rfc3339(a->since, &f.since) != 0)
		return 2;
	if (a->until != NULL && util_parse_rfc3339(a->until, &f.until) != 0)
		return 2;
	f.type = a->type;
	f.agent = a->agent;
	f.jti = a->jti;
	for (;;) {
		json_t *events = NULL, *e;
		size_t i, n;

		if (follow)
			(void)seal_all(cfg);
		if (audit_page(&f, after, 1000, &events, &after) != CS_OK) {
			fprintf(stderr, "countersign: database error\n");
			return 1;
		}
		/* One page in memory at a time, whatever the size of the log. */
		json_array_foreach(events, i, e) {
			char *text = json_dumps(e, JSON_COMPACT);

			if (text == NULL) {
				json_decref(events);
				return 1;
			}
			fputs(text, stdout);
			fputc('\n', stdout);
			free(text);
		}
		n = json_array_size(events);
		json_decref(events);
		if (n == 1000)
			continue;
		fflush(stdout);
		if (!follow)
			return 0;
		sleep(1);
	}
}

static int
audit_checkpoint(const struct broker_config *cfg, int as_json)
{
	struct keyset *ks = NULL;
	unsigned char hash[AUDIT_HASH_LEN];
	char hex[2 * AUDIT_HASH_LEN + 1], b64[64], seqbuf[24], *payload = NULL;
	char *jws = NULL;
	const struct jose_key *key;
	const char *params[5];
	int64_t seq = 0;
	json_t *p = NULL;
	int rc = 1, i;

	/* Seal what is committed, so the checkpoint covers it. */
	if (seal_all(cfg) != CS_OK ||
	    audit_head(&seq, hash) != CS_OK || keys_acquire(&ks) != CS_OK) {
		fprintf(stderr, "countersign: cannot read the audit chain\n");
		goto out;
	}
	for (i = 0; i < AUDIT_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", hash[i]);
	b64_url_encode(hash, sizeof(hash), b64);
	key = keys_signing(ks);
	p = json_pack("{s:s, s:I, s:s, s:I}", "iss", cfg->issuer, "head_seq",
	    (json_int_t)seq, "head_hash", b64, "iat", (json_int_t)util_now());
	payload = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
	jws = payload != NULL ? jose_sign(key, "audit-checkpoint+jwt", payload,
	    strlen(payload)) : NULL;
	if (jws == NULL)
		goto out;
	snprintf(seqbuf, sizeof(seqbuf), "%lld", (long long)seq);
	params[0] = seqbuf;
	params[1] = hex;
	params[2] = key->kid;
	params[3] = jws;
	params[4] = actor;
	if (db_exec(&checkpoint_insert, params, NULL) != CS_OK) {
		fprintf(stderr, "countersign: cannot record the checkpoint\n");
		goto out;
	}
	if (as_json)
		print_json(json_pack("{s:I, s:s, s:s, s:s}", "head_seq",
		    (json_int_t)seq, "head_hash", hex, "kid", key->kid,
		    "checkpoint", jws));
	else
		printf("%s\n", jws);
	rc = 0;
out:
	keys_release(ks);
	json_decref(p);
	free(payload);
	free(jws);
	return rc;
}

/* Check that the chain still holds the head a checkpoint signed. */
static int
check_checkpoint(const char *jws, char *problem, size_t cap)
{
	struct keyset *ks = NULL;
	const struct jose_key *const *keys;
	struct db_result *res = NULL;
	unsigned char hash[AUDIT_HASH_LEN + 1];
	char seqbuf[24], hex[2 * AUDIT_HASH_LEN + 1];
	const char *params[1], *b64;
	json_t *claims = NULL;
	size_t n, len = 0;
	int ok = 0, i;

	if (keys_acquire(&ks) != CS_OK) {
		snprintf(problem, cap, "cannot load signing keys");
		goto out;
	}
	keys = keys_verifying(ks, &n);
	if (jose_verify(jws, strlen(jws), "audit-checkpoint+jwt", keys, n,
	    &claims) != JOSE_OK) {
		snprintf(problem, cap, "the checkpoint's signature does not "
		    "verify with the broker's keys");
		goto out;
	}
	b64 = json_string_value(json_object_get(claims, "head_hash"));
	if (!json_is_integer(json_object_get(claims, "head_seq")) || b64 == NULL ||
	    b64_url_decode(b64, strlen(b64), hash, sizeof(hash), &len) != 0 ||
	    len != AUDIT_HASH_LEN) {
		snprintf(problem, cap, "malformed checkpoint");
		goto out;
	}
	snprintf(seqbuf, sizeof(seqbuf), "%lld",
	    (long long)json_integer_value(json_object_get(claims, "head_seq")));
	for (i = 0; i < AUDIT_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", hash[i]);
	params[0] = seqbuf;
	if (db_exec(&chain_at, params, &res) != CS_OK) {
		snprintf(problem, cap, "database error");
		goto out;
	}
	if (db_nrows(res) != 1 || strcmp(db_value(res, 0, 0), hex) != 0) {
		snprintf(problem, cap, "the chain no longer holds the head the "
		    "checkpoint signed at seq %s: the log was rewritten", seqbuf);
		goto out;
	}
	ok = 1;
out:
	keys_release(ks);
	json_decref(claims);
	db_result_free(res);
	return ok;
}

static int
cmd_audit(const struct broker_config *cfg, int argc, char **argv)
{
	char errbuf[512];
	struct args a;
	int64_t from = 1, n = 20;
	int rc;

	if (argc < 1 || parse_args(argc - 1, argv + 1, "--from --checkpoint "
	    "--since --until --type --agent --jti --lines --follow --json",
	    &a) != 0 || a.npos != 0)
		goto usage;
	/* Only checkpoints need the broker's keys; auditors need no secret. */
	if ((strcmp(argv[0], "checkpoint") == 0 || a.checkpoint != NULL) &&
	    keys_init(cfg, errbuf, sizeof(errbuf)) != 0) {
		fprintf(stderr, "countersign: %s\n", errbuf);
		return 1;
	}
	if (strcmp(argv[0], "checkpoint") == 0)
		return audit_checkpoint(cfg, a.json);
	if (strcmp(argv[0], "export") == 0)
		return audit_export(cfg, &a, 0, 0);
	if (strcmp(argv[0], "tail") == 0) {
		struct db_result *res = NULL;
		char nbuf[24];
		const char *params[1];
		int64_t start = 0;

		if (a.n != NULL && util_parse_int64(a.n, 0, 100000, &n) != 0)
			goto usage;
		snprintf(nbuf, sizeof(nbuf), "%lld", (long long)n);
		params[0] = nbuf;
		if (db_exec(&tail_start, params, &res) != CS_OK) {
			fprintf(stderr, "countersign: database error\n");
			return 1;
		}
		util_parse_int64(db_value(res, 0, 0), INT64_MIN, INT64_MAX, &start);
		db_result_free(res);
		return audit_export(cfg, &a, start > 0 ? start : 0, a.follow);
	}
	if (strcmp(argv[0], "verify") == 0) {
		struct audit_report r;
		char hex[2 * AUDIT_HASH_LEN + 1], problem[256] = "";
		int i, cp_ok = 1;

		if (a.from != NULL && util_parse_int64(a.from, 1, INT64_MAX,
		    &from) != 0)
			goto usage;
		/* Seal what is committed first, so the tail is only what is new. */
		seal_all(cfg);
		if (audit_verify(from, &r) != CS_OK) {
			fprintf(stderr, "countersign: database error\n");
			return 1;
		}
		if (r.ok && a.checkpoint != NULL)
			cp_ok = check_checkpoint(a.checkpoint, problem,
			    sizeof(problem));
		for (i = 0; i < AUDIT_HASH_LEN; i++)
			snprintf(hex + 2 * i, 3, "%02x", r.head_hash[i]);
		if (a.json)
			print_json(json_pack("{s:b, s:I, s:I, s:s, s:I, s:I, s:I, "
			    "s:s*, s:s*}", "ok", r.ok && cp_ok, "checked",
			    (json_int_t)r.checked, "head_seq", (json_int_t)r.head_seq,
			    "head_hash", hex, "unsealed", (json_int_t)r.tail_count,
			    "unsealed_age", (json_int_t)r.tail_age,
			    "bad_seq", (json_int_t)r.bad_seq,
			    "problem", r.ok ? NULL : r.problem,
			    "checkpoint_problem", cp_ok ? NULL : problem));
		else if (!r.ok)
			printf("audit chain BROKEN at seq %lld: %s\n",
			    (long long)r.bad_seq, r.problem);
		else {
			printf("audit chain ok: %lld links checked, head seq %lld "
			    "hash %s; %lld newer events not sealed yet (oldest %llds)\n",
			    (long long)r.checked, (long long)r.head_seq, hex,
			    (long long)r.tail_count, (long long)r.tail_age);
			if (!cp_ok)
				printf("checkpoint FAILED: %s\n", problem);
		}
		rc = r.ok && cp_ok ? 0 : 3;
		return rc;
	}
usage:
	fprintf(stderr, "usage: countersign audit verify [--from SEQ] "
	    "[--checkpoint JWS] [--json] | audit checkpoint [--json]\n"
	    "       countersign audit export [--since RFC3339] [--until RFC3339] "
	    "[--type TYPE] [--agent NAME] [--jti JTI]\n"
	    "       countersign audit tail [--lines N] [--follow|-f]\n");
	return 2;
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
	/* Approvers act through the HTTP API, with neither database nor keys. */
	if (strcmp(argv[0], "approvals") == 0)
		return cmd_approvals(cfg, argc - 1, argv + 1);
	if (strcmp(argv[0], "token") == 0) {
		rc = cmd_token(cfg, argc - 1, argv + 1);
		db_shutdown();
		return rc;
	}
	/*
	 * Migrations run as the database owner; everything else as the
	 * broker's role, which cannot rewrite the audit log.
	 */
	if (db_init(strcmp(argv[0], "migrate") == 0 &&
	    cfg->migrate_database_url[0] != '\0' ? cfg->migrate_database_url :
	    cfg->database_url, cfg->db_connect_timeout,
	    cfg->db_statement_timeout) != 0)
		return 1;
	if (strcmp(argv[0], "migrate") == 0) {
		rc = cmd_migrate();
		goto out;
	}
	if (strcmp(argv[0], "audit") == 0) {
		rc = cmd_audit(cfg, argc - 1, argv + 1);
		keys_shutdown();
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
		rc = cmd_keys(cfg, argc - 1, argv + 1);
	else if (strcmp(argv[0], "service") == 0)
		rc = cmd_service(argc - 1, argv + 1);
	else if (strcmp(argv[0], "approver") == 0)
		rc = cmd_approver(cfg, argc - 1, argv + 1);
	else if (strcmp(argv[0], "tripwire") == 0)
		rc = cmd_tripwire(argc - 1, argv + 1);
	else {
		cli_usage();
		rc = 2;
	}
	keys_shutdown();
out:
	db_shutdown();
	return rc;
}
