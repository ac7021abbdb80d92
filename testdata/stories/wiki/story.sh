#!/usr/bin/env bash
# Seed 002, "Dockerfile로 모니위키 이미지 만들기": build nacyot/moniwiki, run it in the background,
# and see the wiki's page rendered by PHP.
. ../lib.sh
trap 'builder rm -f $(builder ps -a -q) >/dev/null 2>&1 || true' EXIT

builder build -t nacyot/moniwiki .

builder run -d -p 9999:80 nacyot/moniwiki
wait_for_http http://127.0.0.1:9999/moniwiki/
curl -s http://127.0.0.1:9999/moniwiki/

builder stop $(builder ps -q)
builder rm $(builder ps -a -q)
