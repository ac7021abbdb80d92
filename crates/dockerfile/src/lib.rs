//! Dockerfile text -> AST (pest) -> typed instructions; shell-word expansion; .dockerignore; lowering to a build graph.

#![deny(unsafe_code)]

/// Lowering typed instructions to a `graph::Definition` (owned by the build work, issue 5).
pub mod lower;
