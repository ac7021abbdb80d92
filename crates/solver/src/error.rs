//! Errors of the solver, each naming the step and the input that failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{step}: {message}")]
    Step { step: String, message: String },
    #[error("{step}: process \"{command}\" did not complete successfully: exit code {code}{tail}")]
    ExecFailed { step: String, command: String, code: i32, tail: String },
    #[error("{step}: failed to compute cache key: {message}")]
    CacheKey { step: String, message: String },
    #[error("build cancelled")]
    Cancelled,
    #[error("invalid build graph: {0}")]
    Graph(#[from] graph::GraphError),
    #[error("layer: {0}")]
    Diff(#[from] snapshot::diff::DiffError),
    #[error("checksum: {0}")]
    Checksum(#[from] snapshot::checksum::ChecksumError),
    #[error("{0}")]
    Other(String),
}

impl SolveError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SolveError {
        let path = path.into();
        move |source| SolveError::Io { op, path, source }
    }
    pub fn step(step: impl Into<String>, message: impl Into<String>) -> SolveError {
        SolveError::Step { step: step.into(), message: message.into() }
    }
}

pub type Result<T, E = SolveError> = std::result::Result<T, E>;
