#!/usr/bin/env bash
# A fresh farm member that imports another's cache: builder's `--cache-to/--cache-from` through a
# registry side by side with BuildKit's inline cache (Debian's docker.io: `docker build
# --build-arg BUILDKIT_INLINE_CACHE=1` and a push on a first dockerd, then `--cache-from REF` on a
# second dockerd with an empty data root), for the multistage (200 files) and runs40 scenarios of
# benches/build_compare.sh. Prints a table of medians (seconds) and the three targets.
#
#   benches/cache_farm.sh [--runs N] [--scenarios multistage,runs40]
#
# Needs root, docker-registry, and for BuildKit dockerd + Debian's docker client (/usr/bin/docker;
# not installed by .ci/run: `apt-get install docker.io` for the bench). Everything runs in a
# network namespace of its own (registry, dockerd, builder on its loopback). Base images come
# from a local busybox tarball (`builder import`, `docker load`), never from a hub.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
SCENARIOS="multistage runs40"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --scenarios) SCENARIOS="${2//,/ }"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

. benches/lib.sh cache-farm
bench_builder
bench_netns
DOCKER=/usr/bin/docker
IN=(ip netns exec "$NS")
HAVE_DOCKER=1
[ -x "$DOCKER" ] && command -v dockerd > /dev/null || { HAVE_DOCKER=0; echo "no dockerd / $DOCKER: BuildKit column left out" >&2; }

busybox_rootfs "$WORK/rootfs" usr/bin
REG_PID=
# The registry runs in $NS, which outlives no bench: stop it with the rest.
trap '[ -z "$REG_PID" ] || kill "$REG_PID" 2>/dev/null || true; bench_cleanup' EXIT
start_registry() {
  [ -z "$REG_PID" ] || { kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; }
  REG=127.0.0.1:$((20000 + RANDOM % 20000))
  rm -rf "$WORK/registry"; mkdir -p "$WORK/registry"
  printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: %s}\n' \
    "$WORK/registry" "$REG" > "$WORK/registry.yml"
  "${IN[@]}" /usr/bin/docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do "${IN[@]}" curl -sf "http://$REG/v2/" > /dev/null 2>&1 && return; sleep 0.1; done
  echo "docker-registry did not start" >&2; exit 1
}

# dockerd_up N: a dockerd with its own (empty) data root and exec root number N.
dockerd_up() {
  dockerd_down
  rm -rf "$WORK/docker$1" "$WORK/docker-exec$1"
  local sock=unix://$WORK/docker$1.sock
  nsenter --net=/run/netns/"$NS" dockerd --data-root "$WORK/docker$1" --exec-root "$WORK/docker-exec$1" --pidfile "$WORK/docker$1.pid" \
    --host "$sock" --iptables=false --ip-masq=false --bridge=none > "$WORK/dockerd$1.log" 2>&1 &
  DOCKERD_PID=$!
  export DOCKER_HOST=$sock
  for _ in $(seq 1 120); do "$DOCKER" info > /dev/null 2>&1 && break; sleep 0.5; done
  "$DOCKER" load -q -i "$WORK/busybox-docker.tar" > /dev/null
}
dockerd_down() {
  [ -z "$DOCKERD_PID" ] || { kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; }
  DOCKERD_PID=
  grep -o " $WORK/docker[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}

# ---- scenarios (as in benches/build_compare.sh) ----
bench_context multistage "$WORK/ctx/multistage"
bench_context runs40 "$WORK/ctx/runs40"

"$BUILDER" --root "$WORK/base-root" import "$WORK/rootfs.tar" busybox:bench > /dev/null
"$BUILDER" --root "$WORK/base-root" save -o "$WORK/busybox-docker.tar" busybox:bench > /dev/null

now() { date +%s.%N; }
# timed CMD…: runs it quietly, prints elapsed seconds (nan and its log on failure).
timed() {
  local s e
  s=$(now)
  if ! "$@" > "$WORK/last.log" 2>&1; then echo "FAILED: $*" >&2; tail -20 "$WORK/last.log" >&2; echo nan; return 0; fi
  e=$(now)
  echo "$e - $s" | bc -l | xargs printf '%.2f'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Every root loads the one base image (an import would stamp a new creation time, so a new
# base digest, and rightly no cache hit).
# It ends with a sync, so no timed build pays for writing back what came before it.
fresh_root() { rm -rf "$WORK/root-$1"; "$BUILDER" --root "$WORK/root-$1" load -i "$WORK/busybox-docker.tar" > /dev/null; sync; }
bld() { local root=$1; shift; "${IN[@]}" "$BUILDER" --root "$WORK/root-$root" build --progress plain "$@"; }

declare -A R
for s in $SCENARIOS; do
  ctx=$WORK/ctx/$s
  for run in $(seq 1 "$RUNS"); do
    sync
    # builder, cold, --push, no cache export (its own registry: nothing there yet).
    start_registry; fresh_root cold
    R[$s,cold]+=" $(timed bld cold -t "$REG/app:1" --push "$ctx")"
    # builder, cold, --push and --cache-to mode=max (another empty registry).
    start_registry; fresh_root a
    R[$s,coldmax]+=" $(timed bld a -t "$REG/app:a" --push --cache-to "type=registry,ref=$REG/cache:1,mode=max" "$ctx")"
    # builder on an empty second root: all from the cache, pushed.
    fresh_root b
    R[$s,cached]+=" $(timed bld b -t "$REG/app:b" --push --cache-from "$REG/cache:1" --metadata-file "$WORK/meta.json" "$ctx")"
    # Bytes down: the client's counter (blobs: the cache config) plus the cache manifest B read
    # (manifests are not in the counter).
    blobs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["registry.bytes_downloaded"])' "$WORK/meta.json")
    mani=$("${IN[@]}" curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/cache/manifests/1" | wc -c)
    down=$((blobs + mani))
    R[$s,blobs]+=" $blobs"
    size=$("${IN[@]}" curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/app/manifests/b" |
      python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
    R[$s,down]+=" $down"; R[$s,size]+=" $size"
    ran=$(grep -cE '^#[0-9]+ \[.*(RUN|COPY)' "$WORK/last.log" || true); cached=$(grep -c ' CACHED$' "$WORK/last.log" || true)
    R[$s,steps]="$cached CACHED of $ran steps"
    if [ "$HAVE_DOCKER" = 1 ]; then
      # BuildKit: inline cache pushed from a first dockerd, imported on a second, empty one.
      start_registry
      dockerd_up 1; sync
      R[$s,dkcold]+=" $(timed sh -c "DOCKER_BUILDKIT=1 $DOCKER build --network host --progress plain --build-arg BUILDKIT_INLINE_CACHE=1 -t $REG/dk:1 $ctx && $DOCKER push $REG/dk:1")"
      dockerd_up 2; sync
      R[$s,dkcached]+=" $(timed sh -c "DOCKER_BUILDKIT=1 $DOCKER build --network host --progress plain --cache-from $REG/dk:1 -t $REG/dk:2 $ctx && $DOCKER push $REG/dk:2")"
      R[$s,dksteps]="$(grep -c ' CACHED$' "$WORK/last.log" || true) CACHED"
      dockerd_down
    fi
  done
done

printf '\n%-11s| %-10s| %-12s| %-13s| %-18s| %-12s| %-12s| %s\n' scenario "cold" "cold+max" "cached (B)" "bytes down (blobs)" "image bytes" "BK cold" "BK cached (B)"
for s in $SCENARIOS; do
  m() { echo "${R[$s,$1]:-}" | median; }
  printf '%-11s| %-10s| %-12s| %-13s| %-18s| %-12s| %-12s| %s\n' "$s" "$(m cold)" "$(m coldmax)" "$(m cached)" "$(m down) ($(m blobs))" "$(m size)" "$(m dkcold)" "$(m dkcached)"
done
echo
for s in $SCENARIOS; do
  m() { echo "${R[$s,$1]:-}" | median; }
  awk -v s="$s" -v c="$(m cached)" -v k="$(m dkcached)" -v c0="$(m cold)" -v c1="$(m coldmax)" -v d="$(m down)" -v z="$(m size)" -v st="${R[$s,steps]}" -v dk="${R[$s,dksteps]:-}" 'BEGIN {
    printf "%s: cached/BuildKit cached = %s (target < 0.3); mode=max export adds %.0f%% to a cold build (target < 20%%); bytes down %.2f%% of the image (target < 1%%); builder B: %s; BuildKit B: %s\n",
      s, (k > 0 ? sprintf("%.2f", c / k) : "n/a"), (c1 / c0 - 1) * 100, d / z * 100, st, dk }'
done
