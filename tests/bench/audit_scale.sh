#!/usr/bin/env bash
# tests/bench/audit_scale.sh: the audit log at scale. Writes N events
# (default 1,000,000) straight into a fresh database, then times sealing the
# chain, verifying it, and exporting it as JSON Lines, with the peak memory
# of each command. Figures only; no assertions.
#
#   AUDIT_EVENTS  number of events (default 1000000)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
n=${AUDIT_EVENTS:-1000000}
bin="$root/build/countersign"
work=$(mktemp -d /tmp/cs-audit-scale.XXXXXX)
pgdir="$work/pg"
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap '"$root/deploy/pg.sh" stop "$pgdir" immediate >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$root/deploy/pg.sh" init "$pgdir" "$pgport" >/dev/null
"$root/deploy/pg.sh" start "$pgdir" >/dev/null
"$root/deploy/pg.sh" createdb "$pgdir" scale >/dev/null
owner=$("$root/deploy/pg.sh" url "$pgdir" scale)
(umask 077; openssl rand -base64 32 > "$work/master.key")
export COUNTERSIGN_DATABASE_URL=${owner/postgres@/countersign_broker@}
export COUNTERSIGN_MIGRATE_DATABASE_URL=$owner
export COUNTERSIGN_MASTER_KEY_FILE=$work/master.key
export COUNTERSIGN_LOG_LEVEL=warn
export COUNTERSIGN_DB_STATEMENT_TIMEOUT=600000
"$bin" migrate >/dev/null

measure() {
	local name=$1; shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/out" 2>"$work/err" || {
		echo "$name failed:"; tail -5 "$work/err"; exit 1; }
	read -r secs kb < "$work/time"
	printf '{"bench": "%s", "events": %s, "seconds": %s, "peak_rss_kb": %s}\n' \
	    "$name" "$n" "$secs" "$kb"
}

t0=$(date +%s.%N)
psql -X -q "$owner" -c "INSERT INTO audit_events (type, actor, subject, jti, details)
  SELECT 'token.issued', 'agent:a' || (i % 100), 'agent:a' || (i % 100),
         substr(md5(i::text), 1, 22),
         jsonb_build_object('scope', 'forum:read', 'audience', 'https://forum.example',
                            'ttl', 300, 'kid', 'k', 'auth_method', 'client_secret_basic')
  FROM generate_series(1, $n) AS i" >/dev/null
printf '{"bench": "insert events (one statement)", "events": %s, "seconds": %.1f}\n' \
    "$n" "$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)")"
measure "seal the chain (audit verify seals first, then verifies)" "$bin" audit verify --json
cat "$work/out"
measure "verify the sealed chain" "$bin" audit verify --json
measure "export as JSON Lines" "$bin" audit export
printf '{"bench": "export size", "lines": %s, "bytes": %s}\n' \
    "$(wc -l < "$work/out")" "$(wc -c < "$work/out")"
measure "export one agent (--agent a7)" "$bin" audit export --agent a7
printf '{"bench": "export one agent, lines", "lines": %s}\n' "$(wc -l < "$work/out")"
