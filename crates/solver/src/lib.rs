//! Schedules the build graph in parallel, the cache index, op execution and image export.
//!
//! The solver takes a `graph::Definition` and the vertices wanted, runs every vertex whose
//! inputs are ready (up to a parallelism limit), and reuses results from the persistent cache
//! index when a vertex's cache key was seen before. It knows nothing about Dockerfiles: the
//! frontend lowers them to the graph, and the image config travels beside it.
//!
//! It is not a container runtime (that is `runtime`), not an image store (`oci`) and not a
//! layer format library (`snapshot`); it drives them.
//!
//! # Using it
//!
//! - Once per process, while it has one thread: [`view::enter_private_mount_namespace`], so
//!   every mount of the build vanishes with the process.
//! - [`Solver::new`]`(root, Arc::new(ops::image::StoreImages::new(store, root)))`; share it between
//!   builds. RUN sandboxes start from this process (the runtime is thread-safe); a helper
//!   command such as `builder __build-exec` ([`solve::DEFAULT_EXEC_HELPER`]) can be set instead.
//! - [`Solver::solve`] with a [`SolveRequest`] (definition, targets, local dirs by name,
//!   secrets, parallelism, a [`ProgressSink`], a [`Cancel`] to stop it) gives every
//!   solved vertex: its cache key and [`Output`] (a [`Snapshot`]: layer directories, bottom first).
//!   [`Solver::solve_with`] adds what the user lends the build ([`Grants`]: `--ssh` agents, see
//!   [`ssh`], and `--allow security.insecure`); git sources ([`ops::git`]) need the host's `git`.
//! - The ops live in [`ops`], one module each (exec, file, merge, git, http, image, local),
//!   each with its cache key next to its execution; [`solve`] only schedules them.
//! - [`export::export_image_with_times`] writes the target's snapshot and the frontend's
//!   `graph::image::ImageSpec` as an image into the `oci::Store`; [`export::export_local`] and
//!   [`export::export_tar`] write the plain filesystem.
//! - [`CacheIndex::prune`] and [`CacheIndex::usage`] are `builder prune` and `builder du`.
//!
//! On disk (`<root>/cache/`, see [`cache`]): records by cache key, layer directories, blob
//! records per compression, cache-mount directories, stat caches, locks.

#![deny(unsafe_code)]

pub mod cache;
pub mod cancel;
pub mod error;
pub mod export;
pub mod ops;
pub mod progress;
pub mod provenance;
pub mod remote;
pub mod solve;
pub mod ssh;
pub mod view;

pub use cache::{CacheIndex, CacheKey, LayerRef, Snapshot};
pub use cancel::Cancel;
pub use error::{Result, SolveError};
pub use progress::{Event, ProgressSink};
pub use solve::{Grants, ImageSource, Output, SolveRequest, Solved, Solver};
