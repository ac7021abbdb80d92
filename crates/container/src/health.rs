//! Health checks: the image's HEALTHCHECK or `--health-*`, run by the container's supervisor
//! (the shim, or the foreground CLI) as an `exec` into the container, every interval, with
//! Docker's rules: a probe that exits 0 makes the container healthy; `retries` failures in a
//! row make it unhealthy, except failures while it is still starting inside its start period.
//! The result is `health.json` in the container's directory (`State.Health` of `inspect`, the
//! `(healthy)` of `ps`), and a `health_status: …` event whenever the status changes.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use runtime::containers::{ContainerState, ContainerStore};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::{ExecOptions, exec_spec};
use crate::settings::{Healthcheck, Settings};

const FILE: &str = "health.json";
/// Docker keeps the last five probes and 4 KiB of each one's output.
const MAX_LOG: usize = 5;
const MAX_OUTPUT: usize = 4096;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;

/// `starting`, `healthy` or `unhealthy`, as Docker spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// `State.Health` of `docker inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

/// One probe's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

impl Health {
    /// The recorded health of the container in `dir`; None if it has no check (or none ran yet).
    pub fn load(dir: &Path) -> Option<Health> {
        serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
        let body = serde_json::to_vec_pretty(self).map_err(|e| Error::io("encoding", &path, std::io::Error::other(e)))?;
        std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))
    }
}

/// What a container's health check runs and how often, with Docker's defaults filled in.
#[derive(Debug, Clone)]
struct Plan {
    command: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    /// Between probes while starting, inside the start period (Docker 25's start interval).
    start_interval: Option<Duration>,
    retries: u32,
}

impl Plan {
    /// None for no check (`NONE`, or nothing in the image nor the flags).
    fn of(h: &Healthcheck) -> Option<Plan> {
        let command = match h.test.first().map(String::as_str) {
            Some("CMD") => h.test[1..].to_vec(),
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
            _ => return None,
        };
        if command.is_empty() {
            return None;
        }
        let or = |ns: i64, default: Duration| if ns > 0 { Duration::from_nanos(ns as u64) } else { default };
        Some(Plan {
            command,
            interval: or(h.interval, DEFAULT_INTERVAL),
            timeout: or(h.timeout, DEFAULT_TIMEOUT),
            start_period: or(h.start_period, Duration::ZERO),
            start_interval: (h.start_interval > 0).then(|| Duration::from_nanos(h.start_interval as u64)),
            retries: if h.retries > 0 { h.retries as u32 } else { DEFAULT_RETRIES },
        })
    }
}

/// The health checker of a running container; stopped (and waited for) when dropped.
pub(crate) struct Checker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts checking the health of the container that just started (`state` has its pid), if
/// it has a health check: its status is `starting` until the first probe says otherwise.
pub(crate) fn start(cstore: &ContainerStore, state: &ContainerState) -> Option<Checker> {
    let dir = cstore.dir_of(&state.id);
    let settings = Settings::load(&dir).ok()?;
    let plan = Plan::of(settings.config.healthcheck.as_ref()?)?;
    let pid = state.pid?;
    let mut health = Health::load(&dir).unwrap_or(Health { status: HealthStatus::Starting, failing_streak: 0, log: Vec::new() });
    health.status = HealthStatus::Starting;
    health.failing_streak = 0;
    if let Err(e) = health.save(&dir) {
        tracing::warn!("recording the health of {}: {e}", state.name);
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let cstore = cstore.clone();
    let state = state.clone();
    let thread = std::thread::spawn(move || check_until_stopped(&cstore, &state, &dir, pid, &plan, health, &stopped));
    Some(Checker { stop: Some(stop), thread: Some(thread) })
}

fn check_until_stopped(cstore: &ContainerStore, state: &ContainerState, dir: &Path, pid: i32, plan: &Plan, mut health: Health, stopped: &mpsc::Receiver<()>) {
    let started = Instant::now();
    // As Docker: the first probe runs one interval after the start.
    let next = |health: &Health| match plan.start_interval {
        Some(i) if health.status == HealthStatus::Starting && started.elapsed() < plan.start_period => i,
        _ => plan.interval,
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(next(&health)) {
        let probe = run_probe(dir, state, pid, plan);
        let before = health.status;
        if probe.exit_code == 0 {
            health.failing_streak = 0;
            health.status = HealthStatus::Healthy;
        } else if health.status != HealthStatus::Starting || started.elapsed() >= plan.start_period {
            health.failing_streak += 1;
            if health.failing_streak >= plan.retries {
                health.status = HealthStatus::Unhealthy;
            }
        }
        health.log.push(probe);
        if health.log.len() > MAX_LOG {
            health.log.remove(0);
        }
        // The container may have ended during the probe: its final record is the supervisor's.
        if stopped.try_recv() != Err(mpsc::TryRecvError::Empty) {
            return;
        }
        // The event first: whoever sees the new status finds its event in the journal.
        if before != health.status {
            crate::shim::journal(cstore, state, &format!("health_status: {}", health.status.as_str()), &[]);
        }
        if let Err(e) = health.save(dir) {
            tracing::warn!("recording the health of {}: {e}", state.name);
        }
    }
}

/// Runs the check once in the container; a probe that cannot run, or runs past the timeout,
/// is a failure with the reason as its output.
fn run_probe(dir: &Path, state: &ContainerState, pid: i32, plan: &Plan) -> Probe {
    let start = crate::now();
    let (exit_code, output) = match probe(dir, state, pid, plan) {
        Ok(r) => r,
        Err(e) => (-1, e.to_string()),
    };
    Probe { start, end: crate::now(), exit_code, output }
}

fn probe(dir: &Path, state: &ContainerState, pid: i32, plan: &Plan) -> Result<(i32, String)> {
    let started = Instant::now();
    let opts = ExecOptions { command: plan.command.clone(), ..Default::default() };
    let spec = exec_spec(dir, &state.id, pid, &opts)?;
    // Each probe writes into a pipe of its own, read here (as Docker's daemon reads an exec's
    // output): no file is shared between probes, nor read before the probe is done with it.
    let (reader, writer) = std::io::pipe().map_err(|e| Error::io("creating", "a pipe for the health probe's output", e))?;
    let err = writer.try_clone().map_err(|e| Error::io("duplicating", "the health probe's output pipe", e))?;
    let output = OutputReader::start(reader);
    let process = runtime::exec(pid, state.cgroup_dirs.clone(), &spec, runtime::Stdio::fds(None, writer.into(), err.into()))?;
    let probe_pid = process.pid();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(process.wait());
    });
    let status = match result.recv_timeout(plan.timeout) {
        Ok(s) => s?,
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(probe_pid), nix::sys::signal::Signal::SIGKILL);
            let _ = result.recv();
            return Ok((-1, format!("Health check exceeded timeout ({})", go_duration(plan.timeout))));
        }
    };
    // The pipe ends when the probe and whatever it left running have closed it; a process
    // left in the background holding it gets what remains of the timeout, no more.
    let output = output.finish(plan.timeout.saturating_sub(started.elapsed()));
    Ok((status.code(), String::from_utf8_lossy(&output).into_owned()))
}

/// Reads a probe's output pipe to its end, keeping the first [`MAX_OUTPUT`] bytes (the rest is
/// read and dropped, so the probe never blocks on a full pipe).
struct OutputReader {
    kept: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    ended: mpsc::Receiver<()>,
}

impl OutputReader {
    fn start(mut pipe: std::io::PipeReader) -> OutputReader {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (end, ended) = mpsc::channel();
        let into = kept.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut k) = into.lock() {
                            let room = MAX_OUTPUT.saturating_sub(k.len());
                            k.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = end.send(());
        });
        OutputReader { kept, ended }
    }

    /// The output once the pipe has ended, or what arrived within `wait` if it has not.
    fn finish(self, wait: Duration) -> Vec<u8> {
        let _ = self.ended.recv_timeout(wait);
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

/// `30s`, `1.5s`, `1m30s`, `500ms` as Go prints a duration.
fn go_duration(d: Duration) -> String {
    units::format_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plans_take_dockers_defaults_and_none_disables() {
        let h = Healthcheck { test: vec!["CMD-SHELL".into(), "test -f /ok".into()], ..Default::default() };
        let p = Plan::of(&h).unwrap();
        assert_eq!(p.command, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!((p.interval, p.timeout, p.retries), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_RETRIES));
        let h = Healthcheck { test: vec!["CMD".into(), "true".into()], interval: 1_000_000_000, retries: 1, ..Default::default() };
        assert_eq!(Plan::of(&h).unwrap().interval, Duration::from_secs(1));
        assert!(Plan::of(&Healthcheck { test: vec!["NONE".into()], ..Default::default() }).is_none());
        assert!(Plan::of(&Healthcheck::default()).is_none());
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s", "as Go prints it, not 90s");
    }
}
