//! `builder pause`, `unpause`, `update`, `top` and `export`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use container::Containers;
use container::control::Update;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    cpus: Option<f64>,
    /// Limit on the number of processes (0 or -1: none).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub(super) fn update(containers: &Containers, args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let update = Update { memory: args.memory, cpus: args.cpus, pids_limit: args.pids_limit };
    super::each(containers, &args.containers, |c, s| Ok(c.update(&s, &update)?))
}

/// `top CONTAINER [ps OPTIONS]`: the container's processes as a table, as Docker prints it.
pub(super) fn top(containers: &Containers, key: &str, ps_args: &[String]) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    let top = containers.top(&state, ps_args)?;
    let mut rows = vec![top.titles];
    rows.extend(top.processes);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                // Docker's table: columns at least 20 wide, 3 spaces apart.
                line.push_str(&format!("{c:<w$}", w = (widths[i] + 3).max(20)));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `export [-o FILE] CONTAINER`: the filesystem as a tar, to the file or to stdout (not to a
/// terminal).
pub(super) fn export(containers: &Containers, key: &str, output: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    match output {
        Some(path) => {
            // Written beside the target and renamed, so a failed export leaves no half file.
            let tmp = path.with_file_name(format!(".{}.tmp{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("export"), std::process::id()));
            let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let result = containers.export(&state, &mut w).map_err(anyhow::Error::from).and_then(|_| Ok(w.into_inner().map_err(|e| e.into_error())?.sync_all()?));
            if let Err(e) = result {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::rename(&tmp, &path).with_context(|| format!("renaming into place {}", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                anyhow::bail!("cowardly refusing to write a tar to the terminal: use -o FILE or redirect stdout");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            containers.export(&state, &mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
