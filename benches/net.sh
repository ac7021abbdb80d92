#!/usr/bin/env bash
# Container networking, builder side by side with Docker (Debian's docker.io: a dockerd of its
# own, own data root and socket, with its default bridge and iptables NAT and docker-proxy, in a
# network namespace of the bench's own, where builder runs too). Same image for both: busybox
# plus the host's iperf3 and its libraries, built by builder, `builder save`d and `docker load`ed.
#   (a) `run --rm -p 0:80 IMAGE true`, start to exit;
#   (b) TCP throughput, 1 GiB with iperf3, through a port published on 127.0.0.1 and straight
#       to the container's address;
#   (c) name lookups per second from one container to another on a user-defined network
#       (LOOKUPS busybox `nslookup` runs in a loop, so each lookup includes starting nslookup).
# Prints a markdown table of the medians and the ratios. Needs root, busybox-static, docker.io,
# iperf3. Nothing leaves the namespace.
#
#   benches/net.sh [ROUNDS] [LOOKUPS]        (BUILDER=path/to/builder to skip the release build)
set -euo pipefail
ROUNDS=${1:-10}
LOOKUPS=${2:-300}
cd "$(dirname "$0")/.."
if [ -z "${BUILDER:-}" ]; then
  cargo build --release -q -p cli
  BUILDER=$PWD/target/release/builder
fi
WORK=$(mktemp -d /tmp/bnb.XXXX)  # short: unix socket paths live under it
NS=builder-net-bench-$$
DOCKERD_PID=
STATE=$WORK/b
cleanup() {
  ip netns exec "$NS" "$BUILDER" --root "$STATE" rm -f $(ip netns exec "$NS" "$BUILDER" --root "$STATE" ps -aq 2>/dev/null) > /dev/null 2>&1 || true
  [ -z "$DOCKERD_PID" ] || { DOCKER_HOST=$DOCK docker rm -f $(DOCKER_HOST=$DOCK docker ps -aq) > /dev/null 2>&1 || true; kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; }
  ip netns delete "$NS" 2>/dev/null || true
  grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
in_ns() { ip netns exec "$NS" "$@"; }
B() { in_ns "$BUILDER" --root "$STATE" "$@"; }
DOCK=unix://$WORK/docker.sock
D() { DOCKER_HOST=$DOCK docker "$@"; }

# The image: busybox, and iperf3 with the libraries ldd names.
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,etc,tmp,root,proc,sys,dev}
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOTFS/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\n' > "$ROOTFS/etc/group"
tar -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
CTX=$WORK/ctx
mkdir -p "$CTX/files"
printf 'FROM bench-busybox:1\nCOPY files/ /\nEXPOSE 80\n' > "$CTX/Dockerfile"
for f in /usr/bin/iperf3 $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
  mkdir -p "$CTX/files$(dirname "$f")"
  cp -L "$f" "$CTX/files$f"
done
"$BUILDER" --root "$STATE" import "$WORK/rootfs.tar" bench-busybox:1 > /dev/null
"$BUILDER" --root "$STATE" build -q -t bench-net:1 "$CTX" > /dev/null
"$BUILDER" --root "$STATE" save -o "$WORK/image.tar" bench-net:1

nsenter --net=/run/netns/"$NS" dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" \
  --host "$DOCK" --bip 172.31.250.1/24 > "$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 60); do D info > /dev/null 2>&1 && break; sleep 0.5; done
D load -i "$WORK/image.tar" > /dev/null

now() { date +%s.%N; }
time_of() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); echo "$t1 - $t0" | bc; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# (a) start to exit with a published port. Warm-up first (bridge, table, layers).
B run --rm -p 0:80 bench-net:1 true
in_ns env DOCKER_HOST=$DOCK docker run --rm -p 0:80 bench-net:1 true
B_A=(); D_A=()
for _ in $(seq 1 "$ROUNDS"); do
  B_A+=("$(time_of B run --rm -p 0:80 bench-net:1 true)")
  D_A+=("$(time_of in_ns env DOCKER_HOST=$DOCK docker run --rm -p 0:80 bench-net:1 true)")
done

# (b) 1 GiB, client on the namespace's loopback (the usual `localhost:PORT`) and straight to
# the container. Gbit/s of the receiver, median of ROUNDS/2 (at least 3) transfers.
gbits() { in_ns iperf3 -c "$1" -p "$2" -n 1G -J 2>/dev/null | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'; }
T=$(( ROUNDS / 2 > 3 ? ROUNDS / 2 : 3 ))
B run -d --name iperf -p 127.0.0.1:15201:5201 bench-net:1 iperf3 -s > /dev/null
D run -d --name iperf -p 127.0.0.1:15202:5201 bench-net:1 iperf3 -s > /dev/null
sleep 1
bip=$(B exec iperf ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -d' ' -f2)
dip=$(D inspect --format '{{.NetworkSettings.IPAddress}}' iperf)
B_PUB=(); B_DIR=(); D_PUB=(); D_DIR=()
for _ in $(seq 1 "$T"); do
  B_PUB+=("$(gbits 127.0.0.1 15201)"); B_DIR+=("$(gbits "$bip" 5201)")
  D_PUB+=("$(gbits 127.0.0.1 15202)"); D_DIR+=("$(gbits "$dip" 5201)")
done
B rm -f iperf > /dev/null; D rm -f iperf > /dev/null

# (c) lookups of a container's name from another on a user-defined network.
B network create benchnet > /dev/null
D network create benchnet > /dev/null
B run -d --name target --network benchnet bench-net:1 sleep 600 > /dev/null
B run -d --name asker --network benchnet bench-net:1 sleep 600 > /dev/null
D run -d --name target --network benchnet bench-net:1 sleep 600 > /dev/null
D run -d --name asker --network benchnet bench-net:1 sleep 600 > /dev/null
loop="i=0; while [ \$i -lt $LOOKUPS ]; do nslookup target > /dev/null || exit 1; i=\$((i+1)); done"
B exec asker sh -c "$loop"; D exec asker sh -c "$loop"   # warm-up, and both must resolve
B_C=(); D_C=()
for _ in $(seq 1 3); do
  t=$(time_of B exec asker sh -c "$loop"); B_C+=("$(echo "$LOOKUPS / $t" | bc -l)")
  t=$(time_of D exec asker sh -c "$loop"); D_C+=("$(echo "$LOOKUPS / $t" | bc -l)")
done

ba=$(median "${B_A[@]}"); da=$(median "${D_A[@]}")
bp=$(median "${B_PUB[@]}"); bd=$(median "${B_DIR[@]}"); dp=$(median "${D_PUB[@]}"); dd=$(median "${D_DIR[@]}")
bc_=$(median "${B_C[@]}"); dc=$(median "${D_C[@]}")
echo "| median | builder | docker + dockerd | builder / docker |"
echo "|---|---|---|---|"
printf '| (a) run --rm -p 0:80 IMAGE true (%s runs) | %.3f s | %.3f s | %.2fx |\n' "$ROUNDS" "$ba" "$da" "$(echo "$ba / $da" | bc -l)"
printf '| (b) 1 GiB to 127.0.0.1:PUBLISHED (%s runs) | %s Gbit/s | %s Gbit/s | %.2fx |\n' "$T" "$bp" "$dp" "$(echo "$bp / $dp" | bc -l)"
printf '| (b) 1 GiB straight to the container | %s Gbit/s | %s Gbit/s | %.2fx |\n' "$bd" "$dd" "$(echo "$bd / $dd" | bc -l)"
printf '| (b) published / direct | %.2f | %.2f | |\n' "$(echo "$bp / $bd" | bc -l)" "$(echo "$dp / $dd" | bc -l)"
printf '| (c) name lookups/s, nslookup loop of %s (3 runs) | %.0f | %.0f | %.2fx |\n' "$LOOKUPS" "$bc_" "$dc" "$(echo "$bc_ / $dc" | bc -l)"
