//! Acting on a running container through its cgroups and processes: `pause` / `unpause`
//! (the freezer, v1 or v2), `update` (new memory, CPU and process limits) and `top` (the
//! host's `ps`, limited to the container's processes).

use crate::error::{Error, Result};
use crate::{ContainerState, Containers, Status};

/// New limits for `update`, in the user's words.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// `--memory 64m`.
    pub memory: Option<String>,
    /// `--cpus 0.5`.
    pub cpus: Option<f64>,
    /// `--pids-limit 100` (0 or less: no limit).
    pub pids_limit: Option<i64>,
}

/// `top`'s table: the header and rows of `ps`, split into columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl Containers {
    fn running(&self, state: &ContainerState) -> Result<ContainerState> {
        let s = self.load(&state.id)?;
        if s.status != Status::Running {
            return Err(Error::NotRunning { name: s.name });
        }
        Ok(s)
    }

    /// Freezes every process of the container (`pause`).
    pub fn pause(&self, state: &ContainerState) -> Result<()> {
        let mut s = self.running(state)?;
        if s.paused {
            return Err(Error::option("pause", &s.name, "the container is already paused"));
        }
        runtime::cgroup::freeze(&s.cgroup_dirs, true)?;
        s.paused = true;
        self.store.save(&s)?;
        crate::shim::journal(&self.store, &s, "pause", &[]);
        Ok(())
    }

    /// Thaws a paused container (`unpause`).
    pub fn unpause(&self, state: &ContainerState) -> Result<()> {
        let mut s = self.running(state)?;
        if !s.paused {
            return Err(Error::option("unpause", &s.name, "the container is not paused"));
        }
        runtime::cgroup::freeze(&s.cgroup_dirs, false)?;
        s.paused = false;
        self.store.save(&s)?;
        crate::shim::journal(&self.store, &s, "unpause", &[]);
        Ok(())
    }

    /// Sets new limits on a running container's cgroups (`update`).
    pub fn update(&self, state: &ContainerState, update: &Update) -> Result<()> {
        let s = self.running(state)?;
        if let Some(c) = update.cpus
            && !(c.is_finite() && c >= 0.0)
        {
            return Err(Error::option("--cpus", &c.to_string(), "use a number of CPUs such as 0.5 or 2"));
        }
        let limits = runtime::Limits { memory: update.memory.as_deref().map(|m| crate::config::parse_bytes("--memory", m)).transpose()?, pids: update.pids_limit, cpus: update.cpus };
        if limits.is_empty() {
            return Err(Error::option("update", &s.name, "give at least one of --memory, --cpus, --pids-limit"));
        }
        let init = s.pid.ok_or_else(|| Error::NotRunning { name: s.name.clone() })?;
        let dirs = runtime::cgroup::update(init, &s.cgroup_dirs, &limits)?;
        // A cgroup made now (the first limit of its kind) is recorded, for `exec` to join.
        if dirs != s.cgroup_dirs
            && let Ok(mut now) = self.store.load(&s.id)
        {
            now.cgroup_dirs = dirs;
            self.store.save(&now)?;
        }
        crate::shim::journal(&self.store, &s, "update", &[]);
        Ok(())
    }

    /// The container's processes as the host's `ps` shows them with `ps_args` (default
    /// `-ef`, as Docker's `top`): the rows whose PID is one of the container's.
    pub fn top(&self, state: &ContainerState, ps_args: &[String]) -> Result<Top> {
        let s = self.running(state)?;
        let init = s.pid.ok_or_else(|| Error::NotRunning { name: s.name.clone() })?;
        let pids = runtime::stats::pids(init);
        let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
        let out = std::process::Command::new("ps").args(&args).output().map_err(|e| Error::io("running", "ps (procps)", e))?;
        if !out.status.success() {
            return Err(Error::option("top", &args.join(" "), format!("ps failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids).ok_or_else(|| Error::option("top", &args.join(" "), "ps printed no PID column: keep PID in the columns (-o pid,…)"))
    }
}

/// Splits `ps` output into columns (the last takes the rest of the line, as the command may
/// hold spaces) and keeps the rows of `pids`, as Docker does.
fn parse_ps(text: &str, pids: &[i32]) -> Option<Top> {
    let mut lines = text.lines();
    let titles: Vec<String> = lines.next()?.split_whitespace().map(String::from).collect();
    let pid_col = titles.iter().position(|t| t == "PID")?;
    let mut processes = Vec::new();
    for line in lines {
        let mut cols: Vec<String> = Vec::new();
        let mut rest = line.trim_start();
        for _ in 0..titles.len().saturating_sub(1) {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            cols.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
        cols.push(rest.to_string());
        if cols.get(pid_col).and_then(|p| p.parse::<i32>().ok()).is_some_and(|p| pids.contains(&p)) {
            processes.push(cols);
        }
    }
    Some(Top { titles, processes })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_of_the_container_are_kept_with_the_command_whole() {
        let text = "UID          PID    PPID  C STIME TTY          TIME CMD\nroot           1       0  0 10:00 ?        00:00:01 /sbin/init\nroot        4242       1  0 10:01 ?        00:00:00 sleep 1000 now\n";
        let top = parse_ps(text, &[4242]).unwrap();
        assert_eq!(top.titles, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
        assert_eq!(top.processes, [["root", "4242", "1", "0", "10:01", "?", "00:00:00", "sleep 1000 now"]]);
        assert!(parse_ps("USER COMMAND\nroot x\n", &[1]).is_none());
    }
}
