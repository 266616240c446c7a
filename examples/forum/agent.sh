#!/usr/bin/env bash
# examples/forum/agent.sh: the reference agent of the forum demo
# (docs/demo.md). It may read the forum on its own; to post it must ask a
# human, through Countersign, for a token bound to the exact reply.
#
#   agent.sh read                 get a forum:read token and read the thread;
#                                 prints the thread (JSON) on stdout
#   agent.sh draft                read the thread and print a drafted reply
#   agent.sh token SCOPE          client_credentials for SCOPE; prints the token
#   agent.sh ask "REPLY"          ask for approval to post exactly REPLY;
#                                 prints the auth_req_id
#   agent.sh collect AUTH_REQ_ID  poll until a human decides; prints the token
#   agent.sh post TOKEN "REPLY"   post REPLY with TOKEN; prints the forum's
#                                 answer as {"status","www_authenticate","body"}
#   agent.sh revoke TOKEN         hand a token back unused (RFC 7009)
#   agent.sh run                  all of it: read, draft, ask, wait, post
#
# Environment: BROKER_URL, FORUM_URL, CLIENT_ID, CLIENT_SECRET (required);
# THREAD (42), RESOURCE (https://forum.example), POLL_INTERVAL (seconds
# between polls until the broker says otherwise, 5), COLLECT_TIMEOUT (600),
# DPOP_KEY (a file: if set, every token is bound to this Ed25519 key, made
# there on first use, and every request proves the key, RFC 9449; a stolen
# token is then useless without the key).
#
# Results go to stdout, the agent's account of what it does to stderr, so
# `id=$(agent.sh ask "...")` works. Exit status: 0 done, 1 refused or
# failed, 2 usage, 3 the approver denied, 4 the approval request expired.
# Needs bash, curl, jq, base64 and openssl.
set -euo pipefail

thread=${THREAD:-42}
resource=${RESOURCE:-https://forum.example}
ciba=urn:openid:params:grant-type:ciba

say() { printf 'agent: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

need_env() {
	local v
	for v in "$@"; do
		[ -n "${!v:-}" ] || { printf 'agent.sh: %s is not set\n' "$v" >&2; exit 2; }
	done
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/agent.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# http AUTHORIZATION CURL-ARGS...: one request. The Authorization header goes
# through a file, so no secret or token appears in the process list. Sets
# STATUS, BODY (the answer) and CHALLENGE (WWW-Authenticate, if any).
http() {
	local auth=$1
	shift
	(umask 077 && printf 'Authorization: %s\n' "$auth" > "$tmp/auth")
	STATUS=$(curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
	    -H @"$tmp/auth" --max-time 30 "$@") || STATUS=000
	rm -f "$tmp/auth"
	BODY=$(cat "$tmp/body" 2>/dev/null || true)
	CHALLENGE=$(sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: *//p' "$tmp/headers" 2>/dev/null | tr -d '\r')
}

# The broker wants client_secret_basic: base64(id ":" secret). Countersign
# ids and secrets are URL-safe already, so the RFC 6749 form-encoding
# changes nothing.
basic() { printf 'Basic %s' "$(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)"; }

json_field() { jq -r --arg k "$1" '.[$k] // empty' <<<"$BODY" 2>/dev/null || true; }

sha256_hex() { printf '%s' "$1" | openssl dgst -sha256 -r | cut -d' ' -f1; }

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

# dpop METHOD URL [TOKEN]: curl arguments carrying a DPoP proof (RFC 9449)
# for one request, signed with the Ed25519 key in $DPOP_KEY; nothing when
# DPOP_KEY is unset. With TOKEN, the proof names it (ath), as a resource
# server demands. Each proof has its own jti and is used once.
dpop() {
	local x header payload ath= sig
	[ -n "${DPOP_KEY:-}" ] || return 0
	if [ ! -s "$DPOP_KEY" ]; then
		(umask 077 && openssl genpkey -algorithm ed25519 -out "$DPOP_KEY" 2>/dev/null) ||
		    fail "cannot create a key in $DPOP_KEY"
		say "I made a key of my own (${DPOP_KEY##*/}); my tokens will be bound to it."
	fi
	# The last 32 bytes of the DER public key are the raw Ed25519 key.
	x=$(openssl pkey -in "$DPOP_KEY" -pubout -outform DER | tail -c 32 | b64url)
	header=$(jq -jcn --arg x "$x" \
	    '{typ: "dpop+jwt", alg: "EdDSA", jwk: {kty: "OKP", crv: "Ed25519", x: $x}}' | b64url)
	[ -z "${3:-}" ] || ath=$(printf '%s' "$3" | openssl dgst -sha256 -binary | b64url)
	payload=$(jq -jcn --arg m "$1" --arg u "$2" --arg j "$(openssl rand -hex 16)" \
	    --arg a "$ath" --argjson t "$(date +%s)" \
	    '{htm: $m, htu: $u, iat: $t, jti: $j} + (if $a == "" then {} else {ath: $a} end)' | b64url)
	printf '%s.%s' "$header" "$payload" > "$tmp/signing-input"
	sig=$(openssl pkeyutl -sign -inkey "$DPOP_KEY" -rawin -in "$tmp/signing-input" | b64url)
	[ -n "$sig" ] || fail "cannot sign a DPoP proof with $DPOP_KEY"
	printf '%s\n' -H "DPoP: $header.$payload.$sig"
}

# scheme: how tokens are presented: bound ones with DPoP, others as Bearer.
scheme() { if [ -n "${DPOP_KEY:-}" ]; then echo DPoP; else echo Bearer; fi; }

# token SCOPE: a client_credentials token, printed; refusals explained.
cmd_token() {
	local scope=$1
	need_env BROKER_URL CLIENT_ID CLIENT_SECRET
	mapfile -t proof < <(dpop POST "$BROKER_URL/oauth2/token")
	http "$(basic)" "$BROKER_URL/oauth2/token" -d grant_type=client_credentials \
	    --data-urlencode "scope=$scope" --data-urlencode "resource=$resource" "${proof[@]}"
	if [ "$STATUS" != 200 ]; then
		say "Countersign refused a $scope token ($STATUS $(json_field error)): $(json_field error_description)"
		printf '%s\n' "$BODY"
		return 1
	fi
	say "I got a $scope token for $resource, valid $(json_field expires_in) s."
	json_field access_token
}

cmd_read() {
	local token title
	need_env FORUM_URL
	token=$(cmd_token forum:read) || return 1
	mapfile -t proof < <(dpop GET "$FORUM_URL/threads/$thread" "$token")
	http "$(scheme) $token" "$FORUM_URL/threads/$thread" "${proof[@]}"
	if [ "$STATUS" != 200 ]; then
		say "The forum refused to let me read thread $thread ($STATUS): $CHALLENGE"
		return 1
	fi
	title=$(json_field title)
	say "I read thread $thread, \"$title\" ($(jq -r '.replies | length |
	    if . == 1 then "1 reply" else "\(.) replies" end' <<<"$BODY") so far)."
	printf '%s\n' "$BODY"
}

# The reference agent's "analysis": a fixed, sensible answer to the seeded
# question. A real agent would write its own; what matters is that it
# cannot publish it without a human.
draft_reply() {
	printf '%s' "Revoke the leaked deploy token in the registry right now, then issue a new one and store it only in the CI secret store. Delete the build log (and any caches or artifacts holding it), check the registry's access log for pulls or pushes with the old token since it leaked, and tell the security team and the release owner."
}

cmd_draft() {
	cmd_read >/dev/null || return 1
	say "I drafted a reply; I will not post it without a human's approval."
	draft_reply
	printf '\n'
}

cmd_ask() {
	local text=$1 digest details justification
	need_env BROKER_URL CLIENT_ID CLIENT_SECRET
	[ -n "$text" ] || fail "there is nothing to post"
	digest="sha256:$(sha256_hex "$text")"
	details=$(jq -cn --arg d "$digest" --arg p "$text" --argjson t "$thread" \
	    '[{type: "forum_post", action_digest: $d, preview: $p, thread: $t}]')
	justification=${JUSTIFICATION:-"I was asked to analyse thread $thread (a leaked deploy token). I would like to post the reply shown in the preview."}
	mapfile -t proof < <(dpop POST "$BROKER_URL/oauth2/bc-authorize")
	http "$(basic)" "$BROKER_URL/oauth2/bc-authorize" \
	    -d scope=forum:post --data-urlencode "resource=$resource" \
	    --data-urlencode "binding_message=$justification" \
	    --data-urlencode "authorization_details=$details" "${proof[@]}"
	if [ "$STATUS" != 200 ]; then
		say "Countersign refused my request for approval ($STATUS $(json_field error)): $(json_field error_description)"
		return 1
	fi
	say "I asked a human, through Countersign, to approve posting exactly this reply to thread $thread ($digest)."
	say "The request is $(json_field auth_req_id); it waits $(json_field expires_in) s for a decision, and I may check every $(json_field interval) s."
	json_field auth_req_id
}

cmd_collect() {
	local id=$1 interval=${POLL_INTERVAL:-5} waited=0 err
	local limit=${COLLECT_TIMEOUT:-600}
	need_env BROKER_URL CLIENT_ID CLIENT_SECRET
	while :; do
		mapfile -t proof < <(dpop POST "$BROKER_URL/oauth2/token")
		http "$(basic)" "$BROKER_URL/oauth2/token" -d "grant_type=$ciba" \
		    --data-urlencode "auth_req_id=$id" "${proof[@]}"
		if [ "$STATUS" = 200 ]; then
			say "A human approved: I have a single-use forum:post token, valid $(json_field expires_in) s."
			json_field access_token
			return 0
		fi
		err=$(json_field error)
		case "$err" in
		authorization_pending) ;;
		slow_down)
			interval=$((interval + 5))
			say "Countersign asked me to slow down; I now wait $interval s between checks." ;;
		access_denied)
			say "The approver said no ($(json_field error_description)). I will not post."
			return 3 ;;
		expired_token)
			say "Nobody decided in time; the request expired. I will not post."
			return 4 ;;
		*)
			say "Countersign refused to hand over a token ($STATUS $err): $(json_field error_description)"
			return 1 ;;
		esac
		if [ "$waited" -ge "$limit" ]; then
			say "I gave up waiting after $waited s."
			return 1
		fi
		[ "$waited" -gt 0 ] || say "No decision yet; I will check again every $interval s."
		sleep "$interval"
		waited=$((waited + interval))
	done
}

cmd_post() {
	local token=$1 text=$2 out
	need_env FORUM_URL
	printf '%s' "$text" > "$tmp/reply"
	mapfile -t proof < <(dpop POST "$FORUM_URL/threads/$thread/replies" "$token")
	http "$(scheme) $token" "$FORUM_URL/threads/$thread/replies" \
	    -H 'Content-Type: text/plain; charset=utf-8' --data-binary @"$tmp/reply" "${proof[@]}"
	out=$(jq -cn --arg s "$STATUS" --arg c "$CHALLENGE" --arg b "$BODY" \
	    '{status: ($s | tonumber), www_authenticate: $c, body: ($b | fromjson? // $b)}')
	printf '%s\n' "$out"
	if [ "$STATUS" = 201 ]; then
		say "The forum accepted my reply as #$(jq -r .reply.id <<<"$BODY") in thread $thread."
		return 0
	fi
	say "The forum refused my reply ($STATUS): $(jq -r '.error_description // empty' <<<"$BODY" 2>/dev/null)"
	return 1
}

cmd_revoke() {
	need_env BROKER_URL CLIENT_ID CLIENT_SECRET
	http "$(basic)" "$BROKER_URL/oauth2/revoke" --data-urlencode "token=$1" \
	    -d token_type_hint=access_token
	[ "$STATUS" = 200 ] || fail "Countersign refused the revocation ($STATUS $(json_field error))"
	say "I handed the token back; Countersign revoked it."
}

cmd_run() {
	local text id token
	need_env BROKER_URL FORUM_URL CLIENT_ID CLIENT_SECRET
	text=$(cmd_draft) || return 1
	id=$(cmd_ask "$text") || return 1
	say "Waiting for a human. An approver runs: countersign approvals approve $id"
	token=$(cmd_collect "$id") || return $?
	cmd_post "$token" "$text" >/dev/null
}

case "${1:-}" in
read) [ $# -eq 1 ] || usage; cmd_read ;;
draft) [ $# -eq 1 ] || usage; cmd_draft ;;
token) [ $# -eq 2 ] || usage; cmd_token "$2" ;;
ask) [ $# -eq 2 ] || usage; cmd_ask "$2" ;;
collect) [ $# -eq 2 ] || usage; cmd_collect "$2" ;;
post) [ $# -eq 3 ] || usage; cmd_post "$2" "$3" ;;
revoke) [ $# -eq 2 ] || usage; cmd_revoke "$2" ;;
run) [ $# -eq 1 ] || usage; cmd_run ;;
*) usage ;;
esac
