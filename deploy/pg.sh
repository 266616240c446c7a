#!/usr/bin/env bash
# deploy/pg.sh — a throwaway local PostgreSQL 15 cluster for tests and CI.
#
# Usage:
#   deploy/pg.sh init DIR [PORT]     create the cluster in DIR/data if absent and
#                                    (re)write its settings; PORT default 5433,
#                                    stored in DIR/port
#   deploy/pg.sh start DIR           init if needed, start unless running, wait
#                                    until it accepts connections
#   deploy/pg.sh stop DIR [MODE]     stop if running (MODE smart|fast|immediate,
#                                    default fast)
#   deploy/pg.sh restart DIR [MODE]  stop (MODE, default fast), then start
#   deploy/pg.sh status DIR          exit 0 if running, 3 if not
#   deploy/pg.sh url DIR [DBNAME]    print postgresql://postgres@127.0.0.1:PORT/DBNAME
#                                    (default DBNAME postgres)
#   deploy/pg.sh createdb DIR NAME   create database NAME unless it exists
#
# The server listens on 127.0.0.1:PORT only; unix sockets are disabled.
# Authentication is "trust" for user postgres: never use this for real data.
# Layout: DIR/data (cluster), DIR/log/postgresql.log (server log),
# DIR/log/initdb.log, DIR/port.
#
# Environment: PG_BINDIR  folder holding initdb/pg_ctl/postgres (default: the
#              newest of /usr/lib/postgresql/*/bin, preferring 15).
# As root, the server runs as the "postgres" system user (or "countersign-pg",
# created if needed); DIR is chowned to it, and ancestors of DIR that user
# cannot traverse get o+x (search only), each change being reported.
set -euo pipefail

readonly DEFAULT_PORT=5433
readonly PREFERRED_MAJOR=15
readonly START_TIMEOUT=30
readonly CONF_NAME=countersign.conf

die() { printf 'pg: error: %s\n' "$*" >&2; exit 1; }
warn() { printf 'pg: warning: %s\n' "$*" >&2; }
note() { printf 'pg: %s\n' "$*"; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# ---------------------------------------------------------------- failure log
# When set, the last 20 lines of this file are printed if the script fails.
FAIL_LOG=""
on_exit() {
  local rc=$?
  if (( rc != 0 )) && [[ -n $FAIL_LOG && -s $FAIL_LOG ]]; then
    printf 'pg: last 20 lines of %s:\n' "$FAIL_LOG" >&2
    tail -n 20 -- "$FAIL_LOG" >&2 || true
  fi
  return "$rc"
}
trap on_exit EXIT

# ------------------------------------------------------------------- binaries
BINDIR=""
find_bindir() {
  if [[ -n ${PG_BINDIR:-} ]]; then
    [[ -x $PG_BINDIR/pg_ctl && -x $PG_BINDIR/initdb ]] \
      || die "PG_BINDIR=$PG_BINDIR does not contain pg_ctl and initdb"
    BINDIR=$PG_BINDIR
  elif [[ -x /usr/lib/postgresql/$PREFERRED_MAJOR/bin/pg_ctl ]]; then
    BINDIR=/usr/lib/postgresql/$PREFERRED_MAJOR/bin
  else
    local d
    d=$(for c in /usr/lib/postgresql/*/bin; do
          [[ -x $c/pg_ctl ]] && printf '%s\n' "$c"
        done | sort -V | tail -n 1)
    if [[ -n $d ]]; then
      BINDIR=$d
    elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
      BINDIR=$(dirname -- "$(command -v pg_ctl)")
    else
      die "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH);" \
          "install postgresql-$PREFERRED_MAJOR (deploy/deps.sh) or set PG_BINDIR"
    fi
  fi
  local v
  v=$("$BINDIR/pg_ctl" --version 2>/dev/null | sed -n 's/.* \([0-9][0-9]*\)[.0-9]*.*/\1/p' | head -n 1)
  if [[ -n $v && $v != "$PREFERRED_MAJOR" ]]; then
    warn "using PostgreSQL $v binaries from $BINDIR (expected $PREFERRED_MAJOR)"
  fi
}

# psql / pg_isready: same folder as the server if present, else PATH.
client() {
  local name=$1; shift
  if [[ -x $BINDIR/$name ]]; then
    "$BINDIR/$name" "$@"
  else
    command -v "$name" >/dev/null 2>&1 || die "$name not found"
    "$name" "$@"
  fi
}

# ------------------------------------------------------------ user handling
IS_ROOT=false
(( EUID == 0 )) && IS_ROOT=true
RUN_USER=""   # OS user running initdb/pg_ctl when we are root

pick_run_user() {
  [[ $IS_ROOT == true ]] || { RUN_USER=$(id -un); return; }
  # An existing cluster keeps its owner (unless it is root-owned).
  if [[ -d $DATA ]]; then
    local owner
    owner=$(stat -c %U -- "$DATA")
    if [[ $owner != root && $owner != UNKNOWN ]]; then
      RUN_USER=$owner
      return
    fi
  fi
  if id -u postgres >/dev/null 2>&1; then
    RUN_USER=postgres
  else
    if ! id -u countersign-pg >/dev/null 2>&1; then
      note "creating system user countersign-pg to run PostgreSQL (it refuses to run as root)"
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin countersign-pg \
        || die "could not create system user countersign-pg"
    fi
    RUN_USER=countersign-pg
  fi
}

# Run a command as the cluster's OS user, from / (root's cwd may not be
# readable by that user), without inheriting our lock file descriptor.
as_pg() {
  if [[ $IS_ROOT == true ]]; then
    (cd / && runuser -u "$RUN_USER" -- "$@" 9>&-)
  else
    (cd / && "$@" 9>&-)
  fi
}

# As root: make every ancestor of DIR traversable by RUN_USER, adding o+x
# (search only, never read/write) where that user cannot search it.
fix_ancestors() {
  [[ $IS_ROOT == true ]] || return 0
  local path="" comp parent
  local -a comps
  # Ancestors only (DIR itself is chowned separately).
  parent=$(dirname -- "$DIR")
  IFS=/ read -r -a comps <<<"${parent#/}"
  for comp in "${comps[@]}"; do
    [[ -n $comp ]] || continue
    path+="/$comp"
    if ! runuser -u "$RUN_USER" -- test -x "$path" 2>/dev/null; then
      chmod o+x -- "$path" || die "could not add o+x to $path"
      note "added o+x (search only) to $path so that user $RUN_USER can reach $DIR"
      runuser -u "$RUN_USER" -- test -x "$path" 2>/dev/null \
        || die "user $RUN_USER still cannot traverse $path (ACL or mount options?)"
    fi
  done
}

# Give RUN_USER ownership of DIR, DIR/data and DIR/log (as root only).
fix_ownership() {
  [[ $IS_ROOT == true ]] || return 0
  chown -- "$RUN_USER:" "$DIR"
  [[ -f $PORTFILE ]] && chown -- "$RUN_USER:" "$PORTFILE"
  [[ -d $DATA ]] && chown -R -- "$RUN_USER:" "$DATA"
  [[ -d $LOGDIR ]] && chown -R -- "$RUN_USER:" "$LOGDIR"
  return 0
}

# ------------------------------------------------------------- cluster state
read_port() {
  local p
  [[ -f $PORTFILE ]] || return 1
  read -r p <"$PORTFILE" || true
  [[ $p =~ ^[0-9]+$ ]] || die "$PORTFILE does not contain a port number"
  printf '%s\n' "$p"
}

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && (( 10#$1 >= 1 && 10#$1 <= 65535 )); }

# Processes whose working directory is the data directory (the postmaster
# and its children chdir there). Used to find leftovers after a kill -9.
procs_in_data() {
  local p d
  for p in /proc/[0-9]*; do
    d=$(readlink -- "$p/cwd" 2>/dev/null) || continue
    [[ $d == "$DATA" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

# Prints the PID from postmaster.pid; fails if there is none.
pidfile_pid() {
  local pid
  [[ -f $DATA/postmaster.pid ]] || return 1
  read -r pid <"$DATA/postmaster.pid" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}

# Prints one of: stopped | running | stale
#   stale: postmaster.pid exists but its PID is not a live postmaster for DATA
#   (dead, a zombie, or reused by another process after a kill -9).
cluster_state() {
  [[ -e $DATA/postmaster.pid ]] || { echo stopped; return; }
  [[ -r $DATA/postmaster.pid ]] || die "cannot read $DATA/postmaster.pid (cluster owned by another user?)"
  local pid cwd cmd
  if ! pid=$(pidfile_pid); then echo stale; return; fi
  if [[ -d /proc/$pid ]]; then
    if cwd=$(readlink -- "/proc/$pid/cwd" 2>/dev/null) && [[ $cwd == "$DATA" ]]; then
      echo running; return
    fi
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    if [[ $cmd == *postgres* && $cmd == *" $DATA"* ]]; then
      echo running; return
    fi
  fi
  echo stale
}

is_running() { [[ $(cluster_state) == running ]]; }

# After a kill -9 of the postmaster its children exit on their own within a
# moment; starting while they still hold shared memory fails, so wait.
wait_for_leftovers() {
  local i pids
  for ((i = 0; i < 100; i++)); do
    pids=$(procs_in_data)
    [[ -z $pids ]] && return 0
    (( i == 0 )) && note "waiting for leftover server processes to exit: $(echo "$pids" | tr '\n' ' ')"
    sleep 0.2
  done
  die "leftover processes still use $DATA after 20 s: $(echo "$pids" | tr '\n' ' ') — stop them first"
}

# Remove a stale postmaster.pid after making sure no server process remains.
clear_stale_pid() {
  local pid
  pid=$(pidfile_pid || echo '?')
  note "stale $DATA/postmaster.pid (PID $pid is not a running postmaster for this cluster)"
  wait_for_leftovers
  # Let the postmaster handle a lock file whose PID is gone entirely (it also
  # checks the old shared memory segment); remove it ourselves only when the
  # PID still exists (zombie or reused), which would make the server refuse.
  if [[ $pid == '?' || -d /proc/$pid ]]; then
    rm -f -- "$DATA/postmaster.pid"
    note "removed stale postmaster.pid"
  else
    note "PID $pid is gone; the server will replace the stale postmaster.pid itself"
  fi
}

wait_ready() {
  local port=$1 i
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    if client pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2; then
      return 0
    fi
    is_running || die "server exited during startup"
    sleep 0.2
  done
  die "server did not accept connections on 127.0.0.1:$port within ${START_TIMEOUT}s"
}

# ---------------------------------------------------------------- locking
# Serialise concurrent invocations on the same DIR (fd 9, closed for children).
take_lock() {
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>>"$DIR/.pg.lock"
  flock -w 120 9 || die "timed out waiting for the lock on $DIR/.pg.lock"
}

# ---------------------------------------------------------------- commands
write_conf() {
  local port=$1 conf="$DATA/$CONF_NAME"
  {
    echo "# Written by deploy/pg.sh; rewritten on every init/start."
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = ''"
    echo "fsync = on"
    echo "max_connections = 200"
    echo "shared_buffers = 128MB"
    echo "logging_collector = off"
    echo "log_min_messages = warning"
    echo "log_statement = 'none'"
  } >"$conf.tmp"
  mv -f -- "$conf.tmp" "$conf"
  if ! grep -qxF "include_if_exists = '$CONF_NAME'" "$DATA/postgresql.conf"; then
    printf "\n# deploy/pg.sh settings (last include wins)\ninclude_if_exists = '%s'\n" \
      "$CONF_NAME" >>"$DATA/postgresql.conf"
  fi
  [[ $IS_ROOT == true ]] && chown -- "$RUN_USER:" "$conf" "$DATA/postgresql.conf"
  return 0
}

cmd_init() {
  local port=${1:-}
  if [[ -n $port ]]; then
    valid_port "$port" || die "invalid port: $port"
    port=$((10#$port))
  elif ! port=$(read_port); then
    port=$DEFAULT_PORT
  fi

  mkdir -p -- "$DIR" "$LOGDIR" || die "cannot create $DIR"
  fix_ancestors
  fix_ownership

  if [[ -f $DATA/PG_VERSION ]]; then
    local have want
    have=$(<"$DATA/PG_VERSION")
    want=$("$BINDIR/pg_ctl" --version | sed -n 's/.* \([0-9][0-9]*\)[.0-9]*.*/\1/p' | head -n 1)
    [[ -z $want || $have == "$want" ]] \
      || die "$DATA is a PostgreSQL $have cluster but the binaries in $BINDIR are version $want"
  else
    if [[ -d $DATA && -n $(find "$DATA" -mindepth 1 -maxdepth 1 -print -quit) ]]; then
      die "$DATA exists and is not empty but holds no cluster (no PG_VERSION); remove it first"
    fi
    note "initdb in $DATA (OS user $RUN_USER; superuser postgres, auth trust, no password; locale C.UTF-8)"
    FAIL_LOG=$LOGDIR/initdb.log
    : >"$FAIL_LOG"
    [[ $IS_ROOT == true ]] && chown -- "$RUN_USER:" "$FAIL_LOG"
    if ! as_pg "$BINDIR/initdb" -D "$DATA" --locale=C.UTF-8 --encoding=UTF8 \
          --auth=trust -U postgres --no-instructions >>"$FAIL_LOG" 2>&1; then
      die "initdb failed (see $FAIL_LOG)"
    fi
    FAIL_LOG=$LOGFILE
  fi

  write_conf "$port"
  printf '%s\n' "$port" >"$PORTFILE"
  chmod 0644 -- "$PORTFILE"
  fix_ownership

  if is_running; then
    local running_port
    running_port=$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)
    if [[ -n $running_port && $running_port != "$port" ]]; then
      warn "server is running on port $running_port; restart to use port $port"
    fi
  fi
  note "cluster ready in $DIR (port $port)"
}

cmd_start() {
  if [[ ! -f $DATA/PG_VERSION || ! -f $PORTFILE ]]; then
    cmd_init
  else
    # Re-apply settings (cheap) and ownership in case they were disturbed.
    mkdir -p -- "$LOGDIR"
    fix_ancestors
    fix_ownership
  fi
  local port state
  port=$(read_port)
  write_conf "$port"

  state=$(cluster_state)
  case $state in
    running)
      FAIL_LOG=$LOGFILE
      wait_ready "$port"
      note "running on 127.0.0.1:$port"
      return 0
      ;;
    stale) clear_stale_pid ;;
    stopped) wait_for_leftovers ;;
  esac

  if client pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2; then
    die "another server already answers on 127.0.0.1:$port; pick another port (deploy/pg.sh init $DIR PORT)"
  fi
  FAIL_LOG=$LOGFILE

  touch -- "$LOGFILE"
  [[ $IS_ROOT == true ]] && chown -- "$RUN_USER:" "$LOGFILE"
  if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" -w -t "$START_TIMEOUT" -l "$LOGFILE" start >/dev/null; then
    die "pg_ctl start failed for $DATA"
  fi
  wait_ready "$port"
  note "running on 127.0.0.1:$port"
}

cmd_stop() {
  local mode=${1:-fast}
  case $mode in smart|fast|immediate) ;; *) die "invalid stop mode: $mode (smart|fast|immediate)";; esac
  [[ -f $DATA/PG_VERSION ]] || { note "no cluster in $DIR; nothing to stop"; return 0; }
  FAIL_LOG=$LOGFILE
  case $(cluster_state) in
    stopped) note "not running" ;;
    stale)
      note "not running (stale postmaster.pid, PID $(pidfile_pid || echo '?'))"
      wait_for_leftovers
      ;;
    running)
      as_pg "$BINDIR/pg_ctl" -D "$DATA" -m "$mode" -w -t 60 stop >/dev/null \
        || die "pg_ctl stop -m $mode failed for $DATA"
      wait_for_leftovers
      note "stopped"
      ;;
  esac
}

cmd_status() {
  local port
  port=$(read_port 2>/dev/null || echo '?')
  if [[ -f $DATA/PG_VERSION ]] && is_running; then
    note "running on 127.0.0.1:$port (PID $(pidfile_pid))"
    return 0
  fi
  note "not running ($DIR)"
  return 3
}

# Percent-encode a database name for use in a URL path.
urlencode() {
  local LC_ALL=C s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s\n' "$out"
}

cmd_url() {
  local db=${1:-postgres} port
  port=$(read_port) || die "no cluster in $DIR (run: deploy/pg.sh init $DIR)"
  printf 'postgresql://postgres@127.0.0.1:%s/%s\n' "$port" "$(urlencode "$db")"
}

cmd_createdb() {
  local name=$1 port out
  [[ -n $name ]] || die "database name must not be empty"
  port=$(read_port) || die "no cluster in $DIR (run: deploy/pg.sh start $DIR)"
  is_running || die "server in $DIR is not running (run: deploy/pg.sh start $DIR)"
  FAIL_LOG=$LOGFILE
  local -a psql=(client psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
  # psql variables are not interpolated in -c, so feed the SQL on stdin.
  # shellcheck disable=SC2016 # :'name' / :"name" are psql variables
  if out=$(printf '%s\n' \
        "SELECT 'exists' FROM pg_database WHERE datname = :'name';" |
        "${psql[@]}" -At -v name="$name" 2>&1) && [[ $out == exists ]]; then
    note "database $name already exists"
    return 0
  fi
  # shellcheck disable=SC2016
  if printf '%s\n' 'CREATE DATABASE :"name";' | "${psql[@]}" -v name="$name"; then
    note "database $name created"
    return 0
  fi
  # Lost a race with a concurrent createdb?
  # shellcheck disable=SC2016
  out=$(printf '%s\n' "SELECT 'exists' FROM pg_database WHERE datname = :'name';" |
        "${psql[@]}" -At -v name="$name" 2>/dev/null || true)
  [[ $out == exists ]] && { note "database $name already exists"; return 0; }
  die "could not create database $name"
}

# ------------------------------------------------------------------- main
(( $# >= 1 )) || { usage >&2; exit 2; }
cmd=$1; shift
case $cmd in
  -h|--help|help) usage; exit 0 ;;
  init|start|stop|restart|status|url|createdb) ;;
  *) printf 'pg: unknown command "%s"\n\n' "$cmd" >&2; usage >&2; exit 2 ;;
esac
(( $# >= 1 )) || die "$cmd: missing DIR (see deploy/pg.sh --help)"
[[ -n $1 ]] || die "DIR must not be empty"
DIR=$(realpath -m -- "$1") || die "cannot resolve $1"
shift
[[ $DIR != / ]] || die "refusing to use / as DIR"
readonly DIR DATA="$DIR/data" LOGDIR="$DIR/log" LOGFILE="$DIR/log/postgresql.log" PORTFILE="$DIR/port"

check_args() { # check_args MIN MAX "$@"
  local min=$1 max=$2; shift 2
  (( $# >= min && $# <= max )) || die "$cmd: wrong number of arguments (see deploy/pg.sh --help)"
}

case $cmd in
  url)
    check_args 0 1 "$@"
    cmd_url "$@"
    exit 0
    ;;
  status)
    check_args 0 0 "$@"
    find_bindir
    cmd_status
    exit $?
    ;;
esac

find_bindir
case $cmd in
  init)     check_args 0 1 "$@" ;;
  start)    check_args 0 0 "$@" ;;
  stop)     check_args 0 1 "$@" ;;
  restart)  check_args 0 1 "$@" ;;
  createdb) check_args 1 1 "$@" ;;
esac

if [[ $cmd == init || $cmd == start || $cmd == restart ]]; then
  # Refuse to take over an unrelated non-empty directory.
  if [[ -d $DIR && ! -e $DATA && ! -e $PORTFILE ]] \
     && [[ -n $(find "$DIR" -mindepth 1 -maxdepth 1 ! -name .pg.lock -print -quit) ]]; then
    die "$DIR exists, is not empty and does not look like a pg.sh cluster; choose another DIR"
  fi
  mkdir -p -- "$DIR" || die "cannot create $DIR"
fi
if [[ -d $DIR ]]; then
  pick_run_user
  take_lock
elif [[ $cmd == stop ]]; then
  note "no cluster in $DIR; nothing to stop"
  exit 0
else
  die "no cluster in $DIR (run: deploy/pg.sh start $DIR)"
fi

case $cmd in
  init)     cmd_init "$@" ;;
  start)    cmd_start ;;
  stop)     cmd_stop "$@" ;;
  restart)  cmd_stop "$@"; cmd_start ;;
  createdb) cmd_createdb "$1" ;;
esac
