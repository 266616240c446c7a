#!/usr/bin/env bash
# deploy/deps.sh — install missing build/run/test dependencies of Countersign
# (Debian 12 package names).
#
# Usage: deploy/deps.sh [build|test|all]      (default: build)
#
#   build  compiler, headers and libraries, PostgreSQL 15 server + client,
#          openssl, curl
#   test   build + clang (libFuzzer, sanitizers), libclang-rt-14-dev, nodejs,
#          npm, jq, python3, python3-jwt, wrk, procps, psmisc, cppcheck,
#          iproute2, chromium (the headless browser of tests/ui),
#          systemd (systemd-analyze checks deploy/countersign.service),
#          strace (traces the broker against the unit's system-call filter),
#          python3-yaml (parses deploy/compose.yaml and deploy/k8s),
#          faketime (libfaketime, for tests/e2e/clock.test.mjs)
#   all    everything (currently the same set as "test")
#
# Each package is checked with dpkg-query; only missing ones are installed.
# As root: apt-get update (only when something is missing), then
# apt-get install -y --no-install-recommends. Not root: prints the missing
# packages and the sudo command to run, and exits 1.
# A working `node` (major >= 18) plus `npm` on PATH satisfies nodejs/npm, so a
# Node.js installed from another source (nodesource, nvm, ...) is accepted.
set -euo pipefail

readonly BUILD_PKGS=(
  build-essential pkg-config libssl-dev libpq-dev libmicrohttpd-dev
  libjansson-dev libcurl4-openssl-dev libgnutls28-dev postgresql-15 postgresql-client-15 openssl curl
  jq
)
readonly TEST_PKGS=(
  clang libclang-rt-14-dev nodejs npm jq python3 python3-jwt wrk procps psmisc
  cppcheck iproute2 chromium systemd strace python3-yaml faketime
)
readonly NODE_MIN_MAJOR=18

die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

mode=build
case $# in
  0) ;;
  1) mode=$1 ;;
  *) usage >&2; exit 2 ;;
esac
case $mode in
  build) pkgs=("${BUILD_PKGS[@]}") ;;
  test|all) pkgs=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}") ;;
  -h|--help|help) usage; exit 0 ;;
  *) printf 'deps: unknown set "%s" (expected build, test or all)\n' "$mode" >&2
     exit 2 ;;
esac

command -v dpkg-query >/dev/null 2>&1 \
  || die "dpkg-query not found: this script supports Debian/Ubuntu only"

# True if dpkg reports PKG as installed (any architecture).
dpkg_installed() {
  local status
  status=$(dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null) || return 1
  grep -qE '^(install|hold) ok installed$' <<<"$status"
}

# Virtual packages provided by installed packages (e.g. nodesource's nodejs
# provides npm), one per line.
provided=$(dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null \
  | sed -n 's/^[ih]i *|//p' | tr ',' '\n' | sed 's/([^)]*)//g; s/:any//; s/^ *//; s/ *$//' \
  | grep -v '^$' | sort -u) || provided=""

# True if PKG is installed or provided by an installed package.
satisfied() {
  dpkg_installed "$1" || grep -qxF -- "$1" <<<"$provided"
}

# True if `node` (major >= NODE_MIN_MAJOR) and `npm` on PATH actually run.
node_from_path_ok() {
  local major
  command -v node >/dev/null 2>&1 || return 1
  command -v npm >/dev/null 2>&1 || return 1
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || return 1
  [[ $major =~ ^[0-9]+$ ]] && (( major >= NODE_MIN_MAJOR )) || return 1
  npm --version >/dev/null 2>&1
}

node_ok=false
if node_from_path_ok; then node_ok=true; fi

# Collect missing packages.
missing=()
for p in "${pkgs[@]}"; do
  if [[ $node_ok == true && ( $p == nodejs || $p == npm ) ]]; then
    continue
  fi
  satisfied "$p" || missing+=("$p")
done

if (( ${#missing[@]} == 0 )); then
  echo "deps: all present"
  exit 0
fi

# Debian's npm depends on Debian's nodejs; warn if another node would shadow it.
if [[ " ${missing[*]} " == *" npm "* ]] && command -v node >/dev/null 2>&1 \
   && ! dpkg_installed nodejs; then
  printf 'deps: warning: a non-Debian node is on PATH (%s) but npm is missing;\n' \
    "$(command -v node)" >&2
  printf 'deps: warning: the Debian npm package may pull in or conflict with Debian nodejs\n' >&2
fi

if (( EUID != 0 )); then
  {
    printf 'deps: missing packages (%s): %s\n' "$mode" "${missing[*]}"
    printf 'deps: run this script as root, or run:\n'
    printf '  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s\n' \
      "${missing[*]}"
  } >&2
  exit 1
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found"

printf 'deps: installing missing packages (%s): %s\n' "$mode" "${missing[*]}"
apt-get update || die "apt-get update failed"
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  "${missing[@]}" || die "apt-get install failed for: ${missing[*]}"

# Verify.
still=()
for p in "${missing[@]}"; do
  satisfied "$p" || still+=("$p")
done
if (( ${#still[@]} > 0 )); then
  die "still not installed after apt-get: ${still[*]}"
fi
printf 'deps: installed %d package(s): %s\n' "${#missing[@]}" "${missing[*]}"
