//! `compose ls`: the projects of this root, read from their state files, as `docker compose ls`
//! lists them (no compose file is read: a project is what compose made).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use runtime::containers::{ContainerStore, Status};

use super::engine::State;

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Show every project, stopped ones too (default: running ones).
    #[arg(short, long)]
    all: bool,
    /// Only the names.
    #[arg(short, long)]
    quiet: bool,
    /// `table` (the default), `json`, or a Go template over `.Name`, `.Status`, `.ConfigFiles`.
    #[arg(long)]
    format: Option<String>,
}

/// One project as a row: `{"Name", "Status": "running(2), exited(1)", "ConfigFiles"}`.
fn project_row(name: &str, state: &State, store: &ContainerStore) -> Option<(bool, serde_json::Value)> {
    let mut counts: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for r in &state.containers {
        let Ok(c) = store.load(&r.id) else { continue };
        let word = match c.status {
            Status::Running if c.paused => "paused",
            Status::Running => "running",
            Status::Created => "created",
            _ => "exited",
        };
        *counts.entry(word).or_default() += 1;
    }
    if counts.is_empty() {
        return None;
    }
    let status: Vec<String> = counts.iter().map(|(w, n)| format!("{w}({n})")).collect();
    let files: Vec<String> = state.config_files.iter().map(|f| f.display().to_string()).collect();
    let running = counts.contains_key("running") || counts.contains_key("paused");
    Some((running, serde_json::json!({"Name": name, "Status": status.join(", "), "ConfigFiles": files.join(",")})))
}

pub fn ls(root: &Path, args: LsArgs) -> anyhow::Result<ExitCode> {
    let store = ContainerStore::open(root)?;
    let dir = root.join("compose");
    let mut rows = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(format!("{name}.json"));
        // Written by tmp + rename: a reader sees a whole file.
        let state: State = serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("reading {}", path.display()))?;
        if let Some((running, row)) = project_row(&name, &state, &store)
            && (running || args.all)
        {
            rows.push(row);
        }
    }
    if args.format.as_deref() == Some("json") && !args.quiet {
        // docker compose ls prints one JSON list, not a line per project.
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    let titles = [("Name", "NAME"), ("Status", "STATUS"), ("ConfigFiles", "CONFIG FILES")];
    crate::cmd::format::list(&rows, args.quiet, |r| r["Name"].as_str().unwrap_or_default().to_string(), args.format.as_deref(), "table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}", &titles, |r| r.clone())?;
    Ok(ExitCode::SUCCESS)
}
