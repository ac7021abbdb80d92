#!/usr/bin/env bash
# Seed 000, "도커 컴포즈": WordPress and its MySQL database from docker-compose.yml, the PHP app
# reaching the database by its service name, WordPress's installer on the page.
. ../lib.sh
trap 'builder rm -f mysql-db wordpress >/dev/null 2>&1 || true' EXIT

# The tutorial: builder compose up (docker-compose.yml beside this script), then localhost:3000.
# Until compose, -p and user networks exist, the two services run as the compose file says
# with plain `run`, on the host's network: the name mysql-db is an /etc/hosts line, and
# Apache answers on its own port 80.
builder run -d --name mysql-db --network host \
  -v $(pwd)/mysql:/var/lib/mysql \
  -e MYSQL_ROOT_PASSWORD=wordpress -e MYSQL_DATABASE=wordpress -e MYSQL_USER=wordpress -e MYSQL_PASSWORD=wordpress \
  mariadb
wait_until builder exec mysql-db mariadb -uwordpress -pwordpress -h 127.0.0.1 wordpress -e 'select 1'
builder run -d --name wordpress --network host --add-host mysql-db:127.0.0.1 \
  -v $(pwd)/wordpress-html:/var/www/html \
  -e WORDPRESS_DB_HOST=mysql-db:3306 -e WORDPRESS_DB_USER=wordpress -e WORDPRESS_DB_PASSWORD=wordpress \
  wordpress
wait_for_http localhost:80/wp-admin/install.php

curl -s localhost:80/wp-admin/install.php | grep -E '<title>|<h1>|Information needed'

builder stop wordpress mysql-db
builder rm wordpress mysql-db
