//! The shared build cache: the artifact a build exports with `--cache-to` and imports with
//! `--cache-from`, and moving it through a registry, a local OCI layout directory, or inline in
//! a pushed image.
//!
//! The artifact is an OCI image manifest whose `config` is a [`CacheConfig`] (media type
//! [`CONFIG_MEDIA_TYPE`]) and whose `layers` are the very layer blobs the built images use (so a
//! cache exported next to an image uploads nothing twice), then a provenance blob. The config
//! maps machine-independent cache keys to their results: each entry's top layer in a list of
//! layers that names each layer once (blob index, diffID, parent): all a hit needs without
//! downloading anything. The steps' [`Provenance`] (so a miss can be explained) is in the
//! provenance blob, read only when a step misses.
//!
//! - [`CacheFrom`] / [`CacheTo`]: the `--cache-from` / `--cache-to` values, as buildx spells them.
//! - [`CacheImport`]: loads every `--cache-from` source once (a fault is a warning, never a wrong
//!   result), answers lookups by key and by step, and fetches a layer blob only when asked.
//! - [`CacheExport`]: writes entries to a registry (HEAD first, cross-repository mounts, the
//!   manifest last), to a local layout, or as the inline annotation of an image manifest.
//!
//! This crate knows nothing of the solver: the solver gives it entries and asks it for entries.

#![deny(unsafe_code)]

mod error;
mod export;
mod format;
mod import;
mod layout;
mod spec;

pub use error::{Error, Result};
pub use export::{CacheExport, ExportStats};
pub use format::{
    json_of, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, CacheConfig, CacheEntry, CachedResult, FORMAT_VERSION, INLINE_ANNOTATION, INLINE_PROVENANCE_ANNOTATION, LayerBlob,
    PROVENANCE_MEDIA_TYPE, Provenance, ProvenanceDoc,
};
pub use import::{BlobLocation, CacheImport, ImportWarning};
pub use spec::{CacheFrom, CacheTarget, CacheTo, Compression, Mode};
