//! Schedules the build graph in parallel, the cache index, op execution and image export.
//!
//! The solver takes a `graph::Definition` and the vertices wanted, runs every vertex whose
//! inputs are ready (up to a parallelism limit), and reuses results from the persistent cache
//! index when a vertex's cache key was seen before. It knows nothing about Dockerfiles: the
//! frontend lowers them to the graph, and the image config travels beside it.
//!
//! It is not a container runtime (that is `runtime`), not an image store (`oci`) and not a
//! layer format library (`snapshot`); it drives them.

#![deny(unsafe_code)]

pub mod base;
pub mod cache;
pub mod context;
pub mod error;
pub mod exec;
pub mod export;
pub mod fileop;
pub mod http;
pub mod progress;
pub mod solve;
pub mod view;

pub use cache::{CacheIndex, CacheKey, LayerRef, Snapshot};
pub use error::{Result, SolveError};
pub use progress::{Event, ProgressSink};
pub use solve::{ImageSource, Output, SolveRequest, Solved, Solver};
