//! The pest parser generated from `frontend-grammar/dockerfile.pest`.

#![allow(missing_docs)]

#[derive(pest_derive::Parser)]
#[grammar = "../../frontend-grammar/dockerfile.pest"]
pub(crate) struct DockerfileGrammar;
