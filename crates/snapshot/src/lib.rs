//! Layers <-> directories: unpack with whiteouts, diff an upper dir into a layer tar, overlay mounts, tree checksums.


#![deny(unsafe_op_in_unsafe_fn)]

// Unpacking layers and assembling roots (issue 4).
pub mod mount;
pub mod unpack;
// Diffing upper dirs into layers and checksumming trees (issue 5).
pub mod checksum;
pub mod diff;
