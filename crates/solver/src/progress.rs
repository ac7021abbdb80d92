//! Progress events: what the CLI (or the gRPC server) renders while a build runs.

use std::sync::Arc;
use std::time::Duration;

use graph::VertexDigest;

/// One thing that happened to a vertex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The vertex started work (or a cache lookup that will report `Cached`).
    Started { vertex: VertexDigest, description: String },
    /// The vertex's result came from the cache; nothing ran.
    Cached { vertex: VertexDigest },
    /// The vertex runs although a cache had a result for the same step: `reason` says what
    /// changed (`src/app.py: content changed`, `build arg VERSION changed`, `--no-cache`);
    /// `earlier` is the step that ran first when the change came from it (shown as its `#N`).
    CacheMiss { vertex: VertexDigest, reason: String, earlier: Option<VertexDigest> },
    /// Output of the vertex's process (stdout and stderr interleaved, as written).
    Log { vertex: VertexDigest, bytes: Vec<u8> },
    /// The vertex finished.
    Done { vertex: VertexDigest, elapsed: Duration },
    /// The vertex failed; `error` says why.
    Failed { vertex: VertexDigest, error: String, elapsed: Duration },
    /// A build-level step outside the graph (exporting layers, writing the image, tagging).
    Note { message: String },
}

/// Where events go. Must be cheap and never block for long: it is called from worker threads.
pub type ProgressSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> ProgressSink {
    Arc::new(|_| {})
}
