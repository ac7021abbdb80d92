#!/usr/bin/env bash
# Seed 001, "도커 컨테이너 배포": the image commands (build, ls, tag, push, search) against a
# local registry standing in for Docker Hub, and the container commands with their own flags
# (run, ls --filter, logs -f, cp, stop, restart, stats, rm, prune), as the chapter types them.
. ../lib.sh
registry_pid=
cleanup() {
	builder container rm -f postgres echo >/dev/null 2>&1 || true
	builder image rm example/echo:1.0 localhost:5000/gngsn/example:latest example/echo:latest >/dev/null 2>&1 || true
	[ -z "$registry_pid" ] || kill $registry_pid
}
trap cleanup EXIT

# Docker Hub is out of reach here: Debian's docker-registry on localhost:5000 stands in for it.
cat > registry.yml <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $(pwd)/registry}}
http: {addr: "127.0.0.1:5000"}
YAML
docker-registry serve registry.yml > registry.log 2>&1 &
registry_pid=$!
wait_for_http localhost:5000/v2/

# Images: build, list, tag (by name and by ID), push.
builder image build -t example/echo:latest .
builder image ls example/echo
builder tag example/echo example/echo:1.0
builder image ls example/echo
builder tag $(builder image ls -q example/echo:1.0) localhost:5000/gngsn/example:latest
builder image push localhost:5000/gngsn/example:latest

# search: a few more repositories in the registry, so that --limit has something to cut.
for repo in mysql bitnami/mysql mysql/mysql-server mysql/mysql-router ubuntu/mysql circleci/mysql; do
	builder image tag example/echo localhost:5000/$repo
	builder image push localhost:5000/$repo > /dev/null
	builder image rm localhost:5000/$repo > /dev/null
done
builder search --limit 5 localhost:5000/mysql

# Containers: two running, listed, one picked by name.
builder container run -d --name postgres -e POSTGRES_PASSWORD=password postgres > /dev/null
builder container run -t -d --name echo example/echo:latest > /dev/null
builder container ls --filter "name=postgres"
wait_until builder container exec postgres pg_isready -U postgres

# `logs -f` follows until the reader presses Ctrl-C: here an interrupt after a few seconds.
timeout -s INT 5 builder container logs -f $(builder container ls --filter "name=postgres" -q) || true

# A file out of a running container, for a look on the host.
builder container cp echo:/etc/os-release ./os-release
grep PRETTY_NAME os-release

builder container stop echo
builder container ls --filter "status=exited"
builder container restart echo
builder container ls --filter "name=echo"

# `stats` refreshes until Ctrl-C; --no-stream prints one reading.
builder container stats --no-stream

builder container stop echo
builder container rm $(builder container ls -a --filter "name=echo" -q)
builder container stop postgres
builder container prune <<'TYPED'
y
TYPED
builder container ls -a
