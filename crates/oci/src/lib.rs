//! Images on this machine: image references (`busybox`, `host:5000/app:1@sha256:…`) with Docker's
//! normalization, digests, the host platform, and the local content store — an OCI image layout at
//! `--root` (`oci-layout`, `index.json`, `blobs/sha256/`) that `skopeo` and `umoci` read as is.
//!
//! The store is the one place image bytes live. Every blob is hashed while it is written, verified
//! against its digest before it becomes visible, and moved into place with fsync + rename, so a
//! `kill -9` at any moment leaves a usable store. Tags live in `index.json` as
//! `org.opencontainers.image.ref.name` annotations, updated under a file lock.
//!
//! This crate does no networking (that is `registry`), no unpacking of layers onto disk (that is
//! `snapshot`) and no building. It does know the image formats moved between those crates:
//! creating a gzip layer in parallel ([`layer`]), `import` of a rootfs tarball, and the
//! `docker save` / OCI archive formats ([`archive`]).
//!
//! All functions are synchronous and blocking; call them from a blocking thread in async code.

#![deny(unsafe_code)]

pub mod archive;
mod digest;
mod error;
pub mod import;
pub mod layer;
pub mod media;
mod platform;
mod reference;
mod store;

pub use digest::Digest;
pub use error::{Error, Result};
pub use platform::Platform;
pub use reference::Reference;
pub use store::{BlobInfo, BlobSource, BlobWriter, GcStats, LocalImage, Store, choose_platform};

/// The OCI JSON types (manifest, index, config, descriptor), re-exported so callers use one version.
pub use oci_spec::image as spec;

/// Annotation that names a tag in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Annotation on a tag pulled through a multi-platform index: the index digest, which is the
/// digest the registry knows the image by (what `inspect` shows in RepoDigests).
pub const REPO_DIGEST_ANNOTATION: &str = "dev.builder.repo.digest";
