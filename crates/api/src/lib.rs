//! The gRPC API of `builder serve`: the generated protobuf code, the client that the CLI uses when
//! `--addr` / `$BUILDER_HOST` is set, and the server that runs builds on this machine's engine.
//!
//! A remote build is the local build with a different transport: the server calls the same
//! solver through an [`engine::Engine`], the client renders the same [`solver::Event`]s the local
//! build emits, and only the files of the context the build reads and that changed since the
//! last build of that context cross the network ([`context`]). File outputs stream back
//! ([`output`]) and the client's ssh agents are forwarded ([`ssh_forward`]) inside the same
//! build session.
//!
//! [`local::LocalEngine`] is the one build pipeline of the project (parse, lower, solve, export,
//! tag, push): a local `builder build` calls [`local::LocalEngine::run_build`], a server calls it
//! through [`engine::Engine`]. The crate does not itself parse Dockerfiles, solve graphs or store
//! images; it wires those crates together and adds transport, context sync, file outputs, agent
//! forwarding, auth and lifecycle.

#![deny(unsafe_code)]

/// Code generated from `proto/builder/v1/control.proto`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("builder.v1");
}

pub mod addr;
pub mod auth;
pub mod client;
pub mod context;
pub mod convert;
pub mod engine;
pub mod error;
pub mod local;
pub mod output;
pub mod server;
mod shared_cache;
pub mod ssh_forward;

pub use addr::Address;
pub use engine::{BuildFlags, BuildJob, BuildOptions, BuildOutcome, Engine, EngineError};
pub use error::{ApiError, Result};

/// gRPC status codes, for callers that match on [`ApiError::code`].
pub use tonic::Code;
