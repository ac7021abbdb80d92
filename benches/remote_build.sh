#!/usr/bin/env bash
# Remote builds against `builder serve` on this machine versus the same builds done locally, for
# a context of 10,000 files / 200 MiB (`FROM scratch` + `COPY . /ctx/`):
#   - no-op rebuild (nothing changed),
#   - rebuild after changing one 20 KiB file,
# the bytes the client sends for that one-file change (every byte of the session's messages as
# encoded on the wire: request, file-list delta, contents), and the bytes a first build sends
# when its Dockerfile copies only one directory (the server's context selection).
#
#   benches/remote_build.sh [--runs N] [--files N] [--mib N]
#
# Needs root (the server and the local build use overlay mounts and namespaces) and hyperfine.
# The builder binary is target/release/builder (built if missing) or $BUILDER; the client is the
# `api` crate's `remote_build` example (the client library `builder --addr` uses).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=10
FILES=10000
MIB=200
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --files) FILES="$2"; shift 2 ;;
    --mib) MIB="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

BUILDER=${BUILDER:-$PWD/target/release/builder}
CLIENT=$PWD/target/release/examples/remote_build
[ -x "$BUILDER" ] || cargo build --release -p cli >&2
cargo build --release -p api --example remote_build >&2

W=$(mktemp -d /var/tmp/remote-build.XXXXXX)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

CTX=$W/ctx
FILE_SIZE=$(( MIB * 1024 * 1024 / FILES ))
echo "context: $FILES files of $FILE_SIZE bytes in $CTX" >&2
python3 - "$CTX" "$FILES" "$FILE_SIZE" <<'PY'
import os, sys
ctx, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    d = os.path.join(ctx, "d%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(os.urandom(size))
with open(os.path.join(ctx, "Dockerfile"), "w") as f:
    f.write("FROM scratch\nCOPY . /ctx/\n")
PY
CHANGED=$CTX/d000/f00000.bin

"$BUILDER" --root "$W/server" serve --listen tcp://127.0.0.1:0 >"$W/serve.out" 2>"$W/serve.err" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$W/serve.out" 2>/dev/null && break; sleep 0.1; done
ADDR=$(sed -n 's/^builder serve: listening on //p' "$W/serve.out")
[ -n "$ADDR" ] || { cat "$W/serve.err" >&2; exit 1; }

export QUIET=1 XDG_CACHE_HOME=$W/client-cache
LOCAL="$BUILDER --root $W/local build -q --build-arg SOURCE_DATE_EPOCH=0 $CTX"
REMOTE="$CLIENT $ADDR $CTX --build-arg SOURCE_DATE_EPOCH=0"
CHANGE="head -c $FILE_SIZE /dev/urandom > $CHANGED"

echo "cold builds (not timed)" >&2
$LOCAL >/dev/null
$REMOTE >/dev/null

hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$W/noop.json" -n local "$LOCAL" -n remote "$REMOTE" >&2
hyperfine --warmup 1 --runs "$RUNS" --export-json "$W/change.json" --prepare "$CHANGE" -n local "$LOCAL" -n remote "$REMOTE" >&2

eval "$CHANGE"
SENT=$($REMOTE | sed -n 's/^bytes_sent=//p')

# Context selection: a first build (new context, new mirror) whose Dockerfile copies one of the
# 100 directories sends only that directory.
cp -al "$CTX" "$W/ctx-one-dir"
printf 'FROM scratch\nCOPY d000/ /ctx/\n' > "$W/ctx-one-dir/Dockerfile"
SELECTED=$($CLIENT "$ADDR" "$W/ctx-one-dir" --build-arg SOURCE_DATE_EPOCH=0 | sed -n 's/^bytes_sent=//p')
DIR_BYTES=$(du -sb --apparent-size "$CTX/d000" | cut -f1)

python3 - "$W/noop.json" "$W/change.json" "$SENT" "$FILE_SIZE" "$FILES" "$MIB" "$SELECTED" "$DIR_BYTES" <<'PY'
import json, sys
noop, change = (json.load(open(p))["results"] for p in sys.argv[1:3])
sent, size, files, mib, selected, dir_bytes = (int(x) for x in sys.argv[3:9])
m = lambda rs, n: next(r["mean"] for r in rs if r["command"] == n)
print(f"remote build bench: {files} files / {mib} MiB context, loopback, means of the runs")
print(f"{'scenario':<24}{'local s':>10}{'remote s':>10}{'remote/local':>14}")
for name, rs in (("no-op rebuild", noop), ("one file changed", change)):
    l, r = m(rs, "local"), m(rs, "remote")
    print(f"{name:<24}{l:>10.3f}{r:>10.3f}{r / l:>13.2f}x")
print(f"bytes sent for a one-file change: {sent} for a {size}-byte file = {sent / size:.3f}x the file")
print(f"first build of `COPY d000/ /ctx/`: {selected} bytes sent for a {dir_bytes}-byte directory of a {mib} MiB context")
PY
