#!/usr/bin/env bash
# Seed 002, "도커 컨테이너의 생명 주기" and "버전 관리 시스템과 도커": a shell in a container, the
# container's life (ps -a, restart), git installed in it, diff, commit to a new image, a
# container of that image, and both removed. On debian:bookworm instead of ubuntu:12.04; what
# the reader types at the container's prompt is in the TYPED blocks.
. ../lib.sh
trap 'builder rm -f $(builder ps -a -q) >/dev/null 2>&1 || true; builder rmi ubuntu:git >/dev/null 2>&1 || true' EXIT

builder run -i -t debian:bookworm /bin/bash <<'TYPED'
exit
TYPED
builder ps -a
id=$(builder ps -a -q)
builder restart ${id:0:7}
builder ps

# The tutorial attaches to the restarted shell and installs git there. All is typed ahead, so
# apt-get gets /dev/null as its input and does not eat the next lines. The story's network
# namespace has no way out but the test's package proxy (on port 3142 of the bridge's gateway):
# the one line the tutorial does not type says so to apt.
proxy="http://$(builder network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}'):3142"
builder attach ${id:0:7} <<TYPED
export http_proxy=$proxy
apt-get -qq update && apt-get install -y -qq git < /dev/null > /dev/null
git --version
exit
TYPED

builder diff ${id:0:6} | grep -E '^A /usr/bin/git$|^C /var/log$'
builder commit ${id:0:6} ubuntu:git
builder images | grep git

builder run -i -t ubuntu:git /bin/bash <<'TYPED'
git --version
exit
TYPED

builder stop -t 1 $id
builder ps -a
builder rm $(builder ps -a -q)
builder rmi ubuntu:git
