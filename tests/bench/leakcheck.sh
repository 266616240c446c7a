#!/usr/bin/env bash
# tests/bench/leakcheck.sh (make leakcheck): at least LEAK_MIN_REQUESTS
# requests of mix.lua (tokens, introspection, hostile and malformed
# requests, the approver API) against the ASan+UBSan+LSan build, then a
# clean shutdown. Fails on any sanitizer report (leak, memory error,
# undefined behaviour), any 5xx answer, a non-zero exit of the broker, a
# token without its token.issued event, or fewer requests than
# LEAK_MIN_REQUESTS.
#
#   LEAK_BIN           broker binary (default build-asan/countersign)
#   LEAK_SECONDS       seconds of load (default 30)
#   LEAK_CONNECTIONS   concurrent connections (default 8)
#   LEAK_MIN_REQUESTS  requests the run must reach (default 10000)
set -euo pipefail

. "$(dirname "$0")/common.sh"
leak_bin=${LEAK_BIN:-$root/build-asan/countersign}
secs=${LEAK_SECONDS:-30}
conns=${LEAK_CONNECTIONS:-8}
min=${LEAK_MIN_REQUESTS:-10000}

[ -x "$leak_bin" ] || { echo "leakcheck: $leak_bin missing (make asan builds it)" >&2; exit 1; }
# Reports go to files of their own, so that nothing can hide one.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23:log_path=$work/san"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/san"
export LSAN_OPTIONS="log_path=$work/san"

cs_setup "$leak_bin"
cs_start_broker
echo "== leakcheck: $secs s of mix.lua on $conns connections against $leak_bin"
out=$(cs_mix "$secs" "$conns")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$broker_pid/status")
rc=0
cs_stop_broker || rc=$?
printf '%s\n' "$out" | grep -E 'requests in|Requests/sec|Socket errors|^status' || true
total=$(sed -n 's/^ *\([0-9][0-9]*\) requests in.*/\1/p' <<<"$out")
server_errors=$(awk '$1 == "status" && $2 >= 500 { n += $3 } END { print n + 0 }' <<<"$out")
fail=0
if [ "${total:-0}" -lt "$min" ]; then
	echo "leakcheck: FAIL: $total requests, fewer than $min" >&2; fail=1
fi
if ! cs_audit_matches; then
	echo "leakcheck: FAIL: token rows and token.issued events differ" >&2; fail=1
fi
if [ "$server_errors" -ne 0 ]; then
	echo "leakcheck: FAIL: $server_errors answers with status 5xx" >&2; fail=1
fi
if [ "$rc" -ne 0 ]; then
	echo "leakcheck: FAIL: the broker exited with status $rc" >&2; fail=1
fi
if compgen -G "$work/san*" >/dev/null; then
	echo "leakcheck: FAIL: sanitizer reports:" >&2
	cat "$work"/san* | head -60 >&2
	fail=1
fi
if grep -Eq 'Sanitizer|runtime error' "$work/broker.log"; then
	echo "leakcheck: FAIL: sanitizer output in the broker log:" >&2
	grep -E -A20 'Sanitizer|runtime error' "$work/broker.log" | head -60 >&2
	fail=1
fi
printf '{"leakcheck": "%s", "requests": %s, "seconds": %s, "connections": %s, "server_errors": %s, "broker_peak_rss_kb": %s, "exit": %s}\n' \
    "$([ $fail -eq 0 ] && echo pass || echo FAIL)" "${total:-0}" "$secs" "$conns" \
    "$server_errors" "$rss" "$rc"
exit "$fail"
