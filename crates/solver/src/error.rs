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
    /// The step `vertex` failed with `error`: callers find the step (its Dockerfile location)
    /// by its digest, never by matching the message.
    #[error("{error}")]
    AtVertex { vertex: graph::VertexDigest, error: Box<SolveError> },
}

impl SolveError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SolveError {
        let path = path.into();
        move |source| SolveError::Io { op, path, source }
    }
    pub fn step(step: impl Into<String>, message: impl Into<String>) -> SolveError {
        SolveError::Step { step: step.into(), message: message.into() }
    }

    /// This error as the failure of step `vertex` (a cancellation stays a cancellation, and an
    /// error that names its step already keeps the one it names).
    pub fn at(self, vertex: graph::VertexDigest) -> SolveError {
        match self {
            SolveError::Cancelled | SolveError::AtVertex { .. } => self,
            error => SolveError::AtVertex { vertex, error: Box::new(error) },
        }
    }

    /// The step that failed, when the error is a step's failure.
    pub fn vertex(&self) -> Option<graph::VertexDigest> {
        match self {
            SolveError::AtVertex { vertex, .. } => Some(*vertex),
            _ => None,
        }
    }
}

pub type Result<T, E = SolveError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_failure_carries_its_vertex_and_reads_as_before() {
        let (a, b) = (graph::VertexDigest([1; 32]), graph::VertexDigest([2; 32]));
        let e = SolveError::step("[2/3] RUN make", "exit 2").at(a).at(b);
        assert_eq!((e.vertex(), e.to_string()), (Some(a), "[2/3] RUN make: exit 2".to_string()), "the innermost step wins");
        assert!(matches!(SolveError::Cancelled.at(a), SolveError::Cancelled));
        assert_eq!(SolveError::Other("x".into()).vertex(), None);
    }
}
