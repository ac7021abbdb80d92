//! Resource limits through cgroups. The host may run cgroup v1 controllers, v2, or
//! both (hybrid: v1 controllers plus a v2 "unified" hierarchy); each controller is
//! used where it is actually available. Nothing is created when no limit is asked.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};

/// The cgroup directories of one container, removed on drop.
#[derive(Debug, Default)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

/// Where a controller lives on this host.
enum Hierarchy {
    V1(PathBuf),
    V2(PathBuf),
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// The cgroup path of this process in a v1 controller (or "" for v2 with name "").
fn own_path(controller: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        if (controller.is_empty() && ctrls.is_empty()) || ctrls.split(',').any(|c| c == controller) {
            return path.to_string();
        }
    }
    "/".into()
}

fn find(controller: &str) -> Option<Hierarchy> {
    let info = mountinfo();
    let mut v2_mount = None;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mount_point = left.split(' ').nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let super_opts = r.nth(1).unwrap_or("");
        if fstype == "cgroup" && super_opts.split(',').any(|o| o == controller) {
            return Some(Hierarchy::V1(PathBuf::from(mount_point)));
        }
        if fstype == "cgroup2" {
            v2_mount = Some(PathBuf::from(mount_point));
        }
    }
    let v2 = v2_mount?;
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    controllers.split_whitespace().any(|c| c == controller).then_some(Hierarchy::V2(v2))
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::Cgroup { path: path.into(), message: format!("writing {value:?}: {e}") })
}

impl Cgroup {
    /// Creates cgroups named `name` with the limits of `resources`; `None` when none is set.
    pub fn create(name: &str, resources: Option<&LinuxResources>) -> Result<Option<Cgroup>> {
        let Some(res) = resources else { return Ok(None) };
        let memory = res.memory().as_ref().and_then(|m| m.limit());
        let swap = res.memory().as_ref().and_then(|m| m.swap());
        let pids = res.pids().as_ref().map(|p| p.limit());
        let cpu = res.cpu().as_ref().and_then(|c| c.quota().map(|q| (q, c.period().unwrap_or(100_000))));
        if memory.is_none() && pids.is_none() && cpu.is_none() {
            return Ok(None);
        }
        let mut cg = Cgroup::default();
        let mut v2_dir: Option<PathBuf> = None;
        let mut dir_for = |cg: &mut Cgroup, controller: &str| -> Result<(PathBuf, bool)> {
            match find(controller) {
                Some(Hierarchy::V1(mount)) => {
                    let parent = mount.join(own_path(controller).trim_start_matches('/'));
                    remove_stale(&parent);
                    let dir = parent.join(format!("builder-{name}"));
                    std::fs::create_dir_all(&dir).map_err(|e| Error::Cgroup { path: dir.clone(), message: format!("creating: {e}") })?;
                    cg.dirs.push(dir.clone());
                    Ok((dir, false))
                }
                Some(Hierarchy::V2(mount)) => {
                    if let Some(d) = &v2_dir {
                        return Ok((d.clone(), true));
                    }
                    let parent = mount.join(own_path("").trim_start_matches('/'));
                    // Delegate the controller to children of our cgroup.
                    let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{controller}"));
                    remove_stale(&parent);
                    let dir = parent.join(format!("builder-{name}"));
                    std::fs::create_dir_all(&dir).map_err(|e| Error::Cgroup { path: dir.clone(), message: format!("creating: {e}") })?;
                    cg.dirs.push(dir.clone());
                    v2_dir = Some(dir.clone());
                    Ok((dir, true))
                }
                None => Err(Error::Cgroup { path: PathBuf::from("/sys/fs/cgroup"), message: format!("no {controller} controller on this host") }),
            }
        };
        if let Some(limit) = memory {
            let (dir, v2) = dir_for(&mut cg, "memory")?;
            if v2 {
                write(&dir.join("memory.max"), &limit.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), swap.map_or(0, |s| (s - limit).max(0)).to_string());
            } else {
                write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &swap.unwrap_or(limit).max(limit).to_string())?;
                }
            }
        }
        if let Some(limit) = pids {
            let (dir, _) = dir_for(&mut cg, "pids")?;
            write(&dir.join("pids.max"), &if limit > 0 { limit.to_string() } else { "max".into() })?;
        }
        if let Some((quota, period)) = cpu {
            let (dir, v2) = dir_for(&mut cg, "cpu")?;
            if v2 {
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            } else {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        Ok(Some(cg))
    }

    /// Moves `pid` into every cgroup of the container.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The directories, for `exec` to join later.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Re-opens the cgroups recorded for a running container.
    pub fn from_dirs(dirs: Vec<PathBuf>) -> Cgroup {
        Cgroup { dirs }
    }

    /// Whether the memory cgroup recorded an OOM kill.
    pub fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|d| {
            let v1 = std::fs::read_to_string(d.join("memory.oom_control")).unwrap_or_default();
            let v2 = std::fs::read_to_string(d.join("memory.events")).unwrap_or_default();
            v1.lines().chain(v2.lines()).any(|l| l.starts_with("oom_kill ") && l.trim_end() != "oom_kill 0")
        })
    }
}

/// Removes cgroups left by runs whose process was killed before it could clean up
/// (`builder-<pid>-<n>` with `<pid>` gone). Non-empty ones are left alone (rmdir fails).
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("builder-")) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            // The processes are gone once the PID namespace is; the kernel may take a moment.
            for _ in 0..50 {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        }
    }
}
