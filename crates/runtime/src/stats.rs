//! What a running container uses, for `builder stats`: CPU time, memory, block I/O and process
//! count, summed over the processes of its PID namespace (read from /proc, so it works whether or
//! not the container has cgroups), and its memory limit (its memory cgroup's, else the machine's).

use std::fs;
use std::path::{Path, PathBuf};

/// One reading of a container's use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of its processes (user + system), in nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory of its processes, in bytes.
    pub memory: u64,
    /// The memory it may use: its cgroup's limit, or the machine's memory.
    pub memory_limit: u64,
    /// Bytes its processes read from and wrote to storage.
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

/// Reads the use of the container whose first process is `init` (a host PID), with the cgroup
/// directories recorded for it. `None` when that process is gone.
pub fn usage(init: i32, cgroup_dirs: &[PathBuf]) -> Option<Usage> {
    let ns = fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|t| *t > 0).unwrap_or(100) as u64;
    let mut u = Usage { memory_limit: memory_limit(cgroup_dirs), ..Default::default() };
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        // Processes come and go while we read: a vanished one simply does not count.
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name (which may hold spaces) in parentheses: utime is the 14th
        // field of the line, stime the 15th.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        u.cpu_ns += (field(11) + field(12)) * (1_000_000_000 / ticks);
        u.pids += 1;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        u.memory += kv(&status, "VmRSS:") * 1024;
        let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        u.block_read += kv(&io, "read_bytes:");
        u.block_write += kv(&io, "write_bytes:");
    }
    Some(u)
}

/// The host PIDs of the processes in the PID namespace of `init` (for `top`), ascending.
pub fn pids(init: i32) -> Vec<i32> {
    let Ok(ns) = fs::read_link(format!("/proc/{init}/ns/pid")) else { return Vec::new() };
    let mut out: Vec<i32> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() == Some(&ns))
        .collect();
    out.sort_unstable();
    out
}

/// The number after `key` on its line of `text` (`VmRSS:   1234 kB` -> 1234).
fn kv(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The memory cgroup's limit (v1 `memory.limit_in_bytes`, v2 `memory.max`), else MemTotal.
fn memory_limit(cgroup_dirs: &[PathBuf]) -> u64 {
    let machine = kv(&fs::read_to_string("/proc/meminfo").unwrap_or_default(), "MemTotal:") * 1024;
    let read = |d: &Path, f: &str| fs::read_to_string(d.join(f)).ok().and_then(|s| s.trim().parse::<u64>().ok());
    cgroup_dirs
        .iter()
        .find_map(|d| read(d, "memory.limit_in_bytes").or_else(|| read(d, "memory.max")))
        .filter(|l| *l > 0 && (machine == 0 || *l < machine))
        .unwrap_or(machine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_namespace_has_this_process_with_memory_and_cpu() {
        let u = usage(std::process::id() as i32, &[]).expect("our own namespace");
        assert!(u.pids >= 1 && u.memory > 0 && u.memory_limit >= u.memory, "{u:?}");
        assert!(usage(i32::MAX, &[]).is_none(), "no such process");
    }
}
