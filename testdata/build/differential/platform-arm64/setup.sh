# Debian's arm64 busybox, fetched by testdata/cross/setup.sh.
cp /var/cache/builder-tests/busybox-arm64 busybox
