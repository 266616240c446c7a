/*
 * approvals.h: step-up approval of write scopes by human approvers.
 *
 * An agent asks (approvals_request, behind POST /oauth2/bc-authorize); the
 * request's parameters are fixed and bound by a hash. Approvers, a separate
 * realm authenticated by their own API keys, see exactly those parameters
 * and decide (approvals_decide); a decision may narrow but never widen.
 * Once the quorum is reached the agent collects exactly one token
 * (approvals_collect, behind the CIBA grant of POST /oauth2/token); the
 * request is consumed in the same transaction as the token is recorded.
 * Every state change writes its audit event in the same transaction.
 */
#ifndef APPROVALS_H
#define APPROVALS_H

#include <stdint.h>
#include <jansson.h>

#include "agents.h"
#include "config.h"
#include "countersign.h"
#include "scopes.h"
#include "tokens.h"

#define APPROVALS_ID_LEN		22	/* 16 random bytes, base64url */
#define APPROVALS_KEY_LEN		43	/* approver API key */
#define APPROVALS_MESSAGE_MAX		1024	/* binding_message, bytes */
#define APPROVALS_DETAILS_MAX		4096	/* authorization_details, bytes */
#define APPROVALS_REASON_MAX		1024	/* decision reason, bytes */
#define APPROVALS_GROUPS_MAX		16

struct approver {
	int64_t id;
	char name[CS_NAME_MAX + 1];
	char email[257];
	char *groups[APPROVALS_GROUPS_MAX];	/* owned */
	size_t ngroups;
};

/* approvals_approver_clear(a): free what a holds. NULL-safe. */
void approvals_approver_clear(struct approver *a);

/*
 * approvals_approver_fill(out, id, name, email, groups): out from the text
 * of an approvers row (groups as a PostgreSQL array literal), as both the
 * key and the web-session authenticators read it. 0, or -1; the caller
 * clears out either way.
 */
int approvals_approver_fill(struct approver *out, const char *id,
    const char *name, const char *email, const char *groups);

/*
 * approvals_approver_add(name, email, groups, key_ttl, actor, key, expires,
 * expires_cap, err): create an approver in the comma-separated groups with
 * a new random API key, stored only as an HMAC, that expires after key_ttl
 * seconds (0: never); audit approver.created. key (APPROVALS_KEY_LEN + 1
 * bytes) receives the key, shown once; the caller wipes it. expires (may
 * be NULL) receives the expiry as PostgreSQL prints it, "" for none.
 */
enum cs_err approvals_approver_add(const char *name, const char *email,
    const char *groups, int64_t key_ttl, const char *actor, char *key,
    char *expires, size_t expires_cap, struct cs_error *err);

/*
 * approvals_approver_rotate_key(name, key_ttl, actor, key, expires,
 * expires_cap, err): a new API key for an enabled approver into key
 * (APPROVALS_KEY_LEN + 1 bytes; shown once, only its HMAC is stored),
 * expiring after key_ttl seconds (0: never; expires as for
 * approvals_approver_add). The old key stops working at once and the
 * approver's web sessions end; audited approver.key_rotated.
 * CS_ERR_NOT_FOUND if there is no such enabled approver.
 */
enum cs_err approvals_approver_rotate_key(const char *name, int64_t key_ttl,
    const char *actor, char *key, char *expires, size_t expires_cap,
    struct cs_error *err);

/*
 * approvals_approver_signout(name, actor, ended, err): end every web
 * session of the approver (the key keeps working); *ended says how many.
 * Audited approver.signed_out (via cli). CS_ERR_NOT_FOUND if unknown.
 */
enum cs_err approvals_approver_signout(const char *name, const char *actor,
    int64_t *ended, struct cs_error *err);

/* approvals_approver_disable(name, actor, err): the key stops working. */
enum cs_err approvals_approver_disable(const char *name, const char *actor,
    struct cs_error *err);

/* approvals_approver_list(out): a new JSON array of approvers (no keys). */
enum cs_err approvals_approver_list(json_t **out);

/*
 * approvals_authenticate(authorization, out, err): authenticate an
 * approver by "Authorization: Bearer KEY". Failures are audited as
 * approver.auth_failed and return CS_ERR_INVALID_TOKEN. The caller clears
 * out with approvals_approver_clear.
 */
enum cs_err approvals_authenticate(const char *authorization,
    struct approver *out, struct cs_error *err);

/*
 * approvals_authenticate_key(key, out, err): the same for the bare key, as
 * the web page's sign-in form submits it (NULL counts as missing). Same
 * audit events, errors and ownership of out.
 */
enum cs_err approvals_authenticate_key(const char *key, struct approver *out,
    struct cs_error *err);

/* What an agent asks for at bc-authorize. */
struct approval_ask {
	const struct client *client;
	const struct scope_list *scopes;
	const char *audience;
	int64_t requested_ttl;		/* 0: default */
	int64_t requested_expiry;	/* 0: the configured approval timeout */
	const char *binding_message;
	const char *authorization_details;	/* JSON text or NULL */
};

/*
 * approvals_check_text(s): 1 if s is fine to show a human: valid UTF-8, no
 * control characters but newline and tab (C1 included), and nothing that
 * changes the display while staying invisible: bidirectional overrides
 * and isolates, zero-width characters and joiners, the soft hyphen, line
 * and paragraph separators, the byte order mark, tag characters.
 */
int approvals_check_text(const char *s);

/*
 * approvals_parse_details(text, out, err): validate an RFC 9396
 * authorization_details array (1-4 objects, each with a "type"; optional
 * "action_digest" of the form sha256:<64 hex> or sha256:<43 base64url>,
 * optional "preview" text) and return it as a new JSON array.
 */
enum cs_err approvals_parse_details(const char *text, json_t **out,
    struct cs_error *err);

/*
 * approvals_request(cfg, ask, id, expires_in, interval, err): check the
 * grants (every scope known and granted for the audience, at least one
 * write scope), then record a pending request with its parameter hash and
 * an approval.requested event, and notify approvers. id receives the
 * auth_req_id (APPROVALS_ID_LEN + 1 bytes).
 */
enum cs_err approvals_request(const struct broker_config *cfg,
    const struct approval_ask *ask, char *id, int64_t *expires_in,
    int64_t *interval, struct cs_error *err);

/*
 * approvals_list(approver, state, out): requests in state ("pending" when
 * NULL, or "all") whose write scopes this approver may decide, as a new
 * JSON array.
 */
enum cs_err approvals_list(const struct approver *approver, const char *state,
    json_t **out, struct cs_error *err);

/* approvals_get(approver, id, out, err): one request; 404 or 403. */
enum cs_err approvals_get(const struct approver *approver, const char *id,
    json_t **out, struct cs_error *err);

/* A decision as the approver submits it. */
struct approval_decision {
	int approve;
	const char *reason;		/* required to deny */
	const char *params_hash;	/* if given, must match */
	const struct scope_list *scopes;	/* narrowed scopes or NULL */
	int64_t ttl;			/* narrowed lifetime or 0 */
};

/*
 * approvals_decide(cfg, approver, id, d, out, err): record a decision.
 * 404 unknown request; 403 approver outside a scope's group, or the
 * agent's owner where the scope does not allow it; 409 request not
 * pending (decided, expired, consumed), same approver twice, params_hash
 * mismatch; 400 widening. On CS_OK *out is the request as it now stands.
 */
enum cs_err approvals_decide(const struct broker_config *cfg,
    const struct approver *approver, const char *id,
    const struct approval_decision *d, json_t **out, struct cs_error *err);

/*
 * approvals_collect(cfg, client, id, scope, resource, dpop_jkt, out, err):
 * the CIBA token request. dpop_jkt, if not NULL, is the thumbprint of the
 * key the token is bound to (cnf.jkt); the caller has checked it against
 * the request's binding (dpop.h). CS_ERR_AUTHORIZATION_PENDING, CS_ERR_SLOW_DOWN,
 * CS_ERR_REQUEST_DENIED, CS_ERR_EXPIRED_TOKEN, CS_ERR_INVALID_GRANT
 * (unknown, another agent's, already collected, grants or approvers no
 * longer valid, scope/resource differing from the approved ones), or
 * CS_OK with exactly one token minted for the approved parameters.
 */
enum cs_err approvals_collect(const struct broker_config *cfg,
    const struct client *client, const char *id, const char *scope,
    const char *resource, const char *dpop_jkt, struct token_issued *out,
    struct cs_error *err);

/*
 * approvals_expire_due(n): mark every pending or approved request past its
 * expiry as expired, with an approval.expired event each. *n (may be NULL)
 * receives how many.
 */
enum cs_err approvals_expire_due(int *n);

/*
 * Approver keys that expire within this many days count as expiring
 * (countersign_approver_keys_expiring, whose help text says 14 days).
 */
#define APPROVALS_KEY_WARN_DAYS_SQL	"14"

/* What /metrics shows of approvals and approvers (-1: unknown). */
struct approvals_gauges {
	long pending;		/* pending, unexpired requests */
	long keys_expiring;	/* enabled approvers' keys expiring soon */
	long keys_expired;	/* enabled approvers whose key has expired */
};

/* approvals_gauges(g): fill g from the database; 0, or -1 (all -1). */
int approvals_gauges(struct approvals_gauges *g);

/* approvals_start_sweeper() / approvals_stop_sweeper(): a thread that
 * runs approvals_expire_due every few seconds. */
int approvals_start_sweeper(void);
void approvals_stop_sweeper(void);

#endif
