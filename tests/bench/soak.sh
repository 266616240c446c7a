#!/usr/bin/env bash
# tests/bench/soak.sh (make soak): mix.lua (issuance, introspection, and
# the hostile requests of leakcheck.sh) at a fixed rate for SOAK_SECONDS
# against the release build, sampling the broker's resident memory (and
# open descriptors) every SOAK_INTERVAL seconds. After a warm-up, it fits a
# least-squares line to the RSS samples and fails if the slope exceeds
# SOAK_MAX_SLOPE KB/min, on any 5xx answer, or on a token without its
# token.issued event.
#
#   SOAK_BIN          broker binary (default build/countersign)
#   SOAK_SECONDS      seconds of load (default 600)
#   SOAK_RATE         requests per second, approximately (default 200)
#   SOAK_CONNECTIONS  concurrent connections (default 4)
#   SOAK_INTERVAL     seconds between samples (default 5)
#   SOAK_WARMUP       seconds of samples left out of the fit (default 60:
#                     allocator arenas and connection buffers grow at first)
#   SOAK_MAX_SLOPE    KB/min the RSS may grow (default 256)
#   SOAK_SAMPLES      file to keep the samples in ("seconds rss_kb fds")
set -euo pipefail

. "$(dirname "$0")/common.sh"
soak_bin=${SOAK_BIN:-$root/build/countersign}
secs=${SOAK_SECONDS:-600}
rate=${SOAK_RATE:-200}
conns=${SOAK_CONNECTIONS:-4}
interval=${SOAK_INTERVAL:-5}
warmup=${SOAK_WARMUP:-60}
max_slope=${SOAK_MAX_SLOPE:-256}

[ -x "$soak_bin" ] || { echo "soak: $soak_bin missing (make builds it)" >&2; exit 1; }
cs_setup "$soak_bin"
cs_start_broker
# Each connection sends one request, then waits: conns * 1000 / rate ms.
export BENCH_DELAY_MS=$(( conns * 1000 / rate ))
echo "== soak: $secs s at about $rate req/s on $conns connections against $soak_bin"
cs_mix "$secs" "$conns" > "$work/wrk.out" &
wrk_pid=$!
start=$(date +%s)
: > "$work/samples"
while kill -0 "$wrk_pid" 2>/dev/null; do
	t=$(( $(date +%s) - start ))
	kb=$(awk '/VmRSS/ {print $2}' "/proc/$broker_pid/status")
	fds=$(find "/proc/$broker_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	echo "$t $kb $fds" >> "$work/samples"
	sleep "$interval"
done
wait "$wrk_pid"
[ -n "${SOAK_SAMPLES:-}" ] && cp "$work/samples" "$SOAK_SAMPLES"
rc=0
cs_stop_broker || rc=$?
grep -E 'requests in|Requests/sec|Socket errors|^status' "$work/wrk.out" || true
server_errors=$(awk '$1 == "status" && $2 >= 500 { n += $3 } END { print n + 0 }' "$work/wrk.out")
audit_bad=0
cs_audit_matches || audit_bad=1
python3 - "$work/samples" "$warmup" "$max_slope" "$server_errors" "$rc" "$audit_bad" <<'PY'
import json, sys
path, warmup, max_slope, server_errors, rc, audit_bad = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rows = [tuple(map(float, l.split())) for l in open(path) if l.strip()]
fit = [r for r in rows if r[0] >= warmup]
def slope(pts):
    n = len(pts)
    if n < 3:
        return None
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx * 60 if sxx else None
kb_min = slope([(r[0], r[1]) for r in fit])
fd_min = slope([(r[0], r[2]) for r in fit])
ok = kb_min is not None and kb_min <= max_slope and server_errors == 0 and rc == 0 and not audit_bad
print(json.dumps({"soak": "pass" if ok else "FAIL", "samples": len(rows), "fitted": len(fit),
    "rss_kb_first": int(rows[0][1]), "rss_kb_after_warmup": int(fit[0][1]) if fit else None,
    "rss_kb_last": int(rows[-1][1]), "rss_kb_max": int(max(r[1] for r in rows)),
    "rss_slope_kb_per_min": None if kb_min is None else round(kb_min, 1),
    "fd_slope_per_min": None if fd_min is None else round(fd_min, 2),
    "fds_last": int(rows[-1][2]), "max_slope_kb_per_min": max_slope,
    "server_errors": server_errors, "broker_exit": rc,
    "every_token_audited": not audit_bad}))
if kb_min is None:
    print("soak: FAIL: too few samples after the warm-up", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
