//! Errors of the Dockerfile frontend. Every error about the Dockerfile says
//! where: `Dockerfile:LINE:COL: message`, then the offending line.

use std::fmt;
use std::path::PathBuf;

/// A position in the Dockerfile: 1-based line, 1-based column (characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Span {
    pub line: usize,
    pub column: usize,
}

/// What kind of mistake a [`DockerfileError`] reports, for callers to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not text: invalid UTF-8, NUL bytes, a line over the length limit.
    Encoding,
    /// No instruction at all.
    Empty,
    /// A parser directive that is repeated or has a bad value.
    Directive,
    /// The text cannot be read as an instruction (bad JSON array, heredoc, ...).
    Syntax,
    /// An instruction name that does not exist.
    UnknownInstruction,
    /// A flag the instruction does not have, or a bad flag value.
    Flag,
    /// Wrong number or shape of arguments.
    Arguments,
    /// An instruction before the first FROM, other than ARG.
    NoStage,
    /// Variable expansion failed.
    Expansion,
}

/// A mistake in a Dockerfile, with its position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DockerfileError {
    pub kind: ErrorKind,
    pub file: String,
    pub span: Span,
    pub message: String,
    /// The text of the offending line (without its line ending).
    pub line_text: String,
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.span.line, self.span.column, self.message)?;
        if self.span.line > 0 {
            write!(f, "\n {:>4} | {}", self.span.line, self.line_text)?;
        }
        Ok(())
    }
}

impl std::error::Error for DockerfileError {}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile is wrong at a position.
    #[error("{0}")]
    Dockerfile(Box<DockerfileError>),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The Dockerfile error, if this is one.
    pub fn dockerfile(&self) -> Option<&DockerfileError> {
        match self {
            Error::Dockerfile(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DockerfileError> for Error {
    fn from(e: DockerfileError) -> Error {
        Error::Dockerfile(Box::new(e))
    }
}

/// The text of a Dockerfile with its line starts, to turn byte offsets into
/// positions and show lines in errors.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap<'a> {
    pub text: &'a str,
    pub file: &'a str,
    line_starts: Vec<usize>,
    /// All ASCII: a column is a byte distance.
    ascii: bool,
    first_nul: Option<usize>,
    /// The line index found last: positions are mostly asked for in order,
    /// so the next one is usually on that line or the one after.
    hint: std::cell::Cell<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> SourceMap<'a> {
        let (line_starts, first_nul) = line_starts_and_nul(text.as_bytes());
        SourceMap { text, file, line_starts, ascii: text.is_ascii(), first_nul, hint: std::cell::Cell::new(0) }
    }

    /// Where the first NUL byte is, if any.
    pub(crate) fn first_nul(&self) -> Option<usize> {
        self.first_nul
    }

    /// The start of the first line (without its line feed) longer than `max` bytes.
    pub(crate) fn first_line_longer_than(&self, max: usize) -> Option<usize> {
        let ends = self.line_starts.iter().skip(1).map(|&s| s - 1).chain(std::iter::once(self.text.len()));
        self.line_starts.iter().zip(ends).find(|&(&start, end)| end - start > max).map(|(&start, _)| start)
    }

    /// The 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        let starts = &self.line_starts;
        let on = |i: usize| starts.get(i).is_some_and(|&s| s <= offset) && starts.get(i + 1).is_none_or(|&n| offset < n);
        let hint = self.hint.get();
        let index = if on(hint) {
            hint
        } else if on(hint + 1) {
            hint + 1
        } else {
            starts.partition_point(|&s| s <= offset) - 1
        };
        self.hint.set(index);
        index + 1
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn span(&self, offset: usize) -> Span {
        let offset = offset.min(self.text.len());
        let line = self.line(offset);
        let start = self.line_starts[line - 1];
        if self.ascii {
            return Span { line, column: offset - start + 1 };
        }
        let mut o = offset;
        while !self.text.is_char_boundary(o) {
            o -= 1;
        }
        let column = self.text[start..o].chars().count() + 1;
        Span { line, column }
    }

    pub(crate) fn line_text(&self, line: usize) -> &'a str {
        if line == 0 || line > self.line_starts.len() {
            return "";
        }
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).map(|e| e - 1).unwrap_or(self.text.len());
        self.text[start..end.max(start)].trim_end_matches('\r')
    }

    pub(crate) fn error(&self, kind: ErrorKind, span: Span, message: impl Into<String>) -> DockerfileError {
        DockerfileError {
            kind,
            file: self.file.to_string(),
            span,
            message: message.into(),
            line_text: self.line_text(span.line).to_string(),
        }
    }
}

/// The offsets where lines start, and the first NUL byte, in one pass that
/// looks at eight bytes at a time (most of them hold neither).
fn line_starts_and_nul(b: &[u8]) -> (Vec<usize>, Option<usize>) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut starts = Vec::with_capacity(b.len() / 32 + 1);
    starts.push(0);
    let mut nul = None;
    let mut check = |i: usize, c: u8, starts: &mut Vec<usize>| {
        if c == b'\n' {
            starts.push(i + 1);
        } else if c == 0 && nul.is_none() {
            nul = Some(i);
        }
    };
    let chunks = b.chunks_exact(8);
    let tail_at = b.len() - chunks.remainder().len();
    for (n, chunk) in chunks.enumerate() {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { continue };
        let v = u64::from_le_bytes(bytes);
        if has_zero(v) || has_zero(v ^ (ONES * u64::from(b'\n'))) {
            for (j, &c) in chunk.iter().enumerate() {
                check(n * 8 + j, c, &mut starts);
            }
        }
    }
    for (j, &c) in b[tail_at..].iter().enumerate() {
        check(tail_at + j, c, &mut starts);
    }
    (starts, nul)
}
