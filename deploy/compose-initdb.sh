#!/bin/sh
# Run once by the postgres image when it initialises an empty data
# directory (deploy/compose.yaml): creates the broker's login role with its
# password. `countersign migrate` creates the role only if it is missing,
# and grants it exactly what it needs.
set -eu
pw=$(cat /run/secrets/db_broker_password)
psql -v ON_ERROR_STOP=1 -v pw="$pw" --username "$POSTGRES_USER" \
    --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE countersign_broker LOGIN PASSWORD :'pw';
SQL
