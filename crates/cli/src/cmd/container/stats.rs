//! `builder stats`.

use std::process::ExitCode;
use std::time::Duration;

use container::{ContainerState, Containers, Status};

/// `docker stats`: two readings a pause apart give the CPU share; the table is printed once
/// (`--no-stream`) or redrawn after every pause of a second until interrupted.
pub(super) fn stats(store: &Containers, no_stream: bool, all: bool, keys: &[String]) -> anyhow::Result<ExitCode> {
    let chosen = || -> anyhow::Result<Vec<ContainerState>> {
        if keys.is_empty() {
            return Ok(store.list()?.into_iter().filter(|c| all || c.status == Status::Running).collect());
        }
        keys.iter().map(|k| store.find(k).map_err(anyhow::Error::from)).collect()
    };
    let read = |cs: &[ContainerState]| -> Vec<Option<runtime::stats::Usage>> {
        cs.iter().map(|c| c.pid.filter(|_| c.status == Status::Running).and_then(|p| runtime::stats::usage(p, &c.cgroup_dirs))).collect()
    };
    // One reading, then another after a pause: the CPU share is the time used in between.
    let pause = Duration::from_millis(if no_stream { 500 } else { 1000 });
    loop {
        let containers = chosen()?;
        let before = read(&containers);
        let at = std::time::Instant::now();
        std::thread::sleep(pause);
        let now = read(&containers);
        let secs = at.elapsed().as_secs_f64().max(0.001);
        let mut out = String::from("CONTAINER ID   NAME                 CPU %     MEM USAGE / LIMIT       MEM %     NET I/O   BLOCK I/O             PIDS\n");
        for ((c, b), n) in containers.iter().zip(&before).zip(&now) {
            let u = n.unwrap_or_default();
            let cpu = match (b, n) {
                (Some(b), Some(n)) => n.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e9 / secs * 100.0,
                _ => 0.0,
            };
            let mem_pct = if u.memory_limit > 0 { u.memory as f64 * 100.0 / u.memory_limit as f64 } else { 0.0 };
            let mem = format!("{} / {}", binary_size(u.memory), binary_size(u.memory_limit));
            let block = format!("{} / {}", crate::cmd::human_size(u.block_read), crate::cmd::human_size(u.block_write));
            out.push_str(&format!("{:<14} {:<20} {:<9} {:<23} {:<9} {:<9} {:<21} {}\n", &c.id[..12], c.name, format!("{cpu:.2}%"), mem, format!("{mem_pct:.2}%"), "0B / 0B", block, u.pids));
        }
        if no_stream {
            print!("{out}");
            return Ok(ExitCode::SUCCESS);
        }
        // Redraw in place, as `docker stats` does.
        print!("\x1b[2J\x1b[H{out}");
        std::io::Write::flush(&mut std::io::stdout())?;
    }
}

/// Memory sizes in binary units, as `docker stats` prints them (`1.5MiB / 23.4GiB`).
fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes}B") } else { format!("{v:.2}{}", units[i]) }
}

