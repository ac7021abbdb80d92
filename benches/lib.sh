# What the side-by-side benches share: a scratch directory, a network namespace of their own,
# the busybox root every tool starts from, and a dockerd of the bench's own. Source it after
# `cd` to the repository root; it sets WORK and NS (named after the bench) and cleans both up
# on exit, with any dockerd it started.
#
#   . benches/lib.sh NAME

bench_name=$1
WORK=$(mktemp -d "/tmp/builder-$bench_name-bench.XXXXXX")
NS=builder-$bench_name-bench-$$
DOCKERD_PID=

bench_cleanup() {
  [ -z "$DOCKERD_PID" ] || { kill "$DOCKERD_PID" 2>/dev/null || true; wait "$DOCKERD_PID" 2>/dev/null || true; }
  ip netns delete "$NS" 2>/dev/null || true
  # dockerd's overlay mounts live under its data root.
  grep -o " $WORK[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

# bench_builder: $BUILDER, or the release build of this checkout (built now).
bench_builder() {
  if [ -z "${BUILDER:-}" ]; then
    cargo build --release -q -p cli
    BUILDER=$PWD/target/release/builder
  fi
}

# bench_netns: the namespace $NS with only loopback up.
bench_netns() {
  ip netns add "$NS"
  ip netns exec "$NS" ip link set lo up
}

# busybox_rootfs DIR [SUBDIR…]: a busybox root (root's passwd and group, the usual empty
# directories and SUBDIRs) in DIR, also packed as DIR.tar.
busybox_rootfs() {
  local root=$1 a d
  shift
  mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev}
  for d in "$@"; do mkdir -p "$root/$d"; done
  cp /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\n' > "$root/etc/group"
  tar -C "$root" -cf "$root.tar" .
}

# start_dockerd [DOCKERD ARG…]: a dockerd of the bench's own (data root, exec root and socket
# under $WORK) in $NS, with no iptables; exports DOCKER_HOST once it answers.
start_dockerd() {
  local sock=unix://$WORK/docker.sock
  nsenter --net=/run/netns/"$NS" dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" \
    --host "$sock" --iptables=false --ip-masq=false "$@" > "$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do DOCKER_HOST=$sock docker info > /dev/null 2>&1 && break; sleep 0.5; done
  export DOCKER_HOST=$sock
}

# bench_context NAME DIR: the build context of scenario NAME in DIR, with a `marker` file that
# holds v1 (a change rewrites it): multistage (200 files copied across two stages) or runs40 (a
# COPY and 40 RUN steps), both FROM busybox:bench.
bench_context() {
  local i
  mkdir -p "$2"
  echo v1 > "$2/marker"
  case "$1" in
    multistage)
      mkdir -p "$2/files"
      for i in $(seq 1 200); do echo "file $i" > "$2/files/f$i.txt"; done
      printf '%s\n' 'FROM busybox:bench AS build' 'COPY files/ /src/' 'RUN cat /src/* > /all.txt' 'FROM busybox:bench' \
        'COPY --from=build /src /app/src' 'COPY --from=build /all.txt /app/all.txt' > "$2/Dockerfile"
      ;;
    runs40)
      {
        echo "FROM busybox:bench"
        echo "COPY marker /marker"
        for i in $(seq 1 40); do echo "RUN echo $i > /f$i"; done
      } > "$2/Dockerfile"
      ;;
    *) echo "bench_context: no scenario $1" >&2; return 1 ;;
  esac
}
