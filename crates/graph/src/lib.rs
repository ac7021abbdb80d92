//! The content-addressed build DAG: ops, vertices and definition digests. No I/O.
//!
//! A frontend (the Dockerfile lowering) describes *what* to build as a [`Definition`]:
//! vertices, each an [`Op`] plus the digests of its inputs. A vertex's [`VertexDigest`] is the
//! blake3 hash of a canonical encoding of its op and its inputs' digests, so two frontends that
//! ask for the same work get the same vertex, and the solver runs it once.
//!
//! This crate is not the solver: it does not know how to run an op, where files are, or what a
//! cache key is. It does not know Dockerfiles either. Image config changes (ENV, CMD, …) travel
//! beside the graph as an [`image::ImageSpec`], not as vertices.

#![deny(unsafe_code)]

pub mod chmod;
pub mod definition;
pub mod image;
pub mod op;

pub use chmod::{Chmod, ChmodError};
pub use definition::{Definition, DefinitionBuilder, GraphError, Vertex, VertexDigest, VertexMeta, value_digest};
pub use op::*;
