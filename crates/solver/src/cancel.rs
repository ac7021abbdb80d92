//! Stopping a build: a flag every step checks, and the containers it started, killed at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cancels a build: marks it cancelled and kills every container it started.
#[derive(Default)]
pub struct Cancel {
    cancelled: AtomicBool,
    pids: Mutex<Vec<i32>>,
}

impl Cancel {
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Ok(pids) = self.pids.lock() {
            for p in pids.iter() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    /// Un-cancels, for a retry of a solve that stopped its own steps after a failure (not the
    /// user's cancel: a cancelled solve is never retried).
    pub fn reset(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
    pub(crate) fn add(&self, pid: i32) {
        if let Ok(mut p) = self.pids.lock() {
            p.push(pid);
        }
        if self.is_cancelled() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
    pub(crate) fn remove(&self, pid: i32) {
        if let Ok(mut p) = self.pids.lock() {
            p.retain(|x| *x != pid);
        }
    }
}
