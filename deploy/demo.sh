#!/usr/bin/env bash
# deploy/demo.sh: the story behind `make demo` (docs/demo.md).
#
# An AI agent asked only to analyse a forum question must not be able to
# post an answer by itself. This script plays that story against the local
# broker of `make run` and a small forum (examples/forum/forum.c), checking
# every outcome; any surprise stops it with a non-zero exit.
#
#   deploy/demo.sh
#
# It reuses var/countersign.conf and the running broker if there is one,
# else starts both with deploy/run.sh; it creates (once) the scopes, the
# forum service, the agent forum-agent and the approver alice, keeping
# their secrets in var/demo/ (mode 600). The forum runs only while the
# script does; the broker keeps running (`make stop` stops it).
#
# Environment: FORUM_BIN (default build/forum; compiled into var/demo/ if
# missing), CS_BIN (default build/countersign), COUNTERSIGN_VAR (default
# ./var), and for a first start COUNTERSIGN_LISTEN and PG_PORT as
# deploy/run.sh reads them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
var=${COUNTERSIGN_VAR:-$root/var}	# tests use a folder of their own
state="$var/demo"
bin=${CS_BIN:-$root/build/countersign}
forum_bin=${FORUM_BIN:-$root/build/forum}
agent_sh="$root/examples/forum/agent.sh"
aud="https://forum.example"
t0=$(date +%s)
since=$(date -u -d "@$((t0 - 1))" +%Y-%m-%dT%H:%M:%SZ)	# the audit trail of this run

if [ -t 1 ]; then bold=$'\033[1m'; red=$'\033[31m'; green=$'\033[32m'; off=$'\033[0m'
else bold=; red=; green=; off=; fi

step() { printf '\n%s%s%s\n' "$bold" "$*" "$off"; }
say() { printf '  %s\n' "$*"; }
ok() { printf '  %s[ok]%s %s\n' "$green" "$off" "$*"; }
surprise() { printf '  %s[UNEXPECTED]%s %s\n' "$red" "$off" "$*" >&2; exit 1; }

for tool in curl jq openssl; do
	command -v "$tool" >/dev/null || surprise "$tool is not installed (deploy/deps.sh test installs it)"
done
[ -x "$bin" ] || surprise "$bin is missing: run make first"

mkdir -p "$state"
chmod 700 "$state"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cs-demo.XXXXXX")
forum_pid=
bg_pid=
cleanup() {
	[ -z "$bg_pid" ] || kill "$bg_pid" 2>/dev/null || true
	if [ -n "$forum_pid" ]; then
		kill "$forum_pid" 2>/dev/null || true
		wait "$forum_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

# ------------------------------------------------------------------ set-up

conf_get() { [ ! -f "$var/countersign.conf" ] || sed -n "s/^$1 *= *//p" "$var/countersign.conf" | tail -n 1; }
broker_alive() {
	[ -f "$var/broker.pid" ] && kill -0 "$(cat "$var/broker.pid")" 2>/dev/null &&
	    curl -fsS "http://$(conf_get listen)/readyz" >/dev/null 2>&1
}

step "Setting up"
if [ -f "$var/countersign.conf" ] && broker_alive; then
	say "Using the broker that \`make run\` started (pid $(cat "$var/broker.pid"))."
else
	say "No broker is running: starting PostgreSQL and the broker with deploy/run.sh (log: var/demo/setup.log)."
	listen=$(conf_get listen)
	COUNTERSIGN_LISTEN=${COUNTERSIGN_LISTEN:-${listen:-127.0.0.1:8080}} \
	    "$root/deploy/run.sh" > "$state/setup.log" 2>&1 ||
	    { tail -n 20 "$state/setup.log" >&2; surprise "deploy/run.sh failed"; }
	broker_alive || surprise "the broker is not ready after deploy/run.sh"
fi
broker="http://$(conf_get listen)"
meta=$(curl -fsS "$broker/.well-known/oauth-authorization-server") ||
    surprise "no server metadata at $broker"
issuer=$(jq -r .issuer <<<"$meta")
cs() { "$bin" --config "$var/countersign.conf" "$@"; }

scopes=$(cs scope list --json)
if ! jq -e 'any(.[]; .name == "forum:read")' <<<"$scopes" >/dev/null; then
	cs scope add forum:read --kind read --max-ttl 15m >/dev/null
	say "Created the read scope forum:read."
fi
post_scope=$(jq -c '.[] | select(.name == "forum:post")' <<<"$scopes")
if [ -z "$post_scope" ]; then
	cs scope add forum:post --kind write --approver-group forum-mods --max-ttl 5m >/dev/null
	say "Created the write scope forum:post: approvers of group forum-mods decide, tokens are bound to a key (DPoP)."
else
	[ "$(jq -r .kind <<<"$post_scope")" = write ] ||
	    surprise "forum:post exists but is not a write scope"
	[ "$(jq -r .require_dpop <<<"$post_scope")" = true ] ||
	    say "Note: this forum:post does not require DPoP (an older var/); the agent binds its tokens anyway."
	group=$(jq -r '.approver_group // empty' <<<"$post_scope")
	if [ -z "$group" ]; then
		say "Note: forum:post exists without an approver group: any approver may decide it."
	elif [ "$group" != forum-mods ]; then
		surprise "forum:post is decided by group '$group', but alice is in forum-mods (delete var/ to start afresh)"
	fi
fi

# created KIND NAME FILE ARGS...: reuse NAME's credentials kept in FILE, or
# create NAME and keep its one-time credentials there.
created() {
	local kind=$1 name=$2 file=$3 exists
	shift 3
	exists=$(cs "$kind" list --json | jq -c --arg n "$name" '.[] | select(.name == $n)')
	if [ -n "$exists" ]; then
		[ -s "$file" ] || surprise "$kind '$name' exists but its secret is not in $file (delete var/ to start afresh)"
		[ "$(jq -r '.disabled // false' <<<"$exists")" = false ] || surprise "$kind '$name' is disabled"
		return 0
	fi
	(umask 077 && cs "$kind" add "$name" "$@" --json > "$file")
	say "Created the $kind $name."
}
created service forum "$state/forum-service.json" --audience "$aud"
created agent forum-agent "$state/forum-agent.json" --owner ops@example.com
created approver alice "$state/alice.json" --groups forum-mods --email alice@example.com
# The narrator checks the thread as a second, read-only agent, so that the
# audit trail of forum-agent holds only what the agent itself did.
created agent forum-reader "$state/forum-reader.json" --owner ops@example.com
grant() {
	if ! cs grant list "$1" --json | jq -e --arg s "$2" --arg a "$aud" \
	    'any(.[]; .scope == $s and .audience == $a and .live)' >/dev/null; then
		cs grant add "$1" "$2" --audience "$aud" >/dev/null
		say "Granted $2 on $aud to $1."
	fi
}
grant forum-agent forum:read
grant forum-agent forum:post
grant forum-reader forum:read

if [ ! -x "$forum_bin" ]; then
	forum_bin="$state/forum"
	say "Compiling the forum (build/forum is missing) into var/demo/forum."
	cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -I"$root/include" -o "$forum_bin" \
	    "$root/examples/forum/forum.c" "$root/build/libcountersign-verify.a" \
	    -lmicrohttpd -ljansson -lcrypto -lcurl -lpthread ||
	    surprise "cannot compile examples/forum/forum.c"
fi
: > "$state/forum.log"
FORUM_LISTEN=127.0.0.1:0 FORUM_ISSUER="$issuer" FORUM_AUDIENCE="$aud" \
    FORUM_JWKS_URL=$(jq -r .jwks_uri <<<"$meta") \
    FORUM_INTROSPECT_URL=$(jq -r .introspection_endpoint <<<"$meta") \
    FORUM_SERVICE_ID=forum \
    FORUM_SERVICE_SECRET=$(jq -r .client_secret "$state/forum-service.json") \
    "$forum_bin" 2> "$state/forum.log" &
forum_pid=$!
port=
for _ in $(seq 50); do
	port=$(sed -n 's/.*"msg":"forum listening".*"port":\([0-9]*\).*/\1/p' "$state/forum.log")
	[ -n "$port" ] && break
	kill -0 "$forum_pid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$port" ] || { cat "$state/forum.log" >&2; surprise "the forum did not start"; }
forum="http://127.0.0.1:$port"
say "Broker: $broker    Forum: $forum (log: var/demo/forum.log)"

export BROKER_URL="$broker" FORUM_URL="$forum" CLIENT_ID=forum-agent
# The agent's own key: every token it gets is bound to it (RFC 9449 DPoP),
# so a token that leaks from the agent is useless to whoever finds it.
agent_key="$state/forum-agent-dpop.pem"
CLIENT_SECRET=$(jq -r .client_secret "$state/forum-agent.json")
export CLIENT_SECRET
alice_key=$(jq -r .api_key "$state/alice.json")

# agent ARGS...: run the reference agent; its account, indented, on stderr.
agent() {
	local rc=0
	DPOP_KEY="$agent_key" "$agent_sh" "$@" 2> "$tmp/agent.err" || rc=$?
	sed 's/^/    /' "$tmp/agent.err" >&2
	return "$rc"
}
# as_alice ARGS...: the countersign CLI as the approver alice.
as_alice() { COUNTERSIGN_APPROVER_KEY="$alice_key" COUNTERSIGN_URL="$broker" "$bin" "$@"; }
# collect_in_background ID: the agent waits for a decision while alice looks.
collect_in_background() {
	DPOP_KEY="$agent_key" "$agent_sh" collect "$1" > "$tmp/token" 2> "$tmp/collect.err" &
	bg_pid=$!
}
# collected: wait for the agent; sets COLLECT_RC and TOKEN.
collected() {
	COLLECT_RC=0
	wait "$bg_pid" || COLLECT_RC=$?
	bg_pid=
	sed 's/^/    /' "$tmp/collect.err" >&2
	TOKEN=$(cat "$tmp/token")
}
# replies: the replies of thread 42 now, as the forum serves them.
replies() { curl -fsS -H @"$tmp/read-auth" "$forum/threads/42" | jq -c .replies; }
# jwt_claims TOKEN: the payload of a JWT (for the audit check only).
jwt_claims() {
	local p
	p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
	case $((${#p} % 4)) in 2) p="$p==" ;; 3) p="$p=" ;; esac
	base64 -d <<<"$p"
}
# show_request ID: what alice sees before she decides. The broker hashed
# the preview: it must be exactly the text whose digest the token will carry.
show_request() {
	local shown
	shown=$(as_alice approvals show "$1" --json) || surprise "alice cannot see request $1"
	[ "$(jq -c .preview_checks <<<"$shown")" = '[true]' ] ||
	    surprise "the broker says the preview is not the text the digest binds: $(jq -c .preview_checks <<<"$shown")"
	jq -r '"    request \(.id): agent \(.agent) wants \([.scopes[].name] | join(" ")) on \(.audience) for \(.ttl) s",
	    "    justification: \(.binding_message)",
	    (.authorization_details[]? | "    exact reply (the broker checked: its SHA-256 is \(.action_digest)):", "      \(.preview)")' <<<"$shown"
}

# -------------------------------------------------------------------- story

step "The story"
say "An AI agent was asked to *analyse* a question on an internal forum. It posted an"
say "answer by itself, people followed it, and sensitive data was exposed. With"
say "Countersign in the path the agent can read with a read token, but posting needs"
say "a write token, which needs a human approval bound to the exact reply, and works once."

step "1/7  The agent reads thread 42: allowed"
observer_token=$(CLIENT_ID=forum-reader CLIENT_SECRET=$(jq -r .client_secret "$state/forum-reader.json") \
    "$agent_sh" token forum:read 2>/dev/null) || surprise "the read-only observer got no token"
(umask 077 && printf 'Authorization: Bearer %s\n' "$observer_token" > "$tmp/read-auth")
thread=$(curl -fsS -H @"$tmp/read-auth" "$forum/threads/42") || surprise "cannot read thread 42"
say "Thread 42, \"$(jq -r .title <<<"$thread")\""
say "  $(jq -r .question <<<"$thread")"
before=$(jq '.replies | length' <<<"$thread")
draft=$(agent draft) || surprise "the agent could not read the thread"
ok "the agent read the thread with a forum:read token and drafted a reply:"
say "  \"$draft\""

step "2/7  It tries to post with its read token: the forum refuses"
read_token=$(agent token forum:read) || surprise "the agent got no read token"
out=$(agent post "$read_token" "$draft") && surprise "the forum accepted a post with a read token"
[ "$(jq -r .status <<<"$out")" = 403 ] || surprise "expected 403, got $out"
grep -q 'error="insufficient_scope"' <<<"$(jq -r .www_authenticate <<<"$out")" ||
    surprise "expected insufficient_scope, got $out"
say "WWW-Authenticate: $(jq -r .www_authenticate <<<"$out")"
ok "403 insufficient_scope: a read token cannot post"

step "3/7  It asks Countersign for a forum:post token on its own: the broker refuses"
out=$(agent token forum:post) && surprise "the broker issued a write token without approval"
[ "$(jq -r .error <<<"$out")" = invalid_scope ] || surprise "expected invalid_scope, got $out"
jq -r .error_description <<<"$out" | grep -q bc-authorize || surprise "the refusal does not point at bc-authorize: $out"
ok "invalid_scope: a write scope needs a human's approval (/oauth2/bc-authorize); the refusal is audited"

step "4/7  It asks a human for approval; alice denies"
id1=$(agent ask "$draft") || surprise "bc-authorize failed"
collect_in_background "$id1"
say "alice looks at the request:"
show_request "$id1"
sleep 1
as_alice approvals deny "$id1" --reason "Not before the security team has written the incident note" >/dev/null ||
    surprise "alice could not deny $id1"
say "alice: countersign approvals deny $id1 --reason 'Not before the security team has written the incident note'"
collected
[ "$COLLECT_RC" = 3 ] || surprise "expected the agent to be told access_denied (exit 3), got exit $COLLECT_RC"
[ -z "$TOKEN" ] || surprise "a token was issued for a denied request"
[ "$(replies | jq length)" = "$before" ] || surprise "a reply appeared after a denial"
ok "access_denied: no token, no post"

step "5/7  It asks again; alice approves; exactly one reply appears"
id2=$(agent ask "$draft") || surprise "bc-authorize failed"
collect_in_background "$id2"
curl -fsS -o /dev/null "$broker/ui/" || surprise "the approver page $broker/ui/ is not served"
say "Approvers decide in the browser at $broker/ui/ (sign in with the approver key)"
say "or with the CLI; here alice uses the CLI:"
show_request "$id2"
sleep 1
as_alice approvals approve "$id2" --reason "Matches the runbook" >/dev/null || surprise "alice could not approve $id2"
say "alice: countersign approvals approve $id2 --reason 'Matches the runbook'"
collected
{ [ "$COLLECT_RC" = 0 ] && [ -n "$TOKEN" ]; } || surprise "the agent got no token after the approval (exit $COLLECT_RC)"
write_token=$TOKEN
out=$(agent post "$write_token" "$draft") || surprise "the approved post was refused: $out"
[ "$(jq -r .status <<<"$out")" = 201 ] || surprise "expected 201, got $out"
now=$(replies)
[ "$(jq length <<<"$now")" = $((before + 1)) ] || surprise "expected exactly one new reply, have $now"
[ "$(jq -r '.[-1].text' <<<"$now")" = "$draft" ] || surprise "the reply is not the approved text"
[ "$(jq -c '.[-1].approved_by' <<<"$now")" = '["alice"]' ] || surprise "the reply does not name alice"
ok "201: reply #$(jq -r '.[-1].id' <<<"$now") posted, approved by alice, approval $id2"

step "6/7  It tries to use the token again, and to post text nobody approved"
out=$(agent post "$write_token" "$draft") && surprise "the single-use token worked twice"
{ [ "$(jq -r .status <<<"$out")" = 401 ] && grep -q 'error="invalid_token"' <<<"$(jq -r .www_authenticate <<<"$out")"; } ||
    surprise "expected 401 invalid_token, got $out"
ok "the same token again: 401 invalid_token (the broker says it is used up)"
printf 'Authorization: Bearer %s\n' "$write_token" > "$tmp/stolen-auth"
printf '%s' "$draft" > "$tmp/stolen-body"
stolen=$(curl -sS -D - -o /dev/null -H @"$tmp/stolen-auth" -H 'Content-Type: text/plain; charset=utf-8' \
    --data-binary @"$tmp/stolen-body" "$forum/threads/42/replies" | tr -d '\r')
grep -q '^HTTP/1.1 401' <<<"$stolen" && grep -qi '^www-authenticate: DPoP .*bound to a key' <<<"$stolen" ||
    surprise "a copy of the token, sent without the agent's key, was not refused: $stolen"
ok "the token copied by someone else, without the agent's key: 401 (it is bound to the key, DPoP)"
out=$(agent post "$write_token" "$draft Also, paste the new token here so we can test it.") &&
    surprise "a different text was accepted"
[ "$(jq -r .status <<<"$out")" = 403 ] || surprise "expected 403, got $out"
ok "the same token with other text: 403 (the body does not match the approved digest)"
followup="Update: the old deploy token is revoked and the build log is gone."
say "A second approval, for a short follow-up, shows the digest check on a fresh token:"
id3=$(agent ask "$followup") || surprise "bc-authorize failed"
collect_in_background "$id3"
sleep 1
as_alice approvals approve "$id3" --reason "Fine" >/dev/null || surprise "alice could not approve $id3"
say "alice: countersign approvals approve $id3 --reason 'Fine'"
collected
{ [ "$COLLECT_RC" = 0 ] && [ -n "$TOKEN" ]; } || surprise "the agent got no token after the approval (exit $COLLECT_RC)"
out=$(agent post "$TOKEN" "Update: all clear, nothing leaked, no need to rotate anything.") &&
    surprise "a post whose text differs from the approved one was accepted"
[ "$(jq -r .status <<<"$out")" = 403 ] || surprise "expected 403, got $out"
jq -r .www_authenticate <<<"$out" | grep -q 'does not match the approved action_digest' ||
    surprise "expected a digest mismatch, got $out"
say "WWW-Authenticate: $(jq -r .www_authenticate <<<"$out")"
ok "403: the forum checks the exact text before it spends the token"
agent revoke "$TOKEN" || surprise "the revocation failed"
[ "$(replies | jq length)" = $((before + 1)) ] || surprise "the thread changed: $(replies)"
ok "the thread still has exactly one new reply"

step "7/7  The audit trail"
write_jti=$(jwt_claims "$write_token" | jq -r .jti)
{
	cs audit export --agent forum-agent --since "$since"
	cs audit export --type approval.approved --since "$since"
	cs audit export --type approval.denied --since "$since"
} > "$tmp/audit.jsonl"
jq -s --arg a "$id1 $id2 $id3" '($a | split(" ") | map("approval:" + .)) as $ids
    | map(select(.actor == "agent:forum-agent" or .subject == "agent:forum-agent" or (.subject | IN($ids[]))))
    | unique_by(.seq) | .[]' "$tmp/audit.jsonl" > "$tmp/trail.jsonl"
say "countersign audit export --agent forum-agent (and alice's decisions), one line per event:"
jq -r 'def pad($n): . + " " * ([$n - length, 0] | max);
    (if .type == "token.issued" then .details.scope
         + (if .details.approval then " approval:" + .details.approval else "" end)
     elif .type == "token.used" then .details.result
     elif .type == "grant.created" then .details.scope + " on " + .details.audience
     elif .type == "agent.created" then "owner " + (.details.owner // "-")
     elif (.type | startswith("approval.")) then .subject
         + (if .details.reason then " \"" + .details.reason + "\"" else "" end)
     else .details.reason // "" end) as $what
    | "    \(.seq | tostring | " " * (4 - length) + .)  \(.type | pad(18)) \(.actor | pad(17)) \(.jti // "-" | pad(22)) \($what)"
    | sub(" +$"; "")' \
    "$tmp/trail.jsonl"
uses=$(jq -r --arg j "$write_jti" 'select(.type == "token.used" and .jti == $j) | .details.result' "$tmp/trail.jsonl" | paste -sd' ')
[ "$uses" = "active used_up" ] || surprise "expected the write token to be used once then refused, audit says: $uses"
jq -se --arg s "approval:$id1" 'any(.[]; .type == "approval.denied" and .subject == $s and .actor == "approver:alice")' \
    "$tmp/trail.jsonl" >/dev/null || surprise "alice's denial is not in the audit log"
jq -se --arg s "approval:$id2" 'any(.[]; .type == "approval.approved" and .subject == $s and .actor == "approver:alice")' \
    "$tmp/trail.jsonl" >/dev/null || surprise "alice's approval is not in the audit log"
jq -se 'any(.[]; .type == "token.denied" and .details.reason == "write_scope_needs_approval")' \
    "$tmp/trail.jsonl" >/dev/null || surprise "the refused client_credentials request is not in the audit log"
ok "every request, refusal, decision and use is there; the write token was used once (active, then used_up)"
verify=$(cs audit verify) || surprise "countersign audit verify failed: $verify"
say "countersign audit verify: $verify"
ok "the hash chain verifies"

step "Done in $(($(date +%s) - t0)) s: the agent could read, but it could post only the text alice approved, once."
say "The forum's request log (no tokens in it): var/demo/forum.log. The broker keeps running: make stop."
