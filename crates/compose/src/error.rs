use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A place in a compose file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<Path>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Why a compose project could not be loaded. Every variant about the file's content names the
/// place (`file:line:col`) and, where there is one, the key path (`services.web.ports[0]`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no compose file (compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml) in {} or any parent directory; name one with -f", dir.display())]
    NoComposeFile { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{loc}: {message}")]
    Yaml { loc: Loc, message: String },
    #[error("{loc}: {path}: {message}")]
    Interpolation { loc: Loc, path: String, message: String },
    #[error("{loc}: {path}: {message}")]
    Key { loc: Loc, path: String, message: String },
    #[error("{}:{line}: {message}", file.display())]
    EnvFile { file: PathBuf, line: usize, message: String },
    #[error("{loc}: {path}: {message}")]
    Invalid { loc: Loc, path: String, message: String },
    #[error("depends_on cycle: {}", cycle.join(" -> "))]
    DependencyCycle { cycle: Vec<String> },
    #[error("invalid project name {name:?}: it must contain only lowercase letters, digits, dashes and underscores, and start with a letter or digit")]
    ProjectName { name: String },
    #[error("no such service: {name}")]
    NoSuchService { name: String },
}
