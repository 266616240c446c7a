#!/usr/bin/env bash
# tests/fuzz/run.sh: build the libFuzzer targets and run each for a while.
#
#   tests/fuzz/run.sh OUTDIR SECONDS [TARGET...]
#
# Builds every tests/fuzz/fuzz_*.c (or only the TARGETs named, with or
# without the "fuzz_" prefix and ".c" suffix) with clang, libFuzzer, ASan
# and UBSan against the broker sources, then runs each for SECONDS starting
# from the seeds in tests/fuzz/corpus/<target>/. Everything it writes goes
# under OUTDIR: objects, binaries, logs, the working corpus (seeded from
# the repository on each run, so inputs found earlier are kept and the
# repository is never modified) and crash artifacts (OUTDIR/<target>-*).
#
# Prints one line per target, "fuzz <target>: <execs> execs, <cov>
# coverage, ok|CRASH", and exits non-zero if any target crashed or failed
# to build. Used by `make fuzz`. Set CLANG to use another compiler.
set -uo pipefail

usage() {
	echo "usage: $0 OUTDIR SECONDS [TARGET...]" >&2
	exit 2
}

[ $# -ge 2 ] || usage
case "$2" in
''|*[!0-9]*) usage ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$1" || exit 2
outdir=$(cd "$1" && pwd)
seconds=$2
shift 2
cc=${CLANG:-clang}

# The libraries come from the Makefile's PKGS, so a dependency added there
# is picked up here too.
pkgs=$(sed -n 's/^PKGS[[:space:]]*:=[[:space:]]*//p' "$root/Makefile" | head -n 1)
[ -n "$pkgs" ] || pkgs="libmicrohttpd jansson libssl libcrypto libpq"
# shellcheck disable=SC2086
pkg_cflags=$(pkg-config --cflags $pkgs) || { echo "fuzz: pkg-config failed for: $pkgs" >&2; exit 2; }
# shellcheck disable=SC2086
pkg_libs=$(pkg-config --libs $pkgs) || exit 2

san="-fsanitize=address,undefined -fno-sanitize-recover=all"
# shellcheck disable=SC2206
cflags=(-g -O1 -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2
    -I"$root/broker" -I"$root/lib" -I"$root/include" $pkg_cflags)

targets=()
if [ $# -gt 0 ]; then
	for t in "$@"; do
		t=${t%.c}
		t=${t#fuzz_}
		targets+=("fuzz_$t")
	done
else
	for f in "$here"/fuzz_*.c; do
		[ -e "$f" ] || continue
		t=$(basename "$f" .c)
		targets+=("$t")
	done
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no targets in $here" >&2
	exit 2
fi

# Compile the broker once, in parallel, instrumented for coverage but
# without libFuzzer's main(), which only the target binaries link.
objdir="$outdir/obj"
mkdir -p "$objdir"
make -s -C "$root" BUILD=build build/embed >"$outdir/embed.log" 2>&1 || {
	echo "fuzz: cannot build build/embed (see $outdir/embed.log)" >&2
	exit 2
}
if ! "$root/build/embed" embedded_migrations "$root"/migrations/*.sql \
    >"$outdir/embedded_migrations.c.tmp" ||
    ! mv "$outdir/embedded_migrations.c.tmp" "$outdir/embedded_migrations.c"; then
	echo "fuzz: cannot generate embedded_migrations.c" >&2
	exit 2
fi
# The approver page's files, as the Makefile embeds them (api_ui.c needs them).
if ! "$root/build/embed" embedded_ui "$root"/ui/*.html "$root"/ui/*.css \
    "$root"/ui/*.js "$root"/ui/*.svg >"$outdir/embedded_ui.c.tmp" ||
    ! mv "$outdir/embedded_ui.c.tmp" "$outdir/embedded_ui.c"; then
	echo "fuzz: cannot generate embedded_ui.c" >&2
	exit 2
fi

srcs=("$outdir/embedded_migrations.c" "$outdir/embedded_ui.c" "$root/lib/verify.c")
for f in "$root"/broker/*.c; do
	[ "$(basename "$f")" = main.c ] || srcs+=("$f")
done
objs=()
pids=()
jobs_max=$(nproc 2>/dev/null || echo 4)
for f in "${srcs[@]}"; do
	o="$objdir/$(basename "$f" .c).o"
	objs+=("$o")
	rm -f "$o"
	extra=()
	case "$f" in "$outdir"/embedded_*.c) extra=(-Wno-missing-prototypes) ;; esac
	# shellcheck disable=SC2086
	"$cc" "${cflags[@]}" "${extra[@]}" -fsanitize=fuzzer-no-link $san \
	    -c -o "$o" "$f" >"$o.log" 2>&1 &
	pids+=($!)
	if [ ${#pids[@]} -ge "$jobs_max" ]; then
		wait "${pids[0]}" || true
		pids=("${pids[@]:1}")
	fi
done
wait
broken=0
for o in "${objs[@]}"; do
	if [ -s "$o.log" ]; then
		cat "$o.log" >&2
	fi
	if [ ! -s "$o" ] || grep -q 'error:' "$o.log"; then
		broken=1
	fi
done
if [ "$broken" = 1 ]; then
	echo "fuzz: the broker sources do not compile with $cc" >&2
	exit 1
fi

failed=0
for t in "${targets[@]}"; do
	src="$here/$t.c"
	bin="$outdir/$t"
	log="$outdir/$t.log"
	if [ ! -f "$src" ]; then
		echo "fuzz $t: no such target ($src)"
		failed=1
		continue
	fi
	# shellcheck disable=SC2086
	if ! "$cc" "${cflags[@]}" -fsanitize=fuzzer $san -o "$bin" "$src" \
	    "${objs[@]}" $pkg_libs -lpthread >"$outdir/$t.build.log" 2>&1; then
		cat "$outdir/$t.build.log" >&2
		echo "fuzz $t: build FAILED (see $outdir/$t.build.log)"
		failed=1
		continue
	fi
	[ -s "$outdir/$t.build.log" ] && cat "$outdir/$t.build.log" >&2

	# A working corpus under OUTDIR, topped up with the repository's seeds.
	corpus="$outdir/corpus/$t"
	mkdir -p "$corpus"
	if [ -d "$here/corpus/$t" ]; then
		cp -R "$here/corpus/$t"/. "$corpus"/
	fi

	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
	    "$bin" -max_total_time="$seconds" -print_final_stats=1 \
	    -timeout=10 -artifact_prefix="$outdir/$t-" "$corpus" \
	    >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | awk '{print $2}')
	if [ "$rc" = 0 ]; then
		status=ok
	else
		status=CRASH
		failed=1
	fi
	echo "fuzz $t: ${execs:-?} execs, ${cov:-?} coverage, $status"
	if [ "$status" = CRASH ]; then
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' "$log" |
		    head -n 8 | sed 's/^/    /'
		echo "    log: $log"
	fi
done
exit "$failed"
