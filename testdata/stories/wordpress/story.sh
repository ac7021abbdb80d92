#!/usr/bin/env bash
# Seed 000, "도커 컴포즈": WordPress and its MySQL database from docker-compose.yml, the PHP app
# reaching the database by its service name, WordPress's installer on the page.
. ../lib.sh
trap 'builder compose down -v >/dev/null 2>&1 || true' EXIT

builder compose up -d
# The reader reloads until MySQL has started and WordPress reaches it by the name mysql-db.
wait_for_text localhost:3000/wp-admin/install.php 'Information needed'

curl -s localhost:3000/wp-admin/install.php | grep -E '<title>|<h1>|Information needed'

builder compose down -v
