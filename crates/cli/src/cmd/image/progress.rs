//! Rendering pull/push progress: a bar per layer on a terminal, one line per event otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci::Digest;
use registry::{LineProgress, NoProgress, Progress};

/// The progress view for this process's stderr.
pub fn progress_for(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(NoProgress)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(LineProgress)
    }
}

/// One indicatif bar per blob.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Mutex::new(HashMap::new()) }
    }

    fn bar(&self, digest: &Digest, size: u64) -> ProgressBar {
        let Ok(mut bars) = self.bars.lock() else { return ProgressBar::hidden() };
        bars.entry(digest.clone())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(digest.short().to_string());
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn start(&self, digest: &Digest, size: u64, action: &str) {
        self.bar(digest, size).set_message(action.to_string());
    }
    fn advance(&self, digest: &Digest, done: u64, total: u64) {
        let bar = self.bar(digest, total);
        bar.set_length(total);
        bar.set_position(done);
    }
    fn finish(&self, digest: &Digest, status: &str) {
        let bar = self.bar(digest, 0);
        bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
        bar.finish_with_message(status.to_string());
    }
    fn message(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}

/// Ends the bar area with a newline so what follows starts on its own line.
pub fn end(quiet: bool) {
    if !quiet && std::io::stderr().is_terminal() {
        eprintln!();
    }
}
