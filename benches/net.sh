#!/usr/bin/env bash
# Container networking, builder side by side with Docker (Debian's docker.io: a dockerd of its
# own, own data root and socket, with its default bridge and iptables NAT and docker-proxy) and,
# when it is installed, Podman (Debian's podman with netavark and aardvark-dns, own root, run
# root and network config), all in a network namespace of the bench's own, where builder runs
# too. Same image for all: busybox plus the host's iperf3 and its libraries, built by builder,
# `builder save`d and `docker load`ed / `podman load`ed.
#   (a) `run --rm -p 0:80 IMAGE true`, start to exit (podman: `-p 80`, it refuses host port 0);
#   (b) TCP throughput, 1 GiB with iperf3, through a port published on 127.0.0.1 and straight
#       to the container's address;
#   (c) name lookups of a container from another on a user-defined network: a loop of LOOKUPS
#       busybox `nslookup` runs timed inside the container (each lookup includes starting
#       nslookup, which asks for A and AAAA), and dnsperf's queries per second (A and AAAA of
#       the name, 20 in flight, 5 s) from the asking container's namespace to its name server.
# Prints a markdown table of the medians and the ratios. Needs root, busybox-static, docker.io,
# iperf3, dnsperf (podman, netavark, aardvark-dns for the third column). Nothing leaves the
# namespace.
#
#   benches/net.sh [ROUNDS] [LOOKUPS]        (BUILDER=path/to/builder to skip the release build)
set -euo pipefail
ROUNDS=${1:-10}
LOOKUPS=${2:-300}
# Debian's client (another docker on PATH may come first).
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
PODMAN=$(command -v podman || true)
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
  [ -z "$DOCKERD_PID" ] || { DOCKER_HOST=$DOCK $DOCKER rm -f $(DOCKER_HOST=$DOCK $DOCKER ps -aq) > /dev/null 2>&1 || true; kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; }
  [ -z "$PODMAN" ] || { P rm -af -t 0 > /dev/null 2>&1 || true; P network rm -f benchnet > /dev/null 2>&1 || true; }
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
D() { DOCKER_HOST=$DOCK $DOCKER "$@"; }
# podman: netavark and aardvark-dns with a config dir of the bench's own; the machine's root has
# no CAP_SYS_RESOURCE, so podman's default ulimits (nofile 1048576) cannot be set: ask for low ones.
P() { nsenter --net=/run/netns/"$NS" env CONTAINERS_CONF="$WORK/containers.conf" "$PODMAN" --root "$WORK/podman" --runroot "$WORK/podman-run" --storage-driver overlay "$@"; }
PU=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

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
if [ -n "$PODMAN" ]; then
  mkdir -p "$WORK/podman-net" "$WORK/podman-tmp"
  printf '[network]\nnetwork_backend = "netavark"\nnetwork_config_dir = "%s"\n[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\ntmp_dir = "%s"\n' "$WORK/podman-net" "$WORK/podman-tmp" > "$WORK/containers.conf"
  P load -i "$WORK/image.tar" > /dev/null
fi

now() { date +%s.%N; }
time_of() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); echo "$t1 - $t0" | bc; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# (a) start to exit with a published port. Warm-up first (bridge, table, layers).
B run --rm -p 0:80 bench-net:1 true
in_ns env DOCKER_HOST=$DOCK $DOCKER run --rm -p 0:80 bench-net:1 true
[ -z "$PODMAN" ] || P run --rm "${PU[@]}" -p 80 bench-net:1 true
B_A=(); D_A=(); P_A=()
for _ in $(seq 1 "$ROUNDS"); do
  B_A+=("$(time_of B run --rm -p 0:80 bench-net:1 true)")
  D_A+=("$(time_of in_ns env DOCKER_HOST=$DOCK $DOCKER run --rm -p 0:80 bench-net:1 true)")
  [ -z "$PODMAN" ] || P_A+=("$(time_of P run --rm "${PU[@]}" -p 80 bench-net:1 true)")
done

# (b) 1 GiB, client on the namespace's loopback (the usual `localhost:PORT`) and straight to
# the container. Gbit/s of the receiver, median of ROUNDS/2 (at least 3) transfers.
gbits() { in_ns iperf3 -c "$1" -p "$2" -n 1G -J 2>/dev/null | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'; }
T=$(( ROUNDS / 2 > 3 ? ROUNDS / 2 : 3 ))
B run -d --name iperf -p 127.0.0.1:15201:5201 bench-net:1 iperf3 -s > /dev/null
D run -d --name iperf -p 127.0.0.1:15202:5201 bench-net:1 iperf3 -s > /dev/null
[ -z "$PODMAN" ] || P run -d "${PU[@]}" --name iperf -p 127.0.0.1:15203:5201 bench-net:1 iperf3 -s > /dev/null
sleep 1
bip=$(B exec iperf ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*' | cut -d' ' -f2)
dip=$(D inspect --format '{{.NetworkSettings.IPAddress}}' iperf)
[ -z "$PODMAN" ] || pip=$(P inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' iperf)
B_PUB=(); B_DIR=(); D_PUB=(); D_DIR=(); P_PUB=(); P_DIR=()
for _ in $(seq 1 "$T"); do
  B_PUB+=("$(gbits 127.0.0.1 15201)"); B_DIR+=("$(gbits "$bip" 5201)")
  D_PUB+=("$(gbits 127.0.0.1 15202)"); D_DIR+=("$(gbits "$dip" 5201)")
  [ -z "$PODMAN" ] || { P_PUB+=("$(gbits 127.0.0.1 15203)"); P_DIR+=("$(gbits "$pip" 5201)"); }
done
B rm -f iperf > /dev/null; D rm -f iperf > /dev/null; [ -z "$PODMAN" ] || P rm -f -t 0 iperf > /dev/null

# (c) lookups of a container's name from another on a user-defined network.
B network create benchnet > /dev/null
D network create benchnet > /dev/null
B run -d --name target --network benchnet bench-net:1 sleep 600 > /dev/null
B run -d --name asker --network benchnet bench-net:1 sleep 600 > /dev/null
D run -d --name target --network benchnet bench-net:1 sleep 600 > /dev/null
D run -d --name asker --network benchnet bench-net:1 sleep 600 > /dev/null
if [ -n "$PODMAN" ]; then
  P network create benchnet > /dev/null
  P run -d "${PU[@]}" --name target --network benchnet bench-net:1 sleep 600 > /dev/null
  P run -d "${PU[@]}" --name asker --network benchnet bench-net:1 sleep 600 > /dev/null
fi
# Timed inside the container (busybox `time`: "real 0m 1.23s"), so `exec` itself is not counted.
loop="i=0; while [ \$i -lt $LOOKUPS ]; do nslookup target > /dev/null || exit 1; i=\$((i+1)); done"
inside() { local l=${LOOP:-$loop}; "$@" sh -c "time sh -c '$l'" 2>&1 >/dev/null | awk '/^real/ {sub("s", "", $3); split($2, m, "m"); print m[1] * 60 + $3}'; }
# The same loop starting `true` instead: what starting a process in the container costs.
spawn="i=0; while [ \$i -lt $LOOKUPS ]; do /bin/true > /dev/null || exit 1; i=\$((i+1)); done"
printf 'target A\ntarget AAAA\n' > "$WORK/queries"
qps() {  # $1: the tool's function; the name server from the asker's resolv.conf
  local pid server
  pid=$("$1" inspect --format '{{.State.Pid}}' asker)
  server=$("$1" exec asker cat /etc/resolv.conf | awk '/^nameserver/ {print $2; exit}')
  nsenter -t "$pid" -n dnsperf -s "$server" -d "$WORK/queries" -l 5 -q 20 2>/dev/null | awk '/Queries per second/ {print $4}'
}
TOOLS=(B D); [ -z "$PODMAN" ] || TOOLS+=(P)
for t in "${TOOLS[@]}"; do "$t" exec asker sh -c "$loop"; done   # warm-up, and all must resolve
B_C=(); D_C=(); P_C=(); B_Q=(); D_Q=(); P_Q=(); B_S=(); D_S=(); P_S=()
for _ in $(seq 1 3); do
  for t in "${TOOLS[@]}"; do
    s=$(inside "$t" exec asker)
    eval "${t}_C+=(\"\$(echo \"$LOOKUPS / $s\" | bc -l)\")"
    s=$(LOOP=$spawn inside "$t" exec asker)
    eval "${t}_S+=(\"\$(echo \"$LOOKUPS / $s\" | bc -l)\")"
    if command -v dnsperf > /dev/null; then q=$(qps "$t"); eval "${t}_Q+=(\"$q\")"; fi
  done
done

m() { [ $# -gt 0 ] && median "$@" || echo 0; }
ratio() { [ "$(echo "$2 > 0" | bc)" = 1 ] && printf '%.2fx' "$(echo "$1 / $2" | bc -l)" || echo -; }
ba=$(m "${B_A[@]}"); da=$(m "${D_A[@]}"); pa=$(m "${P_A[@]}")
bp=$(m "${B_PUB[@]}"); bd=$(m "${B_DIR[@]}"); dp=$(m "${D_PUB[@]}"); dd=$(m "${D_DIR[@]}"); pp=$(m "${P_PUB[@]}"); pd=$(m "${P_DIR[@]}")
bc_=$(m "${B_C[@]}"); dc=$(m "${D_C[@]}"); pc=$(m "${P_C[@]}")
bs=$(m "${B_S[@]}"); ds=$(m "${D_S[@]}"); ps_=$(m "${P_S[@]}")
bq=$(m "${B_Q[@]}"); dq=$(m "${D_Q[@]}"); pq=$(m "${P_Q[@]}")
echo "| median | builder | docker + dockerd | podman | builder / docker | builder / podman |"
echo "|---|---|---|---|---|---|"
printf '| (a) run --rm -p 0:80 IMAGE true (%s runs) | %.3f s | %.3f s | %.3f s | %s | %s |\n' "$ROUNDS" "$ba" "$da" "$pa" "$(ratio "$ba" "$da")" "$(ratio "$ba" "$pa")"
printf '| (b) 1 GiB to 127.0.0.1:PUBLISHED (%s runs) | %s Gbit/s | %s Gbit/s | %s Gbit/s | %s | %s |\n' "$T" "$bp" "$dp" "$pp" "$(ratio "$bp" "$dp")" "$(ratio "$bp" "$pp")"
printf '| (b) 1 GiB straight to the container | %s Gbit/s | %s Gbit/s | %s Gbit/s | %s | %s |\n' "$bd" "$dd" "$pd" "$(ratio "$bd" "$dd")" "$(ratio "$bd" "$pd")"
printf '| (b) published / direct | %s | %s | %s | | |\n' "$(ratio "$bp" "$bd")" "$(ratio "$dp" "$dd")" "$(ratio "$pp" "$pd")"
printf '| (c) name lookups/s, nslookup loop of %s in the container (3 runs) | %.0f | %.0f | %.0f | %s | %s |\n' "$LOOKUPS" "$bc_" "$dc" "$pc" "$(ratio "$bc_" "$dc")" "$(ratio "$bc_" "$pc")"
printf '| (c) the same loop starting `/bin/true` instead (processes/s) | %.0f | %.0f | %.0f | %s | %s |\n' "$bs" "$ds" "$ps_" "$(ratio "$bs" "$ds")" "$(ratio "$bs" "$ps_")"
printf '| (c) name queries/s, dnsperf 5 s, 20 in flight (3 runs) | %.0f | %.0f | %.0f | %s | %s |\n' "$bq" "$dq" "$pq" "$(ratio "$bq" "$dq")" "$(ratio "$bq" "$pq")"
