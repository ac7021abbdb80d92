//! Progress of transfers, reported per blob. The CLI renders it (bars on a terminal, one line
//! per event otherwise); library users can ignore it with [`NoProgress`].

use std::io::Write;

use oci::Digest;

/// Receives transfer events. Called from several tasks at once.
pub trait Progress: Send + Sync {
    /// A blob transfer begins (`action`: "Downloading", "Pushing").
    fn start(&self, digest: &Digest, size: u64, action: &str);
    /// `done` of `total` bytes have moved.
    fn advance(&self, digest: &Digest, done: u64, total: u64);
    /// The blob is finished (`status`: "Pull complete", "Already exists", "Pushed",
    /// "Layer already exists", "Mounted from …").
    fn finish(&self, digest: &Digest, status: &str);
    /// A free-form message ("Digest: …", "Status: …").
    fn message(&self, text: &str);
}

/// Ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &Digest, _: u64, _: &str) {}
    fn advance(&self, _: &Digest, _: u64, _: u64) {}
    fn finish(&self, _: &Digest, _: &str) {}
    fn message(&self, _: &str) {}
}

/// One line per blob start and finish on stderr (logs, pipes).
pub struct LineProgress;

impl Progress for LineProgress {
    fn start(&self, digest: &Digest, size: u64, action: &str) {
        let _ = writeln!(std::io::stderr(), "{}: {action} ({size} bytes)", digest.short());
    }
    fn advance(&self, _: &Digest, _: u64, _: u64) {}
    fn finish(&self, digest: &Digest, status: &str) {
        let _ = writeln!(std::io::stderr(), "{}: {status}", digest.short());
    }
    fn message(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}
