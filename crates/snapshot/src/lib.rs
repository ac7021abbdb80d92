//! Layers <-> directories: unpack with whiteouts, diff an upper dir into a layer tar, overlay mounts, tree checksums.


#![deny(unsafe_op_in_unsafe_fn)]

// Unpacking layers and assembling roots (issue 4).
pub mod copy;
pub mod error;
pub mod mount;
pub mod snapshots;
pub mod unpack;

pub use mount::{MountGuard, Overlay};
pub use snapshots::Snapshots;
pub use unpack::{Whiteouts, unpack};
// Diffing upper dirs into layers and checksumming trees (issue 5).
pub mod checksum;
pub mod diff;
