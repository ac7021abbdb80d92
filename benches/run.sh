#!/usr/bin/env bash
# Start-up latency of a container: `builder run --rm IMAGE true` against `runc run` of an
# equivalent bundle (Debian's runc) and, when dockerd is running, `docker run --rm`.
# Prints a hyperfine table (markdown). Needs root, busybox-static, runc, hyperfine.
#
#   benches/run.sh [RUNS]
set -euo pipefail
RUNS=${1:-50}
cd "$(dirname "$0")/.."
. benches/lib.sh run
bench_builder

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

CMDS=("$BUILDER --root $STATE run --rm bench:busybox true" "runc run --bundle $BUNDLE bench-$$")
NAMES=("builder run --rm" "runc run")
if docker info >/dev/null 2>&1; then
  docker import "$WORK/rootfs.tar" builder-bench:busybox >/dev/null
  CMDS+=("docker run --rm --network host builder-bench:busybox true")
  NAMES+=("docker run --rm --network host")
fi
ARGS=()
for i in "${!CMDS[@]}"; do ARGS+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
hyperfine -N --warmup 5 --runs "$RUNS" --export-markdown "$WORK/table.md" "${ARGS[@]}" >&2
cat "$WORK/table.md"
