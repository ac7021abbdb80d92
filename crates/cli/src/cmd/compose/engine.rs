//! What every compose command shares: the project, its containers (named as Compose v2 names
//! them, recorded in the project's state file with the config they were made from), and the
//! `builder` commands that act on one container.
//!
//! A container is made, started, stopped and removed by the same `builder run/start/stop/rm`
//! a user types (this binary, re-executed), so compose adds no second container life cycle.
//! Reading states and logs is done in-process from the container store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use runtime::containers::{ContainerState, ContainerStore, Status};
use serde::{Deserialize, Serialize};

use crate::Globals;

/// One container compose made for a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub id: String,
    pub service: String,
    pub number: u32,
    /// `compose run` containers are not part of `up`/`ps`.
    #[serde(default)]
    pub oneoff: bool,
    /// The service's resolved config it was made from: `up` recreates it when this changes.
    pub config: serde_json::Value,
    /// The image ID it was made from: `up` recreates it when the tag moved.
    pub image_id: String,
    /// Compose's labels (`com.docker.compose.project`, `.service`, `.container-number`, …).
    pub labels: BTreeMap<String, String>,
}

/// `<root>/compose/<project>.json`: what compose made for the project.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub containers: Vec<Record>,
    /// The compose files the project was last read from (what `compose ls` shows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_files: Vec<PathBuf>,
}

pub struct Engine<'a> {
    pub globals: &'a Globals,
    pub root: PathBuf,
    pub project: compose::Project,
    pub compatibility: bool,
    pub state: State,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl<'a> Engine<'a> {
    /// Opens the project's state, holding its lock until dropped, so two compose commands on
    /// one project do not interleave.
    pub fn open(globals: &'a Globals, project: compose::Project, compatibility: bool) -> anyhow::Result<Engine<'a>> {
        let root = globals.root();
        let dir = root.join("compose");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join(format!("{}.lock", project.name));
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).with_context(|| format!("opening {}", lock_path.display()))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).with_context(|| format!("locking {}", lock_path.display()))?;
        let path = dir.join(format!("{}.json", project.name));
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut state = state;
        state.config_files = project.files.clone();
        let mut engine = Engine { globals, root, project, compatibility, state, _lock: lock };
        engine.forget_removed()?;
        Ok(engine)
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("compose").join(format!("{}.json", self.project.name))
    }

    /// Writes the state (tmp, fsync, rename).
    pub fn save(&self) -> anyhow::Result<()> {
        let path = self.state_path();
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&self.state)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Drops records of containers removed behind compose's back (`builder rm`).
    fn forget_removed(&mut self) -> anyhow::Result<()> {
        let store = self.store()?;
        let before = self.state.containers.len();
        self.state.containers.retain(|r| store.load(&r.id).is_ok());
        if self.state.containers.len() != before {
            self.save()?;
        }
        Ok(())
    }

    pub fn store(&self) -> anyhow::Result<ContainerStore> {
        Ok(ContainerStore::open(&self.root)?)
    }

    /// The container's current state.
    pub fn container(&self, r: &Record) -> Option<ContainerState> {
        self.store().ok()?.load(&r.id).ok()
    }

    pub fn is_running(&self, r: &Record) -> bool {
        self.container(r).is_some_and(|s| s.status == Status::Running)
    }

    fn sep(&self) -> char {
        if self.compatibility { '_' } else { '-' }
    }

    /// Compose v2 names `PROJECT-SERVICE-N`; 1.29 (`--compatibility`) `PROJECT_SERVICE_N`.
    pub fn container_name(&self, service: &str, number: u32) -> String {
        if let Some(name) = self.project.services.get(service).and_then(|s| s.container_name.clone()) {
            return name;
        }
        let sep = self.sep();
        format!("{}{sep}{service}{sep}{number}", self.project.name)
    }

    /// The name in output prefixes: `web-1` (`web_1` with --compatibility).
    pub fn short_name(&self, r: &Record) -> String {
        format!("{}{}{}", r.service, self.sep(), r.number)
    }

    /// The image a service runs: `image:`, or the name compose gives what it builds.
    pub fn image_of(&self, service: &str) -> String {
        match self.project.services.get(service).and_then(|s| s.image.clone()) {
            Some(i) => i,
            None => format!("{}{}{service}", self.project.name, self.sep()),
        }
    }

    /// The records of the project's service containers (not `run` ones), by service and number.
    pub fn records(&self, services: &[String]) -> Vec<Record> {
        let mut v: Vec<Record> = self.state.containers.iter().filter(|r| !r.oneoff && (services.is_empty() || services.contains(&r.service))).cloned().collect();
        v.sort_by(|a, b| (&a.service, a.number).cmp(&(&b.service, b.number)));
        v
    }

    /// A `builder` command on the same state root, as the user would type it.
    pub fn builder(&self) -> Command {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("builder"));
        let mut cmd = Command::new(exe);
        cmd.arg("--root").arg(&self.root);
        for r in &self.globals.insecure_registries {
            cmd.arg("--insecure-registry").arg(r);
        }
        if self.globals.debug {
            cmd.arg("--debug");
        }
        cmd
    }

    /// Runs `builder ARGS…` with its output captured; an error carries its stderr.
    pub fn quiet(&self, args: &[String]) -> anyhow::Result<Output> {
        let out = self.builder().args(args).stdin(Stdio::null()).output().context("running builder")?;
        if !out.status.success() {
            bail!("builder {}: {}", args.first().map(String::as_str).unwrap_or(""), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(out)
    }

    /// Runs `builder ARGS…` with the terminal's stdio; returns its exit code.
    pub fn attached(&self, args: &[String]) -> anyhow::Result<i32> {
        let status = self.builder().args(args).status().context("running builder")?;
        Ok(status.code().unwrap_or(1))
    }

    /// The ID of a local image, if it is there.
    pub fn image_id(&self, image: &str) -> Option<String> {
        let out = self.builder().args(["inspect", image]).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get(0)?.get("Id")?.as_str().map(str::to_string)
    }

    /// The volume store (`builder volume`): compose's project volumes are ordinary volumes.
    pub fn volumes(&self) -> anyhow::Result<volume::Volumes> {
        Ok(volume::Volumes::open(&self.root)?)
    }

    /// Stops these containers (their service's `stop_signal` and `stop_grace_period`).
    pub fn stop(&self, records: &[Record], timeout: Option<u64>) -> anyhow::Result<()> {
        for r in records {
            if !self.is_running(r) {
                // One waiting to be restarted by its policy stays down.
                if self.container(r).is_some_and(|s| s.restart_policy != runtime::restart::RestartPolicy::No) {
                    let _ = self.quiet(&["stop".into(), r.id.clone()]);
                }
                continue;
            }
            let service = self.project.services.get(&r.service);
            let grace = timeout.unwrap_or_else(|| service.and_then(|s| s.stop_grace_period).map(|d| d.as_secs()).unwrap_or(10));
            eprintln!(" Container {}  Stopping", r.name);
            match service.and_then(|s| s.stop_signal.clone()) {
                Some(sig) => {
                    let _ = self.quiet(&["kill".into(), "-s".into(), sig.trim_start_matches("SIG").to_string(), r.id.clone()]);
                    if !self.wait_stopped(r, Duration::from_secs(grace)) {
                        let _ = self.quiet(&["kill".into(), r.id.clone()]);
                        self.wait_stopped(r, Duration::from_secs(10));
                    }
                }
                None => {
                    self.quiet(&["stop".into(), "-t".into(), grace.to_string(), r.id.clone()])?;
                }
            }
            eprintln!(" Container {}  Stopped", r.name);
        }
        Ok(())
    }

    fn wait_stopped(&self, r: &Record, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running(r) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !self.is_running(r)
    }

    /// `<root>/compose/secrets/<project>/<container>`: the secret files written for a container.
    pub fn secrets_dir(&self, container: &str) -> PathBuf {
        self.root.join("compose").join("secrets").join(&self.project.name).join(container)
    }

    /// Removes these containers (stopped first) and forgets them; lets go of their volumes,
    /// removing their anonymous ones when `anonymous_volumes`.
    pub fn remove(&mut self, records: &[Record], anonymous_volumes: bool) -> anyhow::Result<()> {
        self.stop(records, None)?;
        for r in records {
            eprintln!(" Container {}  Removing", r.name);
            if self.container(r).is_some() {
                let mut args: Vec<String> = vec!["rm".into(), "-f".into()];
                if anonymous_volumes {
                    args.push("-v".into());
                }
                args.push(r.id.clone());
                self.quiet(&args)?;
            }
            let secrets = self.secrets_dir(&r.name);
            if secrets.exists() {
                std::fs::remove_dir_all(&secrets)?;
            }
            self.state.containers.retain(|x| x.id != r.id);
            self.save()?;
            eprintln!(" Container {}  Removed", r.name);
        }
        Ok(())
    }
}

pub fn labels(project: &compose::Project, service: &str, number: u32, oneoff: bool, config_hash: &str) -> BTreeMap<String, String> {
    let files: Vec<String> = project.files.iter().map(|f| f.display().to_string()).collect();
    let mut l: BTreeMap<String, String> = project.services.get(service).map(|s| s.labels.clone()).unwrap_or_default();
    l.insert("com.docker.compose.project".into(), project.name.clone());
    l.insert("com.docker.compose.service".into(), service.to_string());
    l.insert("com.docker.compose.container-number".into(), number.to_string());
    l.insert("com.docker.compose.oneoff".into(), if oneoff { "True" } else { "False" }.into());
    l.insert("com.docker.compose.project.working_dir".into(), project.directory.display().to_string());
    l.insert("com.docker.compose.project.config_files".into(), files.join(","));
    l.insert("com.docker.compose.config-hash".into(), config_hash.to_string());
    l
}

/// A stable digest of a service's config (for the config-hash label).
pub fn config_hash(config: &serde_json::Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(config.to_string().as_bytes()))
}
