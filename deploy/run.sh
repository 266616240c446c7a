#!/usr/bin/env bash
# deploy/run.sh: the local demo behind `make run`.
#
#   deploy/run.sh          start PostgreSQL under ./var/pg, migrate, create a
#                          demo agent, scopes and grant (first time only),
#                          start the broker in the background, print a curl
#   deploy/run.sh stop     stop the broker and PostgreSQL
#   deploy/run.sh status
#
# Environment: COUNTERSIGN_LISTEN (default 127.0.0.1:8080), PG_PORT
# (default 5433), COUNTERSIGN_VAR (default ./var), CS_BIN (default
# build/countersign). Everything lives in ./var/: delete it to start afresh.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
var=${COUNTERSIGN_VAR:-$root/var}	# tests use a folder of their own
bin=${CS_BIN:-$root/build/countersign}
listen=${COUNTERSIGN_LISTEN:-127.0.0.1:8080}
pg_port=${PG_PORT:-5433}
aud="https://forum.example"

broker_pid() {
	[ -f "$var/broker.pid" ] && kill -0 "$(cat "$var/broker.pid")" 2>/dev/null &&
	    cat "$var/broker.pid"
}

stop() {
	local pid
	if pid=$(broker_pid); then
		kill "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		echo "broker stopped"
	fi
	rm -f "$var/broker.pid"
	if [ -d "$var/pg" ]; then
		"$root/deploy/pg.sh" stop "$var/pg"
	fi
}

case "${1:-start}" in
stop) stop; exit 0 ;;
status)
	if pid=$(broker_pid); then echo "broker running (pid $pid)"; else echo "broker not running"; fi
	"$root/deploy/pg.sh" status "$var/pg" && echo "postgresql running" || echo "postgresql not running"
	exit 0 ;;
start) ;;
*) echo "usage: deploy/run.sh [start|stop|status]" >&2; exit 2 ;;
esac

mkdir -p "$var"
if [ ! -d "$var/pg/data" ]; then
	"$root/deploy/pg.sh" init "$var/pg" "$pg_port"
fi
"$root/deploy/pg.sh" start "$var/pg"
"$root/deploy/pg.sh" createdb "$var/pg" countersign

if [ ! -f "$var/master.key" ]; then
	(umask 077 && openssl rand -base64 32 > "$var/master.key")
	echo "created $var/master.key (keep it: it decrypts the signing keys)"
fi

owner_url=$("$root/deploy/pg.sh" url "$var/pg" countersign)
cat > "$var/countersign.conf" <<CONF
# Written by deploy/run.sh for the local demo; see docs/configuration.md.
# The broker and admin commands connect as countersign_broker, which cannot
# change the audit log; migrations run as the database owner.
database_url = ${owner_url/postgres@/countersign_broker@}
migrate_database_url = $owner_url
master_key_file = $var/master.key
listen = $listen
CONF
cs() { "$bin" --config "$var/countersign.conf" "$@"; }

cs migrate
if [ ! -f "$var/demo-agent.json" ]; then
	cs scope add forum:read --kind read --max-ttl 15m
	# Write tokens are bound to the agent's key (DPoP), as by default.
	cs scope add forum:post --kind write --approver-group forum-mods --max-ttl 5m
	(umask 077 && cs agent add demo-agent --owner demo@example.com --json > "$var/demo-agent.json")
	cs grant add demo-agent forum:read --audience "$aud"
	cs grant add demo-agent forum:post --audience "$aud"
fi

if pid=$(broker_pid); then
	echo "broker already running (pid $pid); restarting it"
	kill "$pid"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
nohup "$bin" --config "$var/countersign.conf" serve >> "$var/broker.log" 2>&1 &
echo $! > "$var/broker.pid"
for _ in $(seq 100); do
	curl -fsS "http://$listen/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
if ! curl -fsS "http://$listen/readyz" >/dev/null 2>&1; then
	echo "the broker did not become ready; last lines of $var/broker.log:" >&2
	tail -n 20 "$var/broker.log" >&2
	exit 1
fi

id=$(sed -E 's/.*"client_id":"([^"]+)".*/\1/' "$var/demo-agent.json")
secret=$(sed -E 's/.*"client_secret":"([^"]+)".*/\1/' "$var/demo-agent.json")
cat <<MSG

Countersign is running on http://$listen (log: var/broker.log, stop: make stop).

Get a read token for the demo agent:

  curl -s -u '$id:$secret' \\
    -d grant_type=client_credentials -d scope=forum:read \\
    -d resource=$aud http://$listen/oauth2/token

Ask for the write scope the same way and see it refused until a human approves:

  curl -s -u '$id:$secret' \\
    -d grant_type=client_credentials -d scope=forum:post \\
    -d resource=$aud http://$listen/oauth2/token

MSG
