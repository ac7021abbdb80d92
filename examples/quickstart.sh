#!/usr/bin/env bash
# Quick start on a fresh Debian machine, as root: install busybox-static, build builder,
# build a busybox base image FROM scratch, build a two-stage app on it, and run the app.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /bin/busybox ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
cargo build --release -q -p cli
builder=./target/release/builder

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r examples/quickstart/busybox "$work/busybox"
cp /bin/busybox "$work/busybox/busybox"

"$builder" build --progress plain -t quickstart/busybox:latest "$work/busybox"
"$builder" build --progress plain -t quickstart/app:1 examples/quickstart/app
"$builder" images
"$builder" run --rm quickstart/app:1
