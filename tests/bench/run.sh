#!/usr/bin/env bash
# tests/bench/run.sh: Countersign's benchmarks (make bench). Prints every
# figure; asserts nothing about speed. Durable PostgreSQL throughout
# (fsync and synchronous_commit on), loopback, wrk as the load generator on
# the same two cores.
#
#   BENCH_SECONDS  seconds per measured run (default 8)
#   BENCH_THREADS  broker worker threads (default 64, the broker's own default)
set -euo pipefail

secs=${BENCH_SECONDS:-8}
# The cluster, the broker's environment and the clean-up on exit.
. "$(dirname "$0")/common.sh"
bin="$root/build/countersign"
CS_THREADS=${BENCH_THREADS:-64} cs_cluster bench
"$bin" migrate >/dev/null
"$bin" scope add bench:read --kind read >/dev/null
creds=$("$bin" agent add bench --json)
"$bin" grant add bench bench:read --audience https://bench.example >/dev/null
"$bin" scope add bench:write --kind write --approver-group bench-approvers --no-require-dpop >/dev/null
"$bin" grant add bench bench:write --audience https://bench.example >/dev/null
approver_key=$("$bin" approver add bench-approver --groups bench-approvers --json | jq -r .api_key)
svc=$("$bin" service add bench-svc --audience https://bench.example --json)
id=$(jq -r .client_id <<<"$creds"); secret=$(jq -r .client_secret <<<"$creds")
sid=$(jq -r .client_id <<<"$svc"); ssecret=$(jq -r .client_secret <<<"$svc")
agent_basic=$(printf '%s:%s' "$id" "$secret" | base64 -w0)
svc_basic=$(printf '%s:%s' "$sid" "$ssecret" | base64 -w0)
psqlq() { psql -X -q -At "$owner" -c "$1"; }

# start_broker SEAL [VAR=VALUE ...]: the broker, with the sealer on (1) or
# off (0) and any extra settings.
start_broker() {
	env COUNTERSIGN_AUDIT_SEAL="$1" "${@:2}" "$bin" serve 2>>"$work/broker.log" &
	broker_pid=$!
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	echo "bench: broker did not start" >&2
	tail -20 "$work/broker.log" >&2
	exit 1
}

stop_broker() {
	kill "$broker_pid"
	wait "$broker_pid" 2>/dev/null || true
	broker_pid=
}

# run_wrk NAME CONNECTIONS SCRIPT BASIC [PATH]: one measured wrk run; prints
# a JSON line with the figures.
run_wrk() {
	local name=$1 conns=$2 script=$3 basic=$4 path=${5:-/oauth2/token}
	local wthreads=2 tokens_before tokens_after out rss wal_before wal_after
	[ "$conns" -lt 2 ] && wthreads=1
	tokens_before=$(psqlq "SELECT count(*) FROM tokens")
	wal_before=$(psqlq "SELECT wal_bytes || ' ' || wal_fpi FROM pg_stat_wal")
	out=$(BENCH_BASIC=$basic BENCH_TOKEN=${BENCH_TOKEN:-} BENCH_TOKENS_FILE=${BENCH_TOKENS_FILE:-} wrk -t"$wthreads" \
	    -c"$conns" -d"${secs}s" --latency -s "$root/tests/bench/$script" \
	    "http://127.0.0.1:$port$path")
	tokens_after=$(psqlq "SELECT count(*) FROM tokens")
	wal_after=$(psqlq "SELECT wal_bytes || ' ' || wal_fpi FROM pg_stat_wal")
	rss=$(awk '/VmHWM/ {print $2}' "/proc/$broker_pid/status")
	python3 - "$name" "$conns" "$tokens_before" "$tokens_after" "$rss" "$wal_before" "$wal_after" <<PY
import json, re, sys
out = """$out"""
name, conns, before, after, rss, wal0, wal1 = sys.argv[1:]
wal = [int(float(b)) - int(float(a)) for a, b in zip(wal0.split(), wal1.split())]
def lat(p):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
    if not m: return None
    v, u = float(m.group(1)), m.group(2)
    return round(v / 1000 if u == "us" else v * 1000 if u == "s" else v, 3)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
print(json.dumps({"bench": name, "connections": int(conns), "req_per_s": round(rps),
    "p50_ms": lat(50), "p90_ms": lat(90), "p99_ms": lat(99),
    "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    "socket_errors": sum(map(int, errs.groups())) if errs else 0,
    "requests": total, "tokens_recorded": int(after) - int(before),
    # PostgreSQL's write-ahead log per request (all processes, the sealer
    # included): bytes, and full-page images (pages first touched since
    # the last checkpoint).
    "wal_bytes_per_request": round(wal[0] / total) if total else None,
    "wal_fpi_per_request": round(wal[1] / total, 3) if total else None,
    "broker_peak_rss_kb": int(rss)}))
PY
}

echo "== machine: $(nproc) cores, $(uname -sr), $(psql --version | head -1), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
echo "== ceilings"
openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/ {printf "{\"bench\": \"openssl speed ecdsap256\", \"sign_per_s\": %s, \"verify_per_s\": %s}\n", $(NF-1), $NF}'
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Werror -I"$root/include" -I"$root/broker" \
    "$root/tests/bench/verify_bench.c" "$root/build/libcountersign-verify.a" \
    -lcrypto -ljansson -o "$work/verify_bench"
printf '{"bench": "C verify library, one core", "result": %s}\n' "$("$work/verify_bench" 3)"
pgbench_out=$(psql -X -q "$owner" -c "CREATE TABLE IF NOT EXISTS bench_insert (id bigserial, t timestamptz DEFAULT now(), d jsonb)" && \
    printf 'INSERT INTO bench_insert (d) VALUES (%s);\n' "'{\"a\":1}'" > "$work/insert.sql" && \
    pgbench -n -f "$work/insert.sql" -c 16 -j 2 -T "$secs" "$owner" 2>/dev/null | awk '/^tps/ {print $3; exit}')
printf '{"bench": "PostgreSQL INSERT per commit (pgbench, 16 clients)", "tx_per_s": %s}\n' "${pgbench_out:-null}"

start_broker 1
run_wrk "no-database HTTP (GET /healthz)" 64 get.lua "" /healthz | sed 's/"tokens_recorded": [0-9-]*, //'
echo "== issuance (client_credentials, client_secret_basic), sealer on"
for c in 1 16 64; do run_wrk "issuance, chain sealed" "$c" token.lua "$agent_basic"; done
BENCH_TOKEN=$(curl -fsS -u "$id:$secret" -d grant_type=client_credentials \
    -d scope=bench:read -d resource=https://bench.example -d requested_ttl=3600 \
    "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token)
export BENCH_TOKEN
echo "== introspection with use recording"
run_wrk "introspection, one hot token" 16 introspect.lua "$svc_basic" /oauth2/introspect
# A service sees many tokens: 2,000 distinct ones, each introspected many times.
for _ in $(seq 2000); do
	curl -fsS -u "$id:$secret" -d grant_type=client_credentials -d scope=bench:read \
	    -d resource=https://bench.example -d requested_ttl=3600 \
	    "http://127.0.0.1:$port/oauth2/token" | jq -r .access_token
done > "$work/tokens.txt"
BENCH_TOKENS_FILE=$work/tokens.txt run_wrk "introspection, 2,000 tokens" 16 introspect.lua "$svc_basic" /oauth2/introspect
# The introspection path's two caches (decisions 0005 and 0007), turned off
# in turn over the same tokens, alternated, since runs drift on a shared
# machine more than they differ.
echo "== introspection's caches on and off, alternating (2,000 tokens, 16 connections)"
for round in 1 2; do
	for variant in "both caches on" "verify_cache off" "service authentication cache off" "both off"; do
		case $variant in
		"both caches on") extra=() ;;
		"verify_cache off") extra=(COUNTERSIGN_VERIFY_CACHE=0) ;;
		"service authentication cache off") extra=(COUNTERSIGN_CACHE_TTL_MS=0) ;;
		*) extra=(COUNTERSIGN_VERIFY_CACHE=0 COUNTERSIGN_CACHE_TTL_MS=0) ;;
		esac
		stop_broker
		start_broker 1 "${extra[@]}"
		BENCH_TOKENS_FILE=$work/tokens.txt run_wrk "introspection, $variant, round $round" 16 introspect.lua "$svc_basic" /oauth2/introspect
	done
done
stop_broker
start_broker 1
echo "== step-up round trip: bc-authorize, approve, collect (one client, sequential)"
BENCH_URL=http://127.0.0.1:$port BENCH_AGENT_ID=$id BENCH_AGENT_SECRET=$secret \
BENCH_APPROVER_KEY=$approver_key BENCH_SCOPE=bench:write \
BENCH_RESOURCE=https://bench.example python3 "$root/tests/bench/stepup.py" 50
stop_broker
echo "== a slower disk: issuance with PostgreSQL's commit_delay at 0 and 2 ms"
# commit_delay makes every WAL flush wait (commit_siblings = 0: always),
# as a slower disk would; group commit should absorb it at higher load.
for delay in 2000 0; do
	psqlq "ALTER SYSTEM SET commit_delay = $delay" >/dev/null
	psqlq "ALTER SYSTEM SET commit_siblings = 0" >/dev/null
	psqlq "SELECT pg_reload_conf()" >/dev/null
	start_broker 1
	for c in 16 64; do run_wrk "issuance, commit_delay ${delay} us" "$c" token.lua "$agent_basic"; done
	stop_broker
done
psqlq "ALTER SYSTEM RESET commit_delay" >/dev/null
psqlq "ALTER SYSTEM RESET commit_siblings" >/dev/null
psqlq "SELECT pg_reload_conf()" >/dev/null
echo "== the audit sealer's cost: issuance at 16 connections, sealer on and off, alternating"
for round in 1 2; do
	for seal in 1 0; do
		start_broker "$seal"
		sleep 1	# let a sealer catch up with what the previous run left
		run_wrk "issuance, sealer $([ "$seal" = 1 ] && echo on || echo off), round $round" 16 token.lua "$agent_basic"
		stop_broker
	done
done
start_broker 1
sleep 1
echo "== side by side with node oidc-provider (client credentials, JWT access tokens, no durable record)"
if [ ! -d "$root/tests/bench/oidc-provider/node_modules/oidc-provider" ]; then
	(cd "$root/tests/bench/oidc-provider" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
peer_port=$(free_port)
peer_basic=$(printf 'bench:bench-peer-secret' | base64 -w0)
(cd "$root/tests/bench/oidc-provider" && \
    exec node server.mjs "$peer_port" bench bench-peer-secret) 2>/dev/null &
peer_pid=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://127.0.0.1:$peer_port/.well-known/openid-configuration" 2>/dev/null && break
	sleep 0.1
done
peer_rps() {
	BENCH_BASIC=$peer_basic wrk -t2 -c"$1" -d"${secs}s" -s "$root/tests/bench/token.lua" \
	    "http://127.0.0.1:$peer_port/token" | awk '/Requests\/sec/ {print int($2)}'
}
cs_rps() {
	BENCH_BASIC=$agent_basic wrk -t2 -c"$1" -d"${secs}s" -s "$root/tests/bench/token.lua" \
	    "http://127.0.0.1:$port/oauth2/token" | awk '/Requests\/sec/ {print int($2)}'
}
# Alternate the two so that drift on a shared machine hits both alike.
for c in 16 64; do
	a1=$(cs_rps "$c"); p1=$(peer_rps "$c"); a2=$(cs_rps "$c"); p2=$(peer_rps "$c")
	python3 -c "import json,sys; a=(int(sys.argv[1])+int(sys.argv[2]))/2; p=(int(sys.argv[3])+int(sys.argv[4]))/2; print(json.dumps({'bench':'countersign vs oidc-provider','connections':int(sys.argv[5]),'countersign_req_per_s':round(a),'oidc_provider_req_per_s':round(p),'ratio':round(a/p,2)}))" "$a1" "$a2" "$p1" "$p2" "$c"
done
kill "$peer_pid" 2>/dev/null; wait "$peer_pid" 2>/dev/null || true

echo "== audit after the runs"
"$bin" audit verify --json
issued=$(psqlq "SELECT count(*) FROM audit_events WHERE type = 'token.issued'")
tokens=$(psqlq "SELECT count(*) FROM tokens")
printf '{"bench": "audit rows vs tokens", "token_issued_events": %s, "token_rows": %s}\n' "$issued" "$tokens"
stop_broker
