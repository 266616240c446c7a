# tests/bench/common.sh: sourced by run.sh, leakcheck.sh and soak.sh. A
# throwaway PostgreSQL and one broker binary, with an agent, a service and
# an approver, and a load mix (mix.lua) to run against it.
#
#   cs_cluster DB       init and start the cluster, create database DB and
#                       a master key, export the broker's environment
#                       (CS_THREADS worker threads, default 8; request
#                       budgets lifted); sets port and owner
#   cs_setup BIN        cs_cluster, then migrate and create the
#                       principals; sets work, port, owner, and the
#                       BENCH_* variables mix.lua reads
#   cs_start_broker     start "BIN serve" in the background (broker_pid),
#                       wait until /readyz answers
#   cs_stop_broker      SIGTERM and wait; returns the broker's exit status
#   cs_mix SECONDS CONNS  run mix.lua with wrk; its output on stdout
#   cs_audit_matches    print token rows and token.issued events; false
#                       unless they are equal (every token has its event)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d /tmp/cs-bench.XXXXXX)
pgdir="$work/pg"
broker_pid=

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cs_cleanup() {
	if [ -n "$broker_pid" ]; then
		kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
	fi
	"$root/deploy/pg.sh" stop "$pgdir" immediate >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cs_cleanup EXIT

cs_cluster() {
	local pgport
	pgport=$(free_port)
	port=$(free_port)
	"$root/deploy/pg.sh" init "$pgdir" "$pgport" >/dev/null
	"$root/deploy/pg.sh" start "$pgdir" >/dev/null
	"$root/deploy/pg.sh" createdb "$pgdir" "$1" >/dev/null
	owner=$("$root/deploy/pg.sh" url "$pgdir" "$1")
	(umask 077; openssl rand -base64 32 > "$work/master.key")
	export COUNTERSIGN_DATABASE_URL=${owner/postgres@/countersign_broker@}
	export COUNTERSIGN_MIGRATE_DATABASE_URL=$owner
	export COUNTERSIGN_MASTER_KEY_FILE=$work/master.key
	export COUNTERSIGN_LISTEN=127.0.0.1:$port
	export COUNTERSIGN_LOG_LEVEL=warn
	export COUNTERSIGN_THREADS=${CS_THREADS:-8}
	# One agent, one service and one approver make nearly every request:
	# lift their budgets (the lockout for wrong secrets stays on).
	export COUNTERSIGN_RATE_TOKEN=0
	export COUNTERSIGN_RATE_BC_AUTHORIZE=0
	export COUNTERSIGN_RATE_INTROSPECT=0
	export COUNTERSIGN_RATE_APPROVER=0
}

cs_setup() {
	bin=$1
	local creds svc
	cs_cluster load
	"$bin" migrate >/dev/null
	"$bin" scope add load:read --kind read >/dev/null
	"$bin" scope add load:write --kind write --approver-group ops --no-require-dpop >/dev/null
	creds=$("$bin" agent add load --json)
	"$bin" grant add load load:read --audience https://load.example >/dev/null
	"$bin" grant add load load:write --audience https://load.example >/dev/null
	svc=$("$bin" service add load-svc --audience https://load.example --json)
	BENCH_APPROVER=$("$bin" approver add ops --groups ops --json | jq -r .api_key)
	BENCH_BASIC=$(printf '%s:%s' "$(jq -r .client_id <<<"$creds")" \
	    "$(jq -r .client_secret <<<"$creds")" | base64 -w0)
	BENCH_SVC_BASIC=$(printf '%s:%s' "$(jq -r .client_id <<<"$svc")" \
	    "$(jq -r .client_secret <<<"$svc")" | base64 -w0)
	export BENCH_BASIC BENCH_SVC_BASIC BENCH_APPROVER
}

cs_start_broker() {
	"$bin" serve 2>>"$work/broker.log" &
	broker_pid=$!
	for _ in $(seq 200); do
		curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
		sleep 0.05
	done
	if ! curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
		echo "broker did not start" >&2
		tail -20 "$work/broker.log" >&2
		exit 1
	fi
	BENCH_TOKEN=$(curl -fsS -H "Authorization: Basic $BENCH_BASIC" \
	    -d grant_type=client_credentials -d scope=load:read \
	    -d resource=https://load.example \
	    "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token)
	export BENCH_TOKEN
}

cs_stop_broker() {
	local rc=0
	kill -TERM "$broker_pid"
	wait "$broker_pid" || rc=$?
	broker_pid=
	return "$rc"
}

cs_mix() {
	wrk -t2 -c"$2" -d"$1s" -s "$root/tests/bench/mix.lua" \
	    "http://127.0.0.1:$port"
}

cs_audit_matches() {
	local tokens events
	tokens=$(psql -X -q -At "$owner" -c "SELECT count(*) FROM tokens")
	events=$(psql -X -q -At "$owner" -c \
	    "SELECT count(*) FROM audit_events WHERE type = 'token.issued'")
	echo "tokens: $tokens rows, $events token.issued events"
	[ "$tokens" -eq "$events" ]
}
