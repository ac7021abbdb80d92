#!/bin/sh
# What the official postgres image's entrypoint does, in short: as root, own $PGDATA and start
# again as postgres; in an empty $PGDATA make a cluster whose superuser `postgres` has
# POSTGRES_PASSWORD, reachable from every address; then run the server in the foreground.
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo 'Error: Database is uninitialized and superuser password is not specified.' >&2
		echo '       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.' >&2
		echo '       For example, "-e POSTGRES_PASSWORD=password" on "builder run".' >&2
		exit 1
	fi
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	# As the official image: initdb says what it does, in the container's logs.
	initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256
	rm -f "$pwfile"
	echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
	echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
	echo 'PostgreSQL init process complete; ready for start up.'
fi
exec "$@"
