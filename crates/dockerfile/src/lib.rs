//! The Dockerfile frontend: Dockerfile text -> syntax tree (pest grammar in
//! `frontend-grammar/dockerfile.pest`) -> typed instructions; shell-word
//! expansion; `.dockerignore`; lowering to a build graph.
//!
//! It reads Dockerfiles exactly as BuildKit does. It does not run anything,
//! fetch images or touch the build context beyond reading `.dockerignore`.

#![deny(unsafe_code)]

pub mod ast;
mod error;
mod grammar;
pub mod shell;
mod words;

/// Lowering typed instructions to a `graph::Definition` (owned by the build work, issue 5).
pub mod lower;

pub use error::{DockerfileError, Error, ErrorKind, Span};
pub use words::go_quote;
