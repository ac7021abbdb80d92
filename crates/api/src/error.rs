//! What can go wrong on either side of the API.

use std::path::PathBuf;

/// An error of the API client or server.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `--addr` / `--listen` is not `tcp://HOST:PORT` or `unix:///PATH`.
    #[error("invalid address {addr:?}: {reason} (want tcp://HOST:PORT or unix:///PATH)")]
    BadAddress { addr: String, reason: String },
    /// Reading or writing a local file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The context has an entry this protocol cannot carry (a socket, a non-UTF-8 name, …).
    #[error("build context: {path}: {reason}")]
    Context { path: String, reason: String },
    /// Connecting to the server failed.
    #[error("cannot connect to builder at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// TLS material could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server answered with an error status.
    #[error("{}", status_text(.0))]
    Status(#[from] tonic::Status),
    /// The server broke the protocol (a message out of order, a missing result).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A request the client cannot send as given (a bad `--output` value, …).
    #[error("{0}")]
    Invalid(String),
    /// The user interrupted a remote build (Ctrl-C); the server cancels it.
    #[error("build cancelled: interrupted")]
    Interrupted,
    /// Serving failed (bind, accept, …).
    #[error("serve: {0}")]
    Serve(String),
}

impl ApiError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ApiError {
        let path = path.into();
        move |source| ApiError::Io { action, path, source }
    }

    /// The gRPC status code when the server rejected the call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ApiError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

fn status_text(s: &tonic::Status) -> String {
    use tonic::Code;
    let what = match s.code() {
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "server busy",
        Code::Unavailable => "server unavailable",
        Code::InvalidArgument => "invalid request",
        Code::NotFound => "not found",
        Code::Cancelled => "cancelled",
        Code::Aborted => "build failed",
        Code::Unimplemented => "not supported by this server",
        _ => "remote error",
    };
    if s.code() == Code::Unavailable || s.code() == Code::Unknown {
        // Transport failures arrive as Unavailable/Unknown with the hyper/h2 error as message.
        return format!("{what}: {}{}", s.message(), transport_hint(s.message()));
    }
    format!("{what}: {}", s.message())
}

/// A hint for the common mistake of speaking plain gRPC to a TLS server (or the reverse).
pub(crate) fn transport_hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("frame") || m.contains("connection reset") || m.contains("broken pipe") || m.contains("closed") || m.contains("tls") || m.contains("h2 protocol error") {
        " (if the server uses TLS, set BUILDER_TLS_CACERT to its CA certificate; if it uses mutual TLS, also BUILDER_TLS_CERT and BUILDER_TLS_KEY)"
    } else {
        ""
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;
