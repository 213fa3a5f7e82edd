#!/usr/bin/env bash
# compose.yaml's secrets, as files in a git-ignored folder (default infra/compose/secrets):
# random passwords for PostgreSQL, Redis and Grafana, the intakes' API key (api_keys: one
# key a line, CHOREO_API_KEYS_FILE; add a line to rotate), and the pgpass file libpq reads
# PostgreSQL's through. A file that exists is kept, so running it
# again changes nothing; delete the folder (and the postgres-data volume, which keeps the
# old password) to start over. Usage: infra/compose/make-secrets.sh [FOLDER]
#
# Compose mounts a secret file as it is on the host, owner and mode included. So the folder
# is the owner's alone (0700) and the files are readable inside the containers (0644):
# Connect and Grafana read theirs as users of their own. pgpass stays 0600, as libpq
# ignores one that others may read; the choreo image runs as root to read it.
set -euo pipefail
folder="${1:-$(dirname "$0")/secrets}"
mkdir -p "$folder"
chmod 700 "$folder"
umask 022

password() {  # 32 letters and digits: nothing a URL, pgpass or redis.conf must escape
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true
}

for name in postgres_password redis_password grafana_password api_keys; do
    [ -s "$folder/$name" ] || password >"$folder/$name"
done
[ -s "$folder/pgpass" ] ||
    (umask 077 && printf 'postgres:5432:*:postgres:%s\n' "$(cat "$folder/postgres_password")" \
        >"$folder/pgpass")
echo "secrets in $folder"
