#!/usr/bin/env bash
# Push/pull benchmark: a 256 MiB image (4 layers of 64 MiB, each half random, half zeros)
# to and from a fresh local docker-registry, with builder and with its peers:
#   builder      load (gzip, parallel) + push; pull into the store; no-op re-push
#   skopeo copy  docker-archive -> docker:// (gzips while pushing); docker:// -> oci:DIR
#   docker       load + push; pull            (only when `docker info` works; start dockerd
#                                              with --bridge=none --iptables=false)
# Every measurement is the median of RUNS runs (default 3), each on fresh state.
# Usage: benches/push_pull.sh [RUNS]      (root, after `cargo build --release -p cli`)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
BUILDER=${BUILDER:-$PWD/target/release/builder}
[ -x "$BUILDER" ] || cargo build --release -p cli >&2

WORK=$(mktemp -d /var/tmp/push-pull.XXXXXX)
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# A fresh registry for every run, so no tool finds blobs a previous run uploaded.
start_registry() {
  [ -n "$REG_PID" ] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null || true; }
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  REG=127.0.0.1:$PORT
  rm -rf "$WORK/registry"; mkdir -p "$WORK/registry"
  cat > "$WORK/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry}, delete: {enabled: true}}
http: {addr: $REG}
YML
  /usr/bin/docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do curl -sf "http://$REG/v2/" >/dev/null 2>&1 && return; python3 -c 'import time; time.sleep(0.1)'; done
  echo "docker-registry did not start" >&2; exit 1
}

# The image, as an uncompressed docker archive every tool can start from.
python3 - "$WORK/image.tar" <<'PY'
import hashlib, io, json, os, sys, tarfile
out = tarfile.open(sys.argv[1], "w")
diff_ids, names = [], []
for n in range(4):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as layer:
        data = os.urandom(32 << 20) + bytes(32 << 20)
        info = tarfile.TarInfo(f"data/layer{n}.bin"); info.size = len(data)
        layer.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    digest = hashlib.sha256(raw).hexdigest()
    diff_ids.append("sha256:" + digest); names.append(f"{digest}.tar")
    info = tarfile.TarInfo(names[-1]); info.size = len(raw); out.addfile(info, io.BytesIO(raw))
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cname = hashlib.sha256(config).hexdigest() + ".json"
for name, body in [(cname, config), ("manifest.json", json.dumps([{"Config": cname, "RepoTags": ["bench/image:1"], "Layers": names}]).encode())]:
    info = tarfile.TarInfo(name); info.size = len(body); out.addfile(info, io.BytesIO(body))
out.close()
PY

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A T
record() { T[$1]="${T[$1]:-} $2"; }

HAVE_DOCKER=0
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then HAVE_DOCKER=1; fi

for run in $(seq "$RUNS"); do
  start_registry
  # builder: compress into the store (load), then upload.
  ROOT="$WORK/root-$run"
  t0=$(now); "$BUILDER" --root "$ROOT" load -q -i "$WORK/image.tar" >/dev/null; t1=$(now)
  "$BUILDER" --root "$ROOT" tag bench/image:1 "$REG/builder/img$run:1"
  t2=$(now); "$BUILDER" --root "$ROOT" push -q "$REG/builder/img$run:1" >/dev/null; t3=$(now)
  record builder_compress "$(echo "$t1 - $t0" | bc)"
  record builder_upload "$(echo "$t3 - $t2" | bc)"
  record builder_push "$(echo "$t3 - $t2 + $t1 - $t0" | bc)"
  t0=$(now); "$BUILDER" --root "$ROOT" push -q "$REG/builder/img$run:1" >/dev/null; t1=$(now)
  record builder_noop_push "$(echo "$t1 - $t0" | bc)"
  t0=$(now); "$BUILDER" --root "$WORK/pull-$run" pull -q "$REG/builder/img$run:1" >/dev/null; t1=$(now)
  record builder_pull "$(echo "$t1 - $t0" | bc)"

  # skopeo: gzip while pushing; pull into an OCI layout.
  t0=$(now); skopeo copy -q --dest-tls-verify=false "docker-archive:$WORK/image.tar" "docker://$REG/skopeo/img$run:1"; t1=$(now)
  record skopeo_push "$(echo "$t1 - $t0" | bc)"
  t0=$(now); skopeo copy -q --src-tls-verify=false "docker://$REG/builder/img$run:1" "oci:$WORK/skopeo-oci-$run:img"; t1=$(now)
  record skopeo_pull "$(echo "$t1 - $t0" | bc)"

  if [ "$HAVE_DOCKER" = 1 ]; then
    docker load -q -i "$WORK/image.tar" >/dev/null
    docker tag bench/image:1 "$REG/docker/img$run:1"
    t0=$(now); docker push -q "$REG/docker/img$run:1" >/dev/null; t1=$(now)
    record docker_push "$(echo "$t1 - $t0" | bc)"
    docker rmi -f "$REG/docker/img$run:1" bench/image:1 >/dev/null
    t0=$(now); docker pull -q "$REG/builder/img$run:1" >/dev/null; t1=$(now)
    record docker_pull "$(echo "$t1 - $t0" | bc)"
    docker rmi -f "$REG/builder/img$run:1" >/dev/null
  fi
  rm -rf "$ROOT" "$WORK/pull-$run" "$WORK/skopeo-oci-$run"
done

m() { echo ${T[$1]} | tr ' ' '\n' | median; }
ratio() { echo "scale=2; $1 / $2" | bc; }
echo "push/pull of a 256 MiB image (4 layers, half random), median of $RUNS runs, $(nproc) cores, gzip level ${BUILDER_GZIP_LEVEL:-6}, load average $(cut -d' ' -f1 /proc/loadavg)"
printf '| %-44s | %8s |\n' "measurement" "seconds"
printf '|%s|%s|\n' "----------------------------------------------" "----------"
printf '| %-44s | %8.3f |\n' "builder push: gzip (load) + upload" "$(m builder_push)"
printf '| %-44s | %8.3f |\n' "  of which gzip into the store (builder load)" "$(m builder_compress)"
printf '| %-44s | %8.3f |\n' "  of which upload (builder push)" "$(m builder_upload)"
printf '| %-44s | %8.3f |\n' "skopeo copy docker-archive: -> docker://" "$(m skopeo_push)"
[ "$HAVE_DOCKER" = 1 ] && printf '| %-44s | %8.3f |\n' "docker push (gzip + upload)" "$(m docker_push)"
printf '| %-44s | %8.3f |\n' "builder no-op re-push (all blobs present)" "$(m builder_noop_push)"
printf '| %-44s | %8.3f |\n' "builder pull (into the store)" "$(m builder_pull)"
printf '| %-44s | %8.3f |\n' "skopeo copy docker:// -> oci:DIR" "$(m skopeo_pull)"
[ "$HAVE_DOCKER" = 1 ] && printf '| %-44s | %8.3f |\n' "docker pull" "$(m docker_pull)"
echo
echo "push ratio builder/skopeo: $(ratio "$(m builder_push)" "$(m skopeo_push)")"
[ "$HAVE_DOCKER" = 1 ] && echo "push ratio builder/docker: $(ratio "$(m builder_push)" "$(m docker_push)") (target <= 0.40)"
echo "pull ratio builder/skopeo: $(ratio "$(m builder_pull)" "$(m skopeo_pull)") (target <= 1.00)"
echo "no-op re-push: $(m builder_noop_push) s (target < 0.100)"
