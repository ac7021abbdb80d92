//! Resource limits through cgroups. The host may run cgroup v1 controllers, v2, or
//! both (hybrid: v1 controllers plus a v2 "unified" hierarchy); each controller is
//! used where it is actually available. Nothing is created when no limit is asked.
//! A container gets only what a flag or `pause` needs at its start: the freezer (and the
//! devices controller for its device rules) on v1, its one directory on v2 (its device rules
//! a BPF program attached to it: [`crate::device_filter`]); `update` makes a v1 memory, pids
//! or cpu cgroup the first time it sets that limit.
//!
//! `BUILDER_CGROUP=v2` makes the v1 hierarchies invisible to builder, as on a v2-only host:
//! a hybrid host (v1 controllers and a v2 `unified` mount) then runs the v2 paths, with the
//! controllers its v2 mount has.

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

/// The mount table, without the v1 cgroup hierarchies under `BUILDER_CGROUP=v2`.
fn mountinfo() -> Result<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    match std::env::var("BUILDER_CGROUP").as_deref() {
        Err(_) | Ok("") => Ok(info),
        Ok("v2") => Ok(info.lines().filter(|l| !l.split_once(" - ").is_some_and(|(_, r)| r.starts_with("cgroup "))).map(|l| format!("{l}\n")).collect()),
        Ok(other) => Err(Error::Cgroup { path: PathBuf::from("/sys/fs/cgroup"), message: format!("BUILDER_CGROUP={other:?}: expected \"v2\" (use only the v2 hierarchy) or nothing") }),
    }
}

/// The cgroup version builder uses here, as `info` reports it: `(version, hybrid)`, where
/// hybrid is v1 controllers beside a v2 mount. None: no hierarchy is mounted.
pub fn version() -> Option<(u8, bool)> {
    let info = mountinfo().ok()?;
    let kinds: Vec<&str> = info.lines().filter_map(|l| l.split_once(" - ")).filter_map(|(_, r)| r.split_whitespace().next()).collect();
    let (v1, v2) = (kinds.contains(&"cgroup"), kinds.contains(&"cgroup2"));
    match (v1, v2) {
        (true, hybrid) => Some((1, hybrid)),
        (false, true) => Some((2, false)),
        (false, false) => None,
    }
}

/// The cgroup path of this process in a v1 controller (or "" for v2 with name "").
#[cfg(test)]
fn own_path(controller: &str) -> String {
    path_in(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(), controller)
}

/// The cgroup path in `controller` of a `/proc/PID/cgroup` text.
fn path_in(text: &str, controller: &str) -> String {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        if (controller.is_empty() && ctrls.is_empty()) || ctrls.split(',').any(|c| c == controller) {
            return path.to_string();
        }
    }
    "/".into()
}

fn find(controller: &str) -> Result<Option<Hierarchy>> {
    Ok(find_in(&mountinfo()?, controller))
}

/// [`find`] in a mountinfo text read once.
fn find_in(info: &str, controller: &str) -> Option<Hierarchy> {
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
    // v2 has no freezer or devices controller: every cgroup but the root freezes
    // (cgroup.freeze), and any may have a device program attached.
    (is_v2_builtin(controller) || controllers.split_whitespace().any(|c| c == controller)).then_some(Hierarchy::V2(v2))
}

/// What v2 does in every cgroup, without a controller to enable.
fn is_v2_builtin(controller: &str) -> bool {
    controller == "freezer" || controller == "devices"
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::Cgroup { path: path.into(), message: format!("writing {value:?}: {e}") })
}

impl Cgroup {
    /// Creates cgroups named `name` with the limits of `resources`; `None` when none is set,
    /// unless `always` (a container of `builder run`, which `pause` and `update` reach through
    /// its cgroups): then it gets its v2 cgroup (with the memory, pids and cpu controllers
    /// enabled) or, on v1, a freezer cgroup; `update` adds the v1 others when it needs them.
    pub fn create(name: &str, resources: Option<&LinuxResources>, always: bool) -> Result<Option<Cgroup>> {
        let res = resources.cloned().unwrap_or_default();
        let memory = res.memory().as_ref().and_then(|m| m.limit());
        let swap = res.memory().as_ref().and_then(|m| m.swap());
        let pids = res.pids().as_ref().map(|p| p.limit());
        let cpu = res.cpu().as_ref().and_then(|c| c.quota().map(|q| (q, c.period().unwrap_or(100_000))));
        let devices = res.devices().as_ref().filter(|d| !d.is_empty());
        if memory.is_none() && pids.is_none() && cpu.is_none() && devices.is_none() && !always {
            return Ok(None);
        }
        let mut cg = Cgroup::default();
        let mut v2_dir: Option<PathBuf> = None;
        // Read once: every controller is looked up in the same two files.
        let info = mountinfo()?;
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut dir_for = |cg: &mut Cgroup, controller: &str| -> Result<(PathBuf, bool)> {
            match find_in(&info, controller) {
                Some(Hierarchy::V1(mount)) => {
                    let parent = mount.join(path_in(&own, controller).trim_start_matches('/'));
                    let dir = parent.join(format!("builder-{name}"));
                    if !cg.dirs.contains(&dir) {
                        remove_stale(&parent);
                        std::fs::create_dir_all(&dir).map_err(|e| Error::Cgroup { path: dir.clone(), message: format!("creating: {e}") })?;
                        cg.dirs.push(dir.clone());
                    }
                    Ok((dir, false))
                }
                Some(Hierarchy::V2(mount)) => {
                    let parent = mount.join(path_in(&own, "").trim_start_matches('/'));
                    // Delegate the controller to children of our cgroup.
                    if !is_v2_builtin(controller) {
                        let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{controller}"));
                    }
                    if let Some(d) = &v2_dir {
                        return Ok((d.clone(), true));
                    }
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
        if always {
            // Unlimited for now; `update` may limit them later. On v2 that is one directory
            // with the controllers enabled; on v1 only the freezer (for `pause`): a cgroup per
            // controller costs a mkdir, a move and an rmdir each, and `update` makes the others
            // when it first needs them. A controller the host lacks is not an error here.
            for controller in ["memory", "pids", "cpu", "freezer"] {
                match find_in(&info, controller) {
                    Some(Hierarchy::V2(_)) => drop(dir_for(&mut cg, controller)?),
                    Some(Hierarchy::V1(_)) if controller == "freezer" => drop(dir_for(&mut cg, controller)?),
                    _ => {}
                }
            }
        }
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
        if let Some(rules) = devices {
            match find_in(&info, "devices") {
                // v1: the rules in order (the first denies all), each to devices.allow or .deny.
                Some(Hierarchy::V1(_)) => {
                    let (dir, _) = dir_for(&mut cg, "devices")?;
                    for r in rules {
                        write(&dir.join(if r.allow() { "devices.allow" } else { "devices.deny" }), &r.to_string())?;
                    }
                }
                // v2: a BPF program attached to the container's cgroup, before its process is in it.
                Some(Hierarchy::V2(_)) => {
                    let (dir, _) = dir_for(&mut cg, "devices")?;
                    crate::device_filter::attach(&dir, rules)?;
                }
                None => tracing::warn!("device rules are not enforced: this host has neither a cgroup v1 devices controller nor a v2 hierarchy"),
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

/// Removes cgroup directories made for a container after it started (by `update`), once its
/// processes are gone; those its start made go with its [`Cgroup`].
pub fn remove_dirs(dirs: &[PathBuf]) {
    drop(Cgroup::from_dirs(dirs.to_vec()));
}

/// Freezes (`pause`) or thaws (`unpause`) every process of a container through its cgroups:
/// the v1 freezer's `freezer.state`, or v2's `cgroup.freeze`, whichever holds it. Returns once
/// the kernel reports the new state.
pub fn freeze(dirs: &[PathBuf], frozen: bool) -> Result<()> {
    for d in dirs {
        let (file, value, done): (PathBuf, &str, Box<dyn Fn() -> bool>) = if d.join("freezer.state").exists() {
            let state = d.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            (state.clone(), want, Box::new(move || std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == want)))
        } else if d.join("cgroup.freeze").exists() {
            let events = d.join("cgroup.events");
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            (d.join("cgroup.freeze"), if frozen { "1" } else { "0" }, Box::new(move || std::fs::read_to_string(&events).is_ok_and(|s| s.lines().any(|l| l == want))))
        } else {
            continue;
        };
        write(&file, value)?;
        for _ in 0..1000 {
            if done() {
                return Ok(());
            }
            // FREEZING: a process in an uninterruptible sleep holds it up; asking again helps v1.
            std::thread::sleep(std::time::Duration::from_millis(10));
            let _ = std::fs::write(&file, value);
        }
        return Err(Error::Cgroup { path: file, message: format!("the processes did not reach {value}") });
    }
    Err(Error::Cgroup { path: dirs.first().cloned().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")), message: "the container has no freezer cgroup (no cgroup hierarchy was mounted where it started, as under `ip netns exec`, or an older builder started it)".into() })
}

/// Adds a v1 cgroup of `controller` to the container whose first process is `init` (its
/// cgroups `dirs`): made beside where that process is in the hierarchy, with the name of its
/// others, and every process of the container moved in while its freezer holds them still
/// (so none forks out of reach meanwhile). None when the host has no v1 `controller`.
fn add_v1(init: i32, dirs: &mut Vec<PathBuf>, controller: &str) -> Result<Option<PathBuf>> {
    let Some(Hierarchy::V1(mount)) = find(controller)? else { return Ok(None) };
    let Some(name) = dirs.first().and_then(|d| d.file_name()).map(|n| n.to_os_string()) else { return Ok(None) };
    let Some(freezer) = dirs.iter().find(|d| d.join("freezer.state").exists()).cloned() else { return Ok(None) };
    let own = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
    let dir = mount.join(path_in(&own, controller).trim_start_matches('/')).join(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Cgroup { path: dir.clone(), message: format!("creating: {e}") })?;
    let was_frozen = std::fs::read_to_string(freezer.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN");
    if !was_frozen {
        freeze(std::slice::from_ref(&freezer), true)?;
    }
    let moved = (|| {
        let procs = std::fs::read_to_string(freezer.join("cgroup.procs")).map_err(|e| Error::Cgroup { path: freezer.join("cgroup.procs"), message: format!("reading: {e}") })?;
        for pid in procs.split_whitespace() {
            // A process that ended meanwhile is no error.
            if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid)
                && Path::new(&format!("/proc/{pid}")).exists()
            {
                return Err(Error::Cgroup { path: dir.join("cgroup.procs"), message: format!("moving {pid} in: {e}") });
            }
        }
        Ok(())
    })();
    if !was_frozen {
        freeze(std::slice::from_ref(&freezer), false)?;
    }
    moved?;
    dirs.push(dir.clone());
    Ok(Some(dir))
}

/// New limits for a running container's cgroups (`update`): each one set is written to the
/// controller that holds it, v1 or v2; a v1 controller the container has no cgroup in yet
/// gets one ([`add_v1`]). Returns the container's cgroup directories, with any new ones.
pub fn update(init: i32, dirs: &[PathBuf], limits: &crate::Limits) -> Result<Vec<PathBuf>> {
    let mut dirs = dirs.to_vec();
    for (asked, file, controller) in [(limits.memory.is_some(), "memory.limit_in_bytes", "memory"), (limits.pids.is_some(), "pids.max", "pids"), (limits.cpus.is_some(), "cpu.cfs_quota_us", "cpu")] {
        let v2_file = match controller {
            "memory" => "memory.max",
            "cpu" => "cpu.max",
            _ => "pids.max",
        };
        if asked && !dirs.iter().any(|d| d.join(file).exists() || d.join(v2_file).exists()) {
            add_v1(init, &mut dirs, controller)?;
        }
    }
    let dirs = dirs;
    let has = |f: &str| dirs.iter().find(|d| d.join(f).exists()).cloned();
    let missing = |what: &str| Error::Cgroup { path: dirs.first().cloned().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")), message: format!("the container has no {what} cgroup") };
    if let Some(limit) = limits.memory {
        if let Some(d) = has("memory.limit_in_bytes") {
            let memsw = d.join("memory.memsw.limit_in_bytes");
            // memsw may never be below the limit: raise it first when growing, last when shrinking.
            if memsw.exists() {
                let current: i64 = std::fs::read_to_string(d.join("memory.limit_in_bytes")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                if limit > current {
                    write(&memsw, &limit.to_string())?;
                    write(&d.join("memory.limit_in_bytes"), &limit.to_string())?;
                } else {
                    write(&d.join("memory.limit_in_bytes"), &limit.to_string())?;
                    write(&memsw, &limit.to_string())?;
                }
            } else {
                write(&d.join("memory.limit_in_bytes"), &limit.to_string())?;
            }
        } else if let Some(d) = has("memory.max") {
            write(&d.join("memory.max"), &limit.to_string())?;
            let _ = std::fs::write(d.join("memory.swap.max"), "0");
        } else {
            return Err(missing("memory"));
        }
    }
    if let Some(pids) = limits.pids {
        let d = has("pids.max").ok_or_else(|| missing("pids"))?;
        write(&d.join("pids.max"), &if pids > 0 { pids.to_string() } else { "max".into() })?;
    }
    if let Some(cpus) = limits.cpus {
        let quota = (cpus * 100_000.0) as i64;
        if let Some(d) = has("cpu.cfs_quota_us") {
            write(&d.join("cpu.cfs_period_us"), "100000")?;
            write(&d.join("cpu.cfs_quota_us"), &if quota > 0 { quota.to_string() } else { "-1".into() })?;
        } else if let Some(d) = has("cpu.max") {
            write(&d.join("cpu.max"), &if quota > 0 { format!("{quota} 100000") } else { "max 100000".into() })?;
        } else {
            return Err(missing("cpu"));
        }
    }
    Ok(dirs.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// A busy loop in a cgroup of its own in `parent`, frozen and thawed by [`freeze`].
    fn busy_loop_stops_while_frozen(parent: &Path) {
        let dir = parent.join(format!("builder-freeze-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        freeze(std::slice::from_ref(&dir), true).unwrap();
        let frozen = cpu_ticks(child.id());
        std::thread::sleep(std::time::Duration::from_millis(300));
        let still = cpu_ticks(child.id());
        freeze(std::slice::from_ref(&dir), false).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while cpu_ticks(child.id()) == frozen && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let thawed = cpu_ticks(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(still, frozen, "no CPU time while frozen in {}", dir.display());
        assert!(thawed > frozen, "CPU time again once thawed in {}", dir.display());
    }

    #[test]
    fn freeze_stops_a_busy_loop_with_the_v1_freezer_and_with_v2_cgroup_freeze() {
        // This host (and CI) is hybrid: v1 controllers, the freezer among them, and a v2 mount;
        // a v2-only host has no v1 freezer to test.
        if let Some(Hierarchy::V1(v1)) = find("freezer").unwrap() {
            busy_loop_stops_while_frozen(&v1.join(own_path("freezer").trim_start_matches('/')));
        }
        let v2 = mountinfo()
            .unwrap()
            .lines()
            .find_map(|l| l.split_once(" - ").filter(|(_, r)| r.starts_with("cgroup2 ")).map(|(left, _)| PathBuf::from(left.split(' ').nth(4).unwrap())))
            .expect("tests need a cgroup v2 mount");
        busy_loop_stops_while_frozen(&v2.join(own_path("").trim_start_matches('/')));
    }
}
