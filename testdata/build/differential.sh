#!/usr/bin/env bash
# Differential check against BuildKit: builds every case in testdata/build/differential/ with
# builder and with `docker build` (BuildKit, Debian's docker.io), then compares the final
# filesystems (path, type, mode, uid/gid, size, content hash, link target; never mtime) and the
# image configs (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
# StopSignal, Healthcheck, Shell, OnBuild). Prints one line per case; exits 1 on a difference.
#
#   testdata/build/differential.sh [CASE…]      (needs root and a running dockerd)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILDER=${BUILDER:-$ROOT/target/debug/builder}
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
WORK=$(mktemp -d /tmp/differential.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The same base image on both sides.
mkdir -p "$WORK/rootfs"/{bin,etc,tmp,root,proc,sys,dev,home}
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$WORK/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$WORK/rootfs/etc/group"
tar -C "$WORK/rootfs" -cf "$WORK/base.tar" .
"$BUILDER" --root "$WORK/root" import "$WORK/base.tar" busybox:diff > /dev/null
"$DOCKER" import "$WORK/base.tar" busybox:diff > /dev/null

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
    print("\n".join(sorted(rows)))
PY
}

config() { # JSON of the runtime config fields, normalized
  python3 -c '
import json, sys
c = json.load(sys.stdin)
c = c.get("config") or c.get("Config") or {}
keys = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild"]
print(json.dumps({k: (c.get(k) or None) for k in keys}, sort_keys=True, indent=1))'
}

status=0
cases=${*:-$(ls "$HERE/differential")}
for case in $cases; do
  dir="$HERE/differential/$case"
  "$BUILDER" --root "$WORK/root" build -q -f "$dir/Dockerfile" -t "diff-$case" --output "type=tar,dest=$WORK/$case.builder.tar" "$dir/ctx" > /dev/null
  "$BUILDER" --root "$WORK/root" build -q -f "$dir/Dockerfile" -t "diff-$case" "$dir/ctx" > /dev/null
  DOCKER_BUILDKIT=1 "$DOCKER" build -q --network host -f "$dir/Dockerfile" -t "diff-$case" "$dir/ctx" > /dev/null
  cid=$("$DOCKER" create "diff-$case" true)
  "$DOCKER" export "$cid" > "$WORK/$case.docker.tar"
  "$DOCKER" rm "$cid" > /dev/null
  listing "$WORK/$case.builder.tar" > "$WORK/$case.builder.files"
  listing "$WORK/$case.docker.tar" > "$WORK/$case.docker.files"
  python3 -c '
import json, sys
root, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(root + "/index.json"))
m = [d for d in idx["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == "docker.io/library/" + tag][0]
man = json.load(open(root + "/blobs/sha256/" + m["digest"].split(":")[1]))
print(open(root + "/blobs/sha256/" + man["config"]["digest"].split(":")[1]).read())' "$WORK/root" "diff-$case:latest" | config > "$WORK/$case.builder.config"
  "$DOCKER" image inspect "diff-$case" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)[0]))' | config > "$WORK/$case.docker.config"
  if diff -u "$WORK/$case.docker.files" "$WORK/$case.builder.files" > "$WORK/$case.files.diff" && diff -u "$WORK/$case.docker.config" "$WORK/$case.builder.config" > "$WORK/$case.config.diff"; then
    echo "same    $case ($(wc -l < "$WORK/$case.builder.files") paths)"
  else
    echo "DIFFERS $case"; cat "$WORK/$case.files.diff" "$WORK/$case.config.diff" 2>/dev/null | head -40
    status=1
  fi
done
exit $status
