#!/usr/bin/env bash
# Start-up latency of a container, like against like, all inside a network namespace of the
# bench's own: `builder run --rm --network none IMAGE true` against `runc run` of an equivalent
# bundle (Debian's runc; its default spec gives the container an empty network namespace too)
# and `docker run --rm --network none` (a dockerd of the bench's own); then the default bridge
# network of each, `builder run --rm` and `docker run --rm` (a veth pair and an address each).
# Prints a hyperfine table (markdown). Needs root, busybox-static, runc, hyperfine; docker.io
# for the docker rows (left out when dockerd is not installed).
#
#   benches/run.sh [RUNS]
set -euo pipefail
RUNS=${1:-50}
cd "$(dirname "$0")/.."
. benches/lib.sh run
bench_builder
bench_netns

# The same busybox root for everyone.
ROOTFS=$WORK/rootfs
busybox_rootfs "$ROOTFS"

# builder: import as an image (its layer is unpacked once, by the warm-up runs).
STATE=$WORK/state
"$BUILDER" --root "$STATE" import "$WORK/rootfs.tar" bench:busybox >/dev/null

# runc: a bundle with runc's default spec, running `true`.
BUNDLE=$WORK/bundle
mkdir -p "$BUNDLE"
cp -a "$ROOTFS" "$BUNDLE/rootfs"
(cd "$BUNDLE" && runc spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' "$BUNDLE/config.json"

B="$BUILDER --root $STATE run --rm"
CMDS=("$B --network none bench:busybox true" "runc run --bundle $BUNDLE bench-$$")
NAMES=("builder run --rm --network none" "runc run")
if command -v dockerd >/dev/null; then
  start_dockerd
  docker import "$WORK/rootfs.tar" builder-bench:busybox >/dev/null
  CMDS+=("docker run --rm --network none builder-bench:busybox true")
  NAMES+=("docker run --rm --network none")
fi
CMDS+=("$B bench:busybox true")
NAMES+=("builder run --rm (bridge)")
if command -v dockerd >/dev/null; then
  CMDS+=("docker run --rm builder-bench:busybox true")
  NAMES+=("docker run --rm (bridge)")
fi
ARGS=()
for i in "${!CMDS[@]}"; do ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
# In the bench's namespace: the bridges and addresses both make stay there. nsenter, not
# `ip netns exec`, which mounts a sysfs of the namespace's over /sys and so hides the cgroups.
nsenter --net=/run/netns/"$NS" env DOCKER_HOST="${DOCKER_HOST:-}" hyperfine -N --warmup 5 --runs "$RUNS" --export-markdown "$WORK/table.md" "${ARGS[@]}" >&2
cat "$WORK/table.md"
