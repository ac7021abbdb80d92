#!/usr/bin/env bash
# Builds the same scenarios with builder, BuildKit (Debian's docker.io) and Buildah
# (`buildah bud --layers --runtime runc`) on this machine, and prints a table of
# cold build, no-op rebuild and rebuild-after-one-change times (seconds).
#
#   benches/build_compare.sh [--only builder,buildkit,buildah] [--runs N] [--scenarios multistage,parallel,runs40,big]
#
# Needs root. BuildKit is used when `docker` can reach a daemon (it starts
# `dockerd --bridge=none --iptables=false` if none runs); Buildah when `buildah` is installed.
# The builder binary is target/release/builder (built if missing) or $BUILDER.
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY="builder,buildkit,buildah"
RUNS=3
SCENARIOS_WANTED=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) ONLY="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --scenarios) SCENARIOS_WANTED="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

BUILDER=${BUILDER:-$PWD/target/release/builder}
# Debian's docker.io client speaks to its daemon's built-in BuildKit without the buildx plugin.
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker || true)}
if [ ! -x "$BUILDER" ]; then cargo build --release -p cli >&2; fi
# Durability costs are part of the comparison: BUILDER_NO_FSYNC is passed on only if the caller set it.
if [ -n "${BUILDER_NO_FSYNC:-}" ]; then export BUILDER_NO_FSYNC; fi

. benches/lib.sh build-compare

# ---- base image: Debian's static busybox as a rootfs tarball ----
busybox_rootfs "$WORK/busybox" usr/bin

# ---- scenarios ----
mk() { mkdir -p "$WORK/ctx/$1"; echo v1 > "$WORK/ctx/$1/marker"; }

bench_context multistage "$WORK/ctx/multistage"
change_multistage() { echo "changed $1" > "$WORK/ctx/multistage/files/f7.txt"; }

mk parallel
cat > "$WORK/ctx/parallel/Dockerfile" <<'DF'
FROM busybox:bench AS a
RUN sleep 1 && echo a > /a
FROM busybox:bench AS b
RUN sleep 1 && echo b > /b
FROM busybox:bench AS c
RUN sleep 1 && echo c > /c
FROM busybox:bench AS d
RUN sleep 1 && echo d > /d
FROM busybox:bench
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
COPY --from=d /d /d
COPY marker /marker
DF
change_parallel() { echo "changed $1" > "$WORK/ctx/parallel/marker"; }

bench_context runs40 "$WORK/ctx/runs40"
change_runs40() { echo "changed $1" > "$WORK/ctx/runs40/marker"; }

mk big
cat > "$WORK/ctx/big/Dockerfile" <<'DF'
FROM busybox:bench
COPY marker /marker
RUN dd if=/dev/urandom of=/big bs=1M count=256
DF
change_big() { echo "changed $1" > "$WORK/ctx/big/marker"; }

SCENARIOS="multistage parallel runs40 big"
if [ -n "$SCENARIOS_WANTED" ]; then SCENARIOS=${SCENARIOS_WANTED//,/ }; fi

now() { date +%s.%N; }
# Fairness on a VM: memory the guest freed in the last few seconds is still backed by the host
# and is twice as fast to fill as memory it has handed back (free page reporting); here a
# 256 MiB write takes 0.7 s or 1.5 s depending on which it gets, so whichever tool runs right
# after the other deleted its state would win. MEMORY=warm (default) fills and frees 768 MiB
# right before every timed build, as memory behaves on a machine without a balloon; MEMORY=cold
# waits 8 s before each cold build instead, so both get handed-back memory. Either way both
# tools get the same, and dirty data of earlier builds is flushed first.
MEMORY=${MEMORY:-warm}
# Waits (up to ~10 s) until the CPUs are 90% idle over 0.3 s: the daemon's work after a build
# (snapshot clean-up after a prune, say) must not land in the other tool's next timing.
cpu_busy_idle() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
wait_idle() {
  local a b i
  for i in $(seq 1 30); do
    a=$(cpu_busy_idle); sleep 0.3; b=$(cpu_busy_idle)
    if echo "$a $b" | awk '{busy=$3-$1; idle=$4-$2; exit !(busy + idle > 0 && idle / (busy + idle) >= 0.9)}'; then return 0; fi
  done
  return 0
}
prepare_memory() {
  wait_idle
  sync
  case $MEMORY in
    warm) head -c 768M /dev/zero > /dev/shm/.build-compare-warm; rm -f /dev/shm/.build-compare-warm ;;
    cold) [ "${1:-}" = cold ] && sleep 8 ;;
  esac
  return 0
}
# Runs "$@" quietly; prints elapsed seconds; fails loudly on error.
timed() {
  local s e
  s=$(now)
  if ! "$@" > "$WORK/last.log" 2>&1; then echo "FAILED: $*" >&2; tail -20 "$WORK/last.log" >&2; echo "nan"; return 0; fi
  e=$(now)
  echo "$e - $s" | bc -l | xargs printf '%.2f'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ---- tools ----
# fresh_TOOL SCENARIO: an empty cache with the base image; build_TOOL SCENARIO: one build.
fresh_builder() { rm -rf "$WORK/root-$1"; "$BUILDER" --root "$WORK/root-$1" import "$WORK/busybox.tar" busybox:bench > /dev/null; }
build_builder() { "$BUILDER" --root "$WORK/root-$1" build --progress plain -t "bench-$1" "$WORK/ctx/$1"; }
done_builder() { rm -rf "$WORK/root-$1"; }
fresh_buildkit() { "$DOCKER" builder prune -af > /dev/null 2>&1 || true; "$DOCKER" rmi -f "bench-$1" > /dev/null 2>&1 || true; }
build_buildkit() { DOCKER_BUILDKIT=1 "$DOCKER" build --network host --progress plain -t "bench-$1" "$WORK/ctx/$1"; }
done_buildkit() { :; }
fresh_buildah() { buildah rmi -af > /dev/null 2>&1 || true; buildah pull "docker-archive:$WORK/busybox-docker.tar" > /dev/null 2>&1 || true; }
build_buildah() { buildah bud --layers --runtime runc --network host -t "bench-$1" "$WORK/ctx/$1"; }
done_buildah() { :; }

declare -A RESULT
# Per scenario: cold builds, each from an empty cache; then no-op rebuilds; then rebuilds after
# changing one file (median of RUNS each). The tools take turns build by build (and swap who
# goes first every round): this VM's speed drifts over minutes (how fast fresh memory comes from
# the host), and a tool that ran all its builds in a slow minute would look slower than it is.
in_turns() { # ROUND: the tools, reversed on odd rounds
  if [ $(($1 % 2)) -eq 0 ]; then echo $TOOLS; else echo $TOOLS | tr ' ' '\n' | tac | tr '\n' ' '; fi
}
run_scenario() {
  local scen=$1 ctx="$WORK/ctx/$1" tool i
  declare -A cold=() noop=() change=()
  for i in $(seq 1 "$RUNS"); do
    for tool in $(in_turns "$i"); do
      "fresh_$tool" "$scen"
      prepare_memory cold
      cold[$tool]="${cold[$tool]:-} $(timed "build_$tool" "$scen")"
    done
  done
  for i in $(seq 1 "$RUNS"); do
    for tool in $(in_turns "$i"); do prepare_memory; noop[$tool]="${noop[$tool]:-} $(timed "build_$tool" "$scen")"; done
  done
  for i in $(seq 1 "$RUNS"); do
    "change_$scen" "$i"
    for tool in $(in_turns "$i"); do prepare_memory; change[$tool]="${change[$tool]:-} $(timed "build_$tool" "$scen")"; done
  done
  for tool in $TOOLS; do
    "done_$tool" "$scen"
    RESULT[$tool,$scen]="$(echo "${cold[$tool]}" | median) / $(echo "${noop[$tool]}" | median) / $(echo "${change[$tool]}" | median)"
  done
  # Leave the context as it was.
  echo v1 > "$ctx/marker"; [ "$scen" = multistage ] && echo "file 7" > "$ctx/files/f7.txt"
  return 0
}

TOOLS=""
if want builder; then TOOLS="$TOOLS builder"; fi
if want buildkit && [ -n "$DOCKER" ]; then
  if ! "$DOCKER" info > /dev/null 2>&1 && command -v dockerd > /dev/null; then
    (dockerd --bridge=none --iptables=false > "$WORK/dockerd.log" 2>&1 &)
    for _ in $(seq 1 30); do "$DOCKER" info > /dev/null 2>&1 && break; sleep 1; done
  fi
  if "$DOCKER" info > /dev/null 2>&1; then
    "$DOCKER" import "$WORK/busybox.tar" busybox:bench > /dev/null
    TOOLS="$TOOLS buildkit"
  fi
fi
if want buildah && command -v buildah > /dev/null; then
  # The same base image for Buildah, through a docker archive made by builder.
  broot="$WORK/root-export"
  "$BUILDER" --root "$broot" import "$WORK/busybox.tar" busybox:bench > /dev/null
  "$BUILDER" --root "$broot" save -o "$WORK/busybox-docker.tar" busybox:bench > /dev/null
  TOOLS="$TOOLS buildah"
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for scen in $SCENARIOS; do
  echo "running $scen with$TOOLS" >&2
  run_scenario "$scen"
done

echo
echo "cold / no-op / one change, seconds (median of $RUNS each; MEMORY=$MEMORY); $(nproc) cores, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
printf '%-12s' "scenario"; for tool in $TOOLS; do printf '| %-22s' "$tool"; done; echo
for scen in $SCENARIOS; do
  printf '%-12s' "$scen"; for tool in $TOOLS; do printf '| %-22s' "${RESULT[$tool,$scen]}"; done; echo
done
