#!/usr/bin/env bash
# `compose up -d` to all-healthy, and `down`, of a 5-service project on a local busybox image:
# builder compose side by side with Debian's docker-compose 1.29.2 + dockerd (one of its own:
# its own data root and socket, in a network namespace of its own), on the same compose file,
# in one run. Prints a markdown table of the medians and the ratios.
#
# The 5 services each serve HTTP with busybox httpd and have a health check; two wait for
# another's health (`depends_on: condition: service_healthy`), so the time includes health
# checking as each tool does it. Needs root, busybox-static, docker.io, docker-compose.
#
#   benches/compose.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-5}
cd "$(dirname "$0")/.."
. benches/lib.sh compose
bench_builder
bench_netns
in_ns() { ip netns exec "$NS" "$@"; }

# The same busybox root for both.
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS/www"
echo ok > "$ROOTFS/www/index.html"
busybox_rootfs "$ROOTFS"

# Five services on the project network; each listens on its own port.
PROJECT=$WORK/bench
mkdir -p "$PROJECT"
{
  echo 'version: "2.4"'
  echo 'services:'
  for i in 1 2 3 4 5; do
    cat <<EOF
  s$i:
    image: bench-busybox:1
    init: true
    command: httpd -f -p 80$i -h /www
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:80$i/"]
      interval: 200ms
      timeout: 2s
      retries: 50
EOF
    case $i in
      3) printf '    depends_on:\n      s1:\n        condition: service_healthy\n' ;;
      5) printf '    depends_on:\n      s3:\n        condition: service_healthy\n' ;;
    esac
  done
} > "$PROJECT/docker-compose.yml"

STATE=$WORK/builder
"$BUILDER" --root "$STATE" import "$WORK/rootfs.tar" bench-busybox:1 > /dev/null

start_dockerd
docker import "$WORK/rootfs.tar" bench-busybox:1 > /dev/null

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

# docker-compose 1.29 has no `up --wait`: poll every container's health, as a user's script would.
docker_healthy() {
  while :; do
    local all=1
    for id in $(docker-compose -p bench ps -q); do
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] || all=0
    done
    [ "$all" = 1 ] && return 0
    sleep 0.05
  done
}

B_UP=(); B_DOWN=(); D_UP=(); D_DOWN=()
cd "$PROJECT"
for r in $(seq 1 "$ROUNDS"); do
  t0=$(now); in_ns "$BUILDER" --root "$STATE" compose -p bench up -d --wait > /dev/null 2>&1; t1=$(now)
  in_ns "$BUILDER" --root "$STATE" compose -p bench down -t 2 > /dev/null 2>&1; t2=$(now)
  B_UP+=("$(elapsed "$t0" "$t1")"); B_DOWN+=("$(elapsed "$t1" "$t2")")

  t0=$(now); in_ns docker-compose -p bench up -d > /dev/null 2>&1; docker_healthy; t1=$(now)
  in_ns docker-compose -p bench down -t 2 > /dev/null 2>&1; t2=$(now)
  D_UP+=("$(elapsed "$t0" "$t1")"); D_DOWN+=("$(elapsed "$t1" "$t2")")
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
bu=$(median "${B_UP[@]}"); bd=$(median "${B_DOWN[@]}"); du=$(median "${D_UP[@]}"); dd=$(median "${D_DOWN[@]}")
echo "| 5 services ($ROUNDS rounds, median) | builder compose | docker-compose 1.29.2 + dockerd | ratio |"
echo "|---|---|---|---|"
printf '| up -d to all healthy | %.2f s | %.2f s | %.2fx |\n' "$bu" "$du" "$(echo "$bu / $du" | bc -l)"
printf '| down | %.2f s | %.2f s | %.2fx |\n' "$bd" "$dd" "$(echo "$bd / $dd" | bc -l)"
