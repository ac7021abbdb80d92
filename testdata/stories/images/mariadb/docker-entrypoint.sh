#!/bin/sh
# The official image's first start, in short: an empty data dir gets system tables, the root
# password, and the database and user the environment names; then the server runs in the
# foreground on every address.
set -eu
root_pw=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
database=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
user=${MARIADB_USER:-${MYSQL_USER:-}}
password=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
if [ "$1" = mariadbd ] && [ ! -d /var/lib/mysql/mysql ]; then
	if [ -z "$root_pw" ]; then
		echo 'error: database is uninitialized and MYSQL_ROOT_PASSWORD is not set' >&2
		exit 1
	fi
	chown mysql:mysql /var/lib/mysql
	mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
	mariadbd --user=mysql --skip-networking --socket=/run/mysqld/init.sock &
	pid=$!
	i=0
	until mariadb --socket=/run/mysqld/init.sock -uroot -e 'select 1' >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 60 ] || { echo 'error: the server did not start' >&2; exit 1; }
		sleep 1
	done
	{
		echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_pw';"
		echo "CREATE USER 'root'@'%' IDENTIFIED BY '$root_pw'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
		[ -z "$database" ] || echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"
		if [ -n "$user" ]; then
			echo "CREATE USER '$user'@'%' IDENTIFIED BY '$password';"
			[ -z "$database" ] || echo "GRANT ALL ON \`$database\`.* TO '$user'@'%';"
		fi
	} | mariadb --socket=/run/mysqld/init.sock -uroot
	kill "$pid"
	wait "$pid" || true
	echo 'MariaDB init process done. Ready for start up.'
fi
if [ "$1" = mariadbd ]; then set -- "$@" --user=mysql --bind-address=0.0.0.0; fi
exec "$@"
