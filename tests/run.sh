#!/usr/bin/env bash
# tests/run.sh: run the whole suite and print one closing line
# "N passed, N failed[, N skipped]" that adds up every unit, e2e, interop
# and browser (tests/ui, headless chromium) test. Used by `make test` and
# `make asan`.
#
#   tests/run.sh [--build DIR] [--unit-only] [--e2e-only] [FILE.test.mjs ...]
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build"
unit=1
e2e=1
files=()
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$(cd "$2" && pwd); shift 2 ;;
	--unit-only) e2e=0; shift ;;
	--e2e-only) unit=0; shift ;;
	*) files+=("$1"); shift ;;
	esac
done

passed=0
failed=0
skipped=0

if [ "$unit" = 1 ]; then
	for t in "$build"/tests/test_*; do
		[ -x "$t" ] || continue
		out=$("$t" 2>&1)
		rc=$?
		printf '%s\n' "$out"
		line=$(printf '%s\n' "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
		p=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')
		f=$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
		if [ -z "$line" ]; then
			echo "unit: $(basename "$t") crashed or printed no summary (exit $rc)"
			failed=$((failed + 1))
			continue
		fi
		passed=$((passed + p))
		failed=$((failed + f))
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
			echo "unit: $(basename "$t") exited $rc"
			failed=$((failed + 1))
		fi
	done
fi

if [ "$e2e" = 1 ]; then
	if ! (cd "$here" && node -e 'const fs = require("fs");
	    for (const d of Object.keys(require("./package.json").dependencies))
	        if (!fs.existsSync("node_modules/" + d)) process.exit(1);'); then
		(cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || {
			echo "e2e: npm ci failed in tests/"; failed=$((failed + 1)); }
	fi
	pgdir=$(mktemp -d /tmp/cs-test-pg.XXXXXX)
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cleanup() {
		"$root/deploy/pg.sh" stop "$pgdir" immediate >/dev/null 2>&1 || true
		rm -rf "$pgdir"
	}
	trap cleanup EXIT
	if ! "$root/deploy/pg.sh" init "$pgdir" "$port" >/dev/null ||
	    ! "$root/deploy/pg.sh" start "$pgdir" >/dev/null; then
		echo "e2e: cannot start PostgreSQL"
		failed=$((failed + 1))
	else
		if [ ${#files[@]} -eq 0 ]; then
			mapfile -t files < <(ls "$here"/e2e/*.test.mjs "$here"/interop/*.test.mjs "$here"/ui/*.test.mjs 2>/dev/null)
		fi
		tap=$(mktemp)
		CS_PGDIR="$pgdir" CS_BIN="$build/countersign" \
		    node --test --test-concurrency=2 \
		    --test-reporter=spec --test-reporter-destination=stdout \
		    --test-reporter=tap --test-reporter-destination="$tap" \
		    "${files[@]}"
		p=$(grep -E '^# pass [0-9]+' "$tap" | tail -n 1 | awk '{print $3}')
		f=$(grep -E '^# fail [0-9]+' "$tap" | tail -n 1 | awk '{print $3}')
		s=$(grep -E '^# skipped [0-9]+' "$tap" | tail -n 1 | awk '{print $3}')
		c=$(grep -E '^# cancelled [0-9]+' "$tap" | tail -n 1 | awk '{print $3}')
		if [ -z "$p" ]; then
			echo "e2e: node printed no summary"
			failed=$((failed + 1))
		fi
		if grep -qE '^ *not ok' "$tap"; then
			echo "e2e: failed or cancelled:"
			grep -E '^ *not ok' "$tap" | sed 's/^ */  /'
		fi
		passed=$((passed + ${p:-0}))
		failed=$((failed + ${f:-0} + ${c:-0}))
		skipped=$((skipped + ${s:-0}))
		rm -f "$tap"
	fi
fi

echo "${passed} passed, ${failed} failed, ${skipped} skipped"
[ "$failed" = 0 ]
