//! Container records under `<root>/containers/<id>/`: the bundle (config.json and
//! the /etc files), the overlay's upper and work dirs, the log, and `state.json`.
//! State survives the CLI; it is written with tmp + rename so readers never see half.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// Everything `ps`, `logs`, `stop`, `exec` … need to know about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    /// The command line, for `ps`.
    pub command: Vec<String>,
    /// RFC 3339.
    pub created: String,
    pub status: Status,
    /// Host PID of the container's first process while running.
    pub pid: Option<i32>,
    /// Host PID of the process supervising it (the shim, or the foreground CLI).
    pub supervisor: Option<i32>,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Layer snapshots under the upper dir, top first.
    pub lowers: Vec<PathBuf>,
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    /// Remove the container when it exits (`--rm`).
    #[serde(default)]
    pub auto_remove: bool,
    /// Whether the container's stdio is a terminal (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// `--restart`: whether the supervisor starts the container again when it exits.
    #[serde(default)]
    pub restart_policy: crate::restart::RestartPolicy,
    /// How many times the supervisor has restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// Set by `stop` and `kill`: a container the user stopped is not restarted.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// `-i`: the container's stdin stays open (its supervisor holds it for `attach`).
    #[serde(default)]
    pub open_stdin: bool,
    /// The signal `stop` sends first (`--stop-signal`, else the image's STOPSIGNAL).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL when not told (`--stop-timeout`).
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// Whether the container's processes are frozen (`pause`).
    #[serde(default)]
    pub paused: bool,
}

/// The containers of one state root.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    dir: PathBuf,
}

impl ContainerStore {
    pub fn open(root: &Path) -> Result<ContainerStore> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        Ok(ContainerStore { dir })
    }

    /// The directory (bundle) of container `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Creates the directory layout of a new container and records its state.
    pub fn create(&self, state: &ContainerState) -> Result<PathBuf> {
        let dir = self.create_unlisted(&state.id)?;
        self.save(state)?;
        Ok(dir)
    }

    /// Creates the directory layout only: the container is not listed until its state is
    /// first saved. (A foreground `run --rm` saves once, when running: replacing a file by
    /// rename makes ext4 flush it, which is a large part of a short container's cost.)
    pub fn create_unlisted(&self, id: &str) -> Result<PathBuf> {
        let dir = self.dir_of(id);
        for d in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| Error::io("creating", dir.join(d), e))?;
        }
        Ok(dir)
    }

    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let dir = self.dir_of(&state.id);
        let tmp = dir.join(format!(".state.json.{}", std::process::id()));
        let body = serde_json::to_vec_pretty(state).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, dir.join("state.json")).map_err(|e| Error::io("renaming into place", dir.join("state.json"), e))
    }

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        let path = self.dir_of(id).join("state.json");
        let text = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
        let mut state: ContainerState = serde_json::from_slice(&text).map_err(|e| Error::InvalidSpec(format!("{}: {e}", path.display())))?;
        // A container whose supervisor died (kill -9) died with it (parent-death signal).
        if state.status == Status::Running && !state.supervisor.is_some_and(alive) {
            state.status = Status::Exited;
            state.exit_code = state.exit_code.or(Some(137));
        }
        Ok(state)
    }

    /// All containers, newest first.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io("listing", &self.dir, e))?;
        for e in entries.flatten() {
            if let Some(id) = e.file_name().to_str()
                && let Ok(s) = self.load(id) {
                    out.push(s);
                }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }

    /// Finds a container by full id, id prefix or name.
    pub fn find(&self, key: &str) -> Result<ContainerState> {
        let all = self.list()?;
        if let Some(s) = all.iter().find(|s| s.name == key || s.id == key) {
            return Ok(s.clone());
        }
        let matches: Vec<_> = all.iter().filter(|s| s.id.starts_with(key)).collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(Error::InvalidSpec(format!("no such container: {key}"))),
            _ => Err(Error::InvalidSpec(format!("container id prefix {key} is ambiguous"))),
        }
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir_of(id);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("removing", &dir, e))
    }
}

fn alive(pid: i32) -> bool {
    // A zombie is not alive: check /proc state too.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A new random container id (64 hex digits).
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
