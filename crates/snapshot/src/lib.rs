//! Layers <-> directories: unpack with whiteouts, diff an upper dir into a layer tar, overlay mounts, tree checksums.


