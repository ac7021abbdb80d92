#!/usr/bin/env bash
# Seed 000, "PostgreSQL DB서버 구축하기": Postgres with its data in a mounted directory, a
# database made through `exec -it` and psql, a second container that connects by the name
# `postgres`, and the data still there in a new container on the same directory.
. ../lib.sh
trap 'builder rm -f postgres >/dev/null 2>&1 || true; builder network rm pgnet >/dev/null 2>&1 || true; builder volume rm pgdata >/dev/null 2>&1 || true' EXIT

# The image is Debian's postgresql 15, built as `postgres` (the tutorial's postgres:14.1); the
# data is in the named volume pgdata (the tutorial mounts $(pwd)/data/, which works the same).
builder run --name postgres -d \
  -p 5432:5432 \
  -e POSTGRES_PASSWORD=password \
  -v pgdata:/var/lib/postgresql/data/ postgres
wait_until builder exec postgres pg_isready -U postgres

builder ps

# What the reader types in the container's shell and in psql (psql's pager off: the list is
# wider than the 80 columns this typed-in terminal has)
builder exec -it postgres /bin/sh <<'TYPED'
psql -U postgres
\pset pager off
CREATE DATABASE hello_docker;
\l
\q
exit
TYPED

builder exec -it postgres psql -U postgres -c "CREATE TABLE visits (who text); INSERT INTO visits VALUES ('builder');"

# A second container reaches the server by the name `postgres`, on a network they share
# (the network's name server answers for the container's name).
builder network create pgnet
builder network connect pgnet postgres
builder run --rm --network pgnet -e PGPASSWORD=password postgres \
  psql -h postgres -U postgres -c 'SELECT who FROM visits'

builder stop postgres
builder rm postgres
builder network rm pgnet

# A new container on the same volume still has the table.
builder run --name postgres -d \
  -p 5432:5432 \
  -e POSTGRES_PASSWORD=password \
  -v pgdata:/var/lib/postgresql/data/ postgres
wait_until builder exec postgres pg_isready -U postgres
builder exec postgres psql -U postgres -c 'SELECT who FROM visits'
builder stop postgres
builder rm postgres
builder volume ls
builder volume rm pgdata
