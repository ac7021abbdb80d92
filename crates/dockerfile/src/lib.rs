//! Dockerfile text -> AST (pest) -> typed instructions; shell-word expansion; .dockerignore; lowering to a build graph.

#![deny(unsafe_code)]
