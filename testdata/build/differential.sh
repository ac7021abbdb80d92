#!/usr/bin/env bash
# Differential check against BuildKit: builds every case in testdata/build/differential/ with
# builder and with `docker build` (BuildKit, Debian's docker.io), then compares the final
# filesystems (path, type, mode, uid/gid, size, content hash, link target; never mtime) and the
# image configs (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
# StopSignal, Healthcheck, Shell, OnBuild, ArgsEscaped; author, os/architecture) and the history this build added (created_by text,
# empty_layer). Prints one line per case; exits 1 on a difference.
#
# A case is a directory with a Dockerfile (or ctx/Dockerfile) and a ctx/ directory. Optional files:
#   base.Dockerfile   built first (same ctx) as `diff-<case>-base` on both sides, for FROM/ONBUILD
#   build-args        one `K=V` per line, passed as --build-arg to both builds
#   platform          a platform (e.g. linux/arm64) passed as --platform to both builds
#   setup.sh          run (bash) inside a scratch copy of ctx/ before building, for what git cannot
#                     hold: hardlinks, special modes, owners, archives made on the fly
#
#   [BASES="full minimal"] testdata/build/differential.sh [CASE…]      (needs root and a running dockerd)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILDER=${BUILDER:-$ROOT/target/debug/builder}
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
WORK=$(mktemp -d /tmp/differential.XXXXXX)
HTTP_PID=
cleanup() {
  [ -z "$HTTP_PID" ] || kill "$HTTP_PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# A web server on loopback for ADD <url>: testdata/build/differential-http/ at $HTTP (host:port);
# a case uses it with `ARG HTTP` and `ADD http://${HTTP}/…`.
mkfifo "$WORK/http.port"
python3 - "$HERE/differential-http" > "$WORK/http.port" 2>/dev/null <<'PY' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
HTTP_PID=$!
read -r HTTP_PORT < "$WORK/http.port"
HTTP="127.0.0.1:$HTTP_PORT"

# The same base image on both sides, in two flavours: `full` (busybox with /tmp, /proc, /sys,
# /dev, /root, /home) and `minimal` (busybox and /etc/passwd only: a RUN must leave none of the
# sandbox's mount points in its layer). BASES picks them (default: both).
make_base() { # flavour -> imports busybox:diff into $WORK/root-<flavour> and into docker
  local rootfs="$WORK/rootfs-$1"
  if [ "$1" = minimal ]; then
    mkdir -p "$rootfs"/{bin,etc}
    cp /bin/busybox "$rootfs/bin/busybox"
    ln -sf busybox "$rootfs/bin/sh"
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
  else
    mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev,home}
    cp /bin/busybox "$rootfs/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
    printf 'root:x:0:\n' > "$rootfs/etc/group"
  fi
  tar -C "$rootfs" -cf "$WORK/base-$1.tar" .
  "$BUILDER" --root "$WORK/root-$1" import "$WORK/base-$1.tar" busybox:diff > /dev/null
  "$DOCKER" import "$WORK/base-$1.tar" busybox:diff > /dev/null
}

listing() { # tar file -> sorted listing on stdout
  python3 - "$1" <<'PY'
import hashlib, sys, tarfile
skip = {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "proc", "sys", "dev", "etc/mtab"}
with tarfile.open(sys.argv[1]) as t:
    rows = []
    for m in t.getmembers():
        name = m.name[2:] if m.name.startswith("./") else m.name
        name = name.lstrip("/").rstrip("/")
        if not name or name in skip or name.split("/")[0] in ("proc", "sys", "dev"):
            continue
        kind = {tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.LNKTYPE: "h"}.get(m.type, "f")
        h = hashlib.sha256(t.extractfile(m).read()).hexdigest()[:16] if m.isfile() else ""
        rows.append(f"{kind} {name} {m.mode & 0o7777:o} {m.uid}:{m.gid} {m.size if m.isfile() else 0} {h} {m.linkname if m.issym() else ''}")
    # `docker create` adds /etc for the hosts/resolv.conf mount points: an /etc with nothing else
    # in it is the container's, not the image's.
    if not any(r.split(" ")[1].startswith("etc/") for r in rows):
        rows = [r for r in rows if not r.startswith("d etc ")]
    print("\n".join(sorted(rows)))
PY
}

config() { # JSON of the runtime config fields, normalized
  python3 -c '
import json, sys
full = json.load(sys.stdin)
c = full.get("config") or full.get("Config") or {}
keys = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild", "ArgsEscaped"]
out = {k: (c.get(k) or None) for k in keys}
out["author"] = full.get("author") or None
out["platform"] = "/".join(x for x in (full.get("os"), full.get("architecture"), full.get("variant")) if x)
print(json.dumps(out, sort_keys=True, indent=1))'
}

history() { # image config JSON on stdin -> this build's history (after the busybox:diff base)
  # A layer whose diff is empty (the empty tar's diffID) is shown as an empty step: BuildKit
  # keeps such layers (a RUN or WORKDIR that changed nothing), builder omits them and marks the
  # step empty_layer, as its issue asks. Files and config are the same either way.
  python3 -c '
import json, sys
EMPTY = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
c = json.load(sys.stdin)
diffs = list(c["rootfs"]["diff_ids"])
dir_only = list(c.get("_dir_only_layers") or [False] * len(diffs))
skip = int(sys.argv[1])
layers = 0
for i, e in enumerate(c.get("history") or []):
    empty = bool(e.get("empty_layer"))
    if not empty:
        d = diffs.pop(0) if diffs else None
        only_dirs = dir_only.pop(0) if dir_only else False
        empty = d == EMPTY or (only_dirs and e.get("created_by", "").startswith("RUN "))
    if i < skip:
        continue
    layers += 0 if empty else 1
    print(("(empty) " if empty else "(layer) ") + e.get("created_by", ""))
print("layers:", layers)' "$1"
}

same_history() { # docker's and builder's history listings -> a diff, empty when they agree
  # Docker 20.10's BuildKit writes some history texts the way older BuildKit did; builder writes
  # them as current BuildKit does. Those forms count as equal:
  #   EXPOSE map[80/tcp:{}]                              EXPOSE [80/tcp]
  #   HEALTHCHECK &{["CMD" "x"] "5s" "0s" "0s" '\x02'}   HEALTHCHECK {Test:[CMD x] Interval:5s … Retries:2}
  #   COPY a /b                                          COPY --chown=1:1 --chmod=600 a /b
  #   ARG V  (value from --build-arg or a global ARG)    ARG V=1
  #   RUN |4 X=1 Y=2 X=1 …  (an ARG declared twice)      RUN |3 X=1 Y=2 …
  python3 - "$1" "$2" <<'PY'
import difflib, re, sys
d, b = (open(p).read().splitlines() for p in sys.argv[1:3])
def unquote(s):
    return bytes(s, "utf-8").decode("unicode_escape")
def modern(line):
    m = re.match(r"^(\(\w+\) )EXPOSE map\[(.*)\]$", line)
    if m:
        return m.group(1) + "EXPOSE [" + " ".join(p[:-3] for p in m.group(2).split()) + "]"
    m = re.match(r"""^(\(\w+\) )HEALTHCHECK &\{\[(.*)\] "(.*?)" "(.*?)" "(.*?)" '(.*)'\}$""", line)
    if m:
        test = " ".join(unquote(x) for x in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
        r = unquote(m.group(6))
        return f"{m.group(1)}HEALTHCHECK {{Test:[{test}] Interval:{m.group(3)} Timeout:{m.group(4)} StartPeriod:{m.group(5)} StartInterval:0s Retries:{ord(r) if len(r) == 1 else r}}}"
    m = re.match(r"^(\(\w+\) )RUN \|(\d+) (.*)$", line)
    if m:
        n, words = int(m.group(2)), m.group(3).split(" ")
        seen = {}
        for w in words[:n]:
            k = w.split("=", 1)[0]
            seen[k] = w if k not in seen else w
        kept = list(dict.fromkeys(w.split("=", 1)[0] for w in words[:n]))
        return f"{m.group(1)}RUN |{len(kept)} " + " ".join([seen[k] for k in kept] + words[n:])
    return line
def equal(dl, bl):
    if modern(dl) == bl:
        return True
    if re.search(r"\) (COPY|ADD) ", bl) and re.sub(r" --(chown|chmod)=\S+", "", bl) == dl:
        return True
    dm, bm = re.match(r"^(\(\w+\) )ARG (.*)$", dl), re.match(r"^(\(\w+\) )ARG (.*)$", bl)
    if dm and bm and dm.group(1) == bm.group(1):
        dw, bw = dm.group(2).split(), bm.group(2).split()
        return len(dw) == len(bw) and all(x == y or ("=" not in x and y.startswith(x + "=")) for x, y in zip(dw, bw))
    return False
if len(d) == len(b) and all(equal(x, y) for x, y in zip(d, b)):
    sys.exit(0)
sys.stdout.writelines(difflib.unified_diff([modern(x) + "\n" for x in d], [y + "\n" for y in b], "docker history", "builder history"))
sys.exit(1)
PY
}

builder_config() { # tag -> image config JSON from builder's store
  python3 -c '
import json, sys
root, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(root + "/index.json"))
m = [d for d in idx["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == "docker.io/library/" + tag][0]
man = json.load(open(root + "/blobs/sha256/" + m["digest"].split(":")[1]))
print(open(root + "/blobs/sha256/" + man["config"]["digest"].split(":")[1]).read())' "$BROOT" "$1"
}

docker_config() { # tag -> image config JSON as `docker save` stores it
  "$DOCKER" save "$1" | python3 -c '
import io, json, sys, tarfile
t = tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read()))
m = json.load(t.extractfile("manifest.json"))
c = json.load(t.extractfile(m[0]["Config"]))
# Layers that hold only the directories /etc, /dev, /proc, /sys: Docker 20.10 leaves the parents of its RUN mount stubs
# (/etc for /etc/hosts) in a RUN that changed nothing; newer BuildKit does not.
stubs = {"etc", "dev", "proc", "sys"}
c["_dir_only_layers"] = [all(x.isdir() and x.name.strip("./") in stubs for x in tarfile.open(fileobj=t.extractfile(l)).getmembers()) for l in m[0]["Layers"]]
print(json.dumps(c))'
}

status=0
cases=${*:-$(ls "$HERE/differential")}
for flavour in ${BASES:-full minimal}; do
  BROOT="$WORK/root-$flavour"
  make_base "$flavour"
  base_layers=$(builder_config busybox:diff | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("history") or []))')
  docker_base_layers=$(docker_config busybox:diff | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("history") or []))')

  for case in $cases; do
    dir="$HERE/differential/$case"
    ctx="$WORK/ctx-$flavour-$case"
    if [ -d "$dir/ctx" ]; then cp -a "$dir/ctx" "$ctx"; else mkdir "$ctx"; fi   # git keeps no empty ctx/
    if [ -f "$dir/setup.sh" ]; then (cd "$ctx" && bash "$dir/setup.sh"); fi
    dockerfile="$dir/Dockerfile"
    [ -f "$dockerfile" ] || dockerfile="$ctx/Dockerfile"   # a case may keep its Dockerfile in ctx/
    args=()
    if grep -q 'ARG HTTP' "$dockerfile"; then args+=(--build-arg "HTTP=$HTTP"); fi
    if [ -f "$dir/build-args" ]; then
      while IFS= read -r a; do [ -n "$a" ] && args+=(--build-arg "$a"); done < "$dir/build-args"
    fi
    if [ -f "$dir/platform" ]; then args+=(--platform "$(cat "$dir/platform")"); fi
    if [ -f "$dir/base.Dockerfile" ]; then
      "$BUILDER" --root "$BROOT" build -q "${args[@]}" -f "$dir/base.Dockerfile" -t "diff-$case-base" "$ctx" > /dev/null
      DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host "${args[@]}" -f "$dir/base.Dockerfile" -t "diff-$case-base" "$ctx" > /dev/null
    fi
    if ! "$BUILDER" --root "$BROOT" build -q "${args[@]}" -f "$dockerfile" -t "diff-$case" --output "type=tar,dest=$WORK/$flavour.$case.builder.tar" "$ctx" > "$WORK/$flavour.$case.builder.log" 2>&1; then
      echo "DIFFERS $flavour $case: builder failed"; tail -5 "$WORK/$flavour.$case.builder.log"; status=1; continue
    fi
    "$BUILDER" --root "$BROOT" build -q "${args[@]}" -f "$dockerfile" -t "diff-$case" "$ctx" > /dev/null
    if ! DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host "${args[@]}" -f "$dockerfile" -t "diff-$case" "$ctx" > "$WORK/$flavour.$case.docker.log" 2>&1; then
      echo "DIFFERS $flavour $case: docker build failed where builder succeeded"; tail -5 "$WORK/$flavour.$case.docker.log"; status=1; continue
    fi
    cid=$("$DOCKER" create "diff-$case" true)
    "$DOCKER" export "$cid" > "$WORK/$flavour.$case.docker.tar"
    "$DOCKER" rm "$cid" > /dev/null
    listing "$WORK/$flavour.$case.builder.tar" > "$WORK/$flavour.$case.builder.files"
    listing "$WORK/$flavour.$case.docker.tar" > "$WORK/$flavour.$case.docker.files"
    builder_config "diff-$case:latest" > "$WORK/$flavour.$case.builder.json"
    docker_config "diff-$case" > "$WORK/$flavour.$case.docker.json"
    config < "$WORK/$flavour.$case.builder.json" > "$WORK/$flavour.$case.builder.config"
    config < "$WORK/$flavour.$case.docker.json" > "$WORK/$flavour.$case.docker.config"
    history "$base_layers" < "$WORK/$flavour.$case.builder.json" > "$WORK/$flavour.$case.builder.history"
    history "$docker_base_layers" < "$WORK/$flavour.$case.docker.json" > "$WORK/$flavour.$case.docker.history"
    diff -u "$WORK/$flavour.$case.docker.files" "$WORK/$flavour.$case.builder.files" > "$WORK/$flavour.$case.files.diff" || true
    diff -u "$WORK/$flavour.$case.docker.config" "$WORK/$flavour.$case.builder.config" > "$WORK/$flavour.$case.config.diff" || true
    same_history "$WORK/$flavour.$case.docker.history" "$WORK/$flavour.$case.builder.history" > "$WORK/$flavour.$case.history.diff" || true
    if [ ! -s "$WORK/$flavour.$case.files.diff" ] && [ ! -s "$WORK/$flavour.$case.config.diff" ] && [ ! -s "$WORK/$flavour.$case.history.diff" ]; then
      echo "same    $flavour $case ($(wc -l < "$WORK/$flavour.$case.builder.files") paths)"
    else
      echo "DIFFERS $flavour $case"; cat "$WORK/$flavour.$case.files.diff" "$WORK/$flavour.$case.config.diff" "$WORK/$flavour.$case.history.diff" | head -${DIFF_LINES:-40}
      status=1
    fi
  done
done
exit $status
