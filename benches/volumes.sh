#!/usr/bin/env bash
# Containers with volumes, builder side by side with Docker (Debian's docker.io, a dockerd of
# its own: own data root and socket, in a network namespace of its own), same image, one run:
#   (a) `run --rm -v NAME:/data IMAGE true` with an existing named volume;
#   (b) `run --rm IMAGE true` of an image whose `VOLUME /data` holds FILES files: an anonymous
#       volume made, filled from the image, and removed with the container, each time.
# Prints a markdown table of the medians and the ratios. Needs root, busybox-static, docker.io.
#
#   benches/volumes.sh [ROUNDS] [FILES]        (BUILDER=path/to/builder to skip the release build)
set -euo pipefail
ROUNDS=${1:-20}
FILES=${2:-1000}
cd "$(dirname "$0")/.."
. benches/lib.sh volumes
bench_builder
bench_netns

# One busybox root, and a second layer with FILES files under /data.
ROOTFS=$WORK/rootfs
busybox_rootfs "$ROOTFS"
CTX=$WORK/ctx
mkdir -p "$CTX/data"
for i in $(seq 1 "$FILES"); do echo "file $i" > "$CTX/data/f$i.txt"; done
printf 'FROM bench-busybox:1\nCOPY data/ /data/\nVOLUME /data\n' > "$CTX/Dockerfile"

STATE=$WORK/builder
"$BUILDER" --root "$STATE" import "$WORK/rootfs.tar" bench-busybox:1 > /dev/null
"$BUILDER" --root "$STATE" build -q -t bench-seeded:1 "$CTX" > /dev/null
"$BUILDER" --root "$STATE" volume create benchvol > /dev/null

start_dockerd --bridge=none
docker import "$WORK/rootfs.tar" bench-busybox:1 > /dev/null
DOCKER_BUILDKIT=0 docker build -q -t bench-seeded:1 "$CTX" > /dev/null
docker volume create benchvol > /dev/null

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }
time_of() { local t0 t1; t0=$(now); "$@" > /dev/null 2>&1; t1=$(now); elapsed "$t0" "$t1"; }

B_A=(); D_A=(); B_B=(); D_B=()
# Warm-up: the layers unpacked, the first fill of each side done.
"$BUILDER" --root "$STATE" run --rm --network none -v benchvol:/data bench-busybox:1 true
docker run --rm --network none -v benchvol:/data bench-busybox:1 true
for _ in $(seq 1 "$ROUNDS"); do
  B_A+=("$(time_of "$BUILDER" --root "$STATE" run --rm --network none -v benchvol:/data bench-busybox:1 true)")
  D_A+=("$(time_of docker run --rm --network none -v benchvol:/data bench-busybox:1 true)")
  B_B+=("$(time_of "$BUILDER" --root "$STATE" run --rm --network none bench-seeded:1 true)")
  D_B+=("$(time_of docker run --rm --network none bench-seeded:1 true)")
done
# Both sides removed every anonymous volume with its container.
[ "$("$BUILDER" --root "$STATE" volume ls -q | wc -l)" = 1 ] || echo "warning: builder left anonymous volumes" >&2
[ "$(docker volume ls -q | wc -l)" = 1 ] || echo "warning: docker left anonymous volumes" >&2

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ba=$(median "${B_A[@]}"); da=$(median "${D_A[@]}"); bb=$(median "${B_B[@]}"); db=$(median "${D_B[@]}")
echo "| $ROUNDS rounds, median | builder | docker run + dockerd | ratio |"
echo "|---|---|---|---|"
printf '| run --rm -v NAME:/data IMAGE true | %.3f s | %.3f s | %.2fx |\n' "$ba" "$da" "$(echo "$ba / $da" | bc -l)"
printf '| run --rm IMAGE true, VOLUME /data of %s files (make, fill, remove) | %.3f s | %.3f s | %.2fx |\n' "$FILES" "$bb" "$db" "$(echo "$bb / $db" | bc -l)"
