#!/usr/bin/env bash
# Differential check against Debian's docker-compose 1.29.2 + dockerd: brings every project in
# testdata/compose/differential/ up with both (`builder compose --compatibility`, so the
# container names are 1.29's PROJECT_SERVICE_N), then compares, container by container:
#   - the set of containers and Compose's labels (project, service, container-number, oneoff)
#     from `docker inspect` and builder's project state;
#   - what the process sees, asked inside each container with `exec`: uid/gid, working
#     directory, environment, PID 1's command line, and each mount of the file (ro/rw);
#   - the published ports from `inspect` (NetworkSettings.Ports: container port, host address
#     and host port; a random host port, where the file gives none, is shown as `*`; dockerd's
#     IPv6 twin bindings on `::` are left out, builder has no IPv6);
#   - the networks from `inspect` (NetworkSettings.Networks: each network's name, and whether
#     the service's name and the file's aliases are among its aliases there);
# Prints one line per project; exits 1 on a difference (the diff is printed).
#
# dockerd is one of the script's own (its own data root and socket), in a network namespace
# the script makes; builder's containers run in another one. Nothing is reached outside them.
#
#   testdata/compose/differential.sh [PROJECT…]      (needs root, docker.io, docker-compose, jq)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILDER=${BUILDER:-$ROOT/target/debug/builder}
WORK=$(mktemp -d /tmp/compose-differential.XXXXXX)
NS_D=compose-diff-d-$$
NS_B=compose-diff-b-$$
DOCKERD_PID=
cleanup() {
  [ -z "$DOCKERD_PID" ] || { kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; }
  ip netns delete "$NS_D" 2>/dev/null || true
  ip netns delete "$NS_B" 2>/dev/null || true
  grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
for ns in "$NS_D" "$NS_B"; do ip netns add "$ns"; ip netns exec "$ns" ip link set lo up; done

ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,etc,tmp,root,proc,sys,dev}
cp /bin/busybox "$ROOTFS/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOTFS/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOTFS/etc/group"
tar -C "$ROOTFS" -cf "$WORK/rootfs.tar" .

STATE=$WORK/builder
"$BUILDER" --root "$STATE" import "$WORK/rootfs.tar" diff-busybox:1 > /dev/null
export DOCKER_HOST=unix://$WORK/docker.sock
nsenter --net=/run/netns/"$NS_D" dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" \
  --host "$DOCKER_HOST" --iptables=false --ip-masq=false > "$WORK/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 1 60); do docker info > /dev/null 2>&1 && break; sleep 0.5; done
docker import "$WORK/rootfs.tar" diff-busybox:1 > /dev/null

# What a process sees: the mount points of the file are given as arguments.
PROBE='echo "uid=$(id -u) gid=$(id -g) cwd=$(pwd)"
env | grep -v -E "^(HOSTNAME|HOME|PWD|SHLVL|_|PATH|TERM)=" | sort
echo "pid1=$(tr "\0" " " < /proc/1/cmdline)"
for d in "$@"; do echo "mount $d $(awk -v d="$d" "\$5 == d { split(\$6, o, \",\"); print o[1] }" /proc/self/mountinfo | tail -1)"; done'

# The container paths of a service's volumes (from the resolved file, the same for both).
targets() { jq -r --arg s "$2" '.services[$s].volumes // [] | .[].target' "$1"; }

# Ports and networks of one container, from its `inspect` JSON on stdin (Docker's shape on both
# sides). CONFIG_JSON SERVICE
ports_networks() {
  jq -r --slurpfile cfg "$1" --arg s "$2" '
    ($cfg[0].services[$s]) as $svc
    | .[0].NetworkSettings as $n
    | ([$n.Ports // {} | to_entries[] | .key as $k | (.value // [])[] | select(.HostIp != "::")
        | ($k | split("/")) as $p
        | ([$svc.ports // [] | .[] | select((.target | tostring) == $p[0] and .protocol == $p[1] and .published == null)] | length > 0) as $random
        | "port \($k) -> \(.HostIp):\(if $random then "*" else .HostPort end)"] | sort[]),
      ([$n.Networks // {} | to_entries[] | .key as $net
        | ($net | sub("^" + $cfg[0].name + "_"; "")) as $key
        | ([$s] + ($svc.networks[$key].aliases // [])) as $want
        | "network \($net) aliases \([$want[] | select(. as $a | ($n.Networks[$net].Aliases // []) | index($a) != null)] | join(","))"] | sort[])'
}

observe() { # SIDE PROJECT_DIR CONFIG_JSON
  local side=$1 dir=$2 config=$3 project
  project=$(jq -r .name "$config")
  if [ "$side" = docker ]; then
    for id in $(cd "$dir" && docker-compose ps -q); do
      local svc num name
      svc=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$id")
      num=$(docker inspect -f '{{index .Config.Labels "com.docker.compose.container-number"}}' "$id")
      name=$(docker inspect -f '{{.Name}}' "$id" | sed 's#^/##')
      echo "== $name"
      docker inspect "$id" | jq -r '.[0].Config.Labels | to_entries[] | select(.key | test("^com.docker.compose.(project|service|container-number|oneoff)$") or (test("^com.docker.compose") | not)) | "label \(.key)=\(.value)"' | sort
      docker inspect "$id" | ports_networks "$config" "$svc"
      # shellcheck disable=SC2046
      docker exec "$id" sh -c "$PROBE" probe $(targets "$config" "$svc")
      : "$num"
    done
  else
    jq -r '.containers[] | select(.oneoff | not) | "\(.id) \(.service) \(.name)"' "$STATE/compose/$project.json" | sort -k3 | while read -r id svc name; do
      echo "== $name"
      jq -r --arg id "$id" '.containers[] | select(.id == $id) | .labels | to_entries[] | select(.key | test("^com.docker.compose.(project|service|container-number|oneoff)$") or (test("^com.docker.compose") | not)) | "label \(.key)=\(.value)"' "$STATE/compose/$project.json" | sort
      ip netns exec "$NS_B" "$BUILDER" --root "$STATE" inspect "$id" | ports_networks "$config" "$svc"
      # shellcheck disable=SC2046
      ip netns exec "$NS_B" "$BUILDER" --root "$STATE" exec "$id" sh -c "$PROBE" probe $(targets "$config" "$svc")
    done
  fi
}

status=0
cases=("$@")
[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <(ls "$HERE/differential")
for c in "${cases[@]}"; do
  for side in docker builder; do
    mkdir -p "$WORK/$side"
    cp -a "$HERE/differential/$c" "$WORK/$side/$c"
  done
  "$BUILDER" --root "$STATE" compose --project-directory "$WORK/builder/$c" config --format json > "$WORK/$c.config.json"
  (cd "$WORK/docker/$c" && ip netns exec "$NS_D" docker-compose up -d > "$WORK/$c.docker-up.log" 2>&1)
  (cd "$WORK/builder/$c" && ip netns exec "$NS_B" "$BUILDER" --root "$STATE" compose --compatibility up -d > "$WORK/$c.builder-up.log" 2>&1)
  observe docker "$WORK/docker/$c" "$WORK/$c.config.json" | sed "s#$WORK/docker/#PROJECT/#g" > "$WORK/$c.docker.txt"
  observe builder "$WORK/builder/$c" "$WORK/$c.config.json" | sed "s#$WORK/builder/#PROJECT/#g" > "$WORK/$c.builder.txt"
  (cd "$WORK/docker/$c" && ip netns exec "$NS_D" docker-compose down -v -t 1 > /dev/null 2>&1) || true
  (cd "$WORK/builder/$c" && ip netns exec "$NS_B" "$BUILDER" --root "$STATE" compose --compatibility down -v -t 1 > /dev/null 2>&1) || true
  # docker-compose lists containers in its own order: compare the blocks sorted by name.
  for f in "$WORK/$c.docker.txt" "$WORK/$c.builder.txt"; do
    awk '/^== /{n=$2} {print n "\t" NR "\t" $0}' "$f" | sort -k1,1 -k2,2n | cut -f3- > "$f.sorted"
  done
  if diff -u "$WORK/$c.docker.txt.sorted" "$WORK/$c.builder.txt.sorted" > "$WORK/$c.diff"; then
    echo "ok    $c ($(grep -c '^== ' "$WORK/$c.builder.txt") containers)"
  else
    echo "DIFF  $c (- docker-compose, + builder compose)"
    cat "$WORK/$c.diff"
    status=1
  fi
done
exit $status
