#!/usr/bin/env bash
# Seed 000, "도커 이미지 빌드하기" and "도커 허브에 배포하기": the node-app image whose
# `npm install` installs express from the npm registry, run, inspected, pushed to a registry
# that asks for a password, removed, and run again from the registry.
# package.json is what the tutorial's `npm init && npm install express` writes.
. ../lib.sh
registry_pid=
trap 'builder rm -f $(builder ps -a -q) >/dev/null 2>&1 || true; [ -z "$registry_pid" ] || kill $registry_pid' EXIT

builder build -t node-app ./

builder images

builder run -p 3000:8080 node-app &
app=$!
wait_for_http localhost:3000
curl -s localhost:3000; echo

builder inspect node-app | grep -A2 '"Layers"'
builder stop $(builder ps -q)
wait $app || true  # 137: node, as PID 1, ignores SIGTERM; stop kills it after 10 s

# Docker Hub is out of reach here: Debian's docker-registry on localhost:5000 stands in for it,
# with a user `stories` (password `password`) in an htpasswd file.
htpasswd -Bbn stories password > htpasswd 2>/dev/null
cat > registry.yml <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $(pwd)/registry}}
http: {addr: "127.0.0.1:5000"}
auth: {htpasswd: {realm: stories, path: $(pwd)/htpasswd}}
YAML
docker-registry serve registry.yml > registry.log 2>&1 &
registry_pid=$!
wait_for_http localhost:5000/v2/

builder tag node-app localhost:5000/stories/node-app
builder login localhost:5000 <<'TYPED'
stories
password
TYPED
builder push localhost:5000/stories/node-app

builder rmi localhost:5000/stories/node-app
builder run -p 3000:8080 localhost:5000/stories/node-app &
app=$!
wait_for_http localhost:3000
curl -s localhost:3000; echo
builder stop $(builder ps -q)
wait $app || true  # 137: node, as PID 1, ignores SIGTERM; stop kills it after 10 s

builder logout localhost:5000
builder rm $(builder ps -a -q)
