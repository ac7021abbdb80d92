//! `builder volume create / ls / inspect / rm / prune`: the volumes of `--root`, as
//! `docker volume` shows them. The store itself is the `volume` crate.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use volume::{Filters, NewVolume, Volume, Volumes};

use crate::Globals;
use crate::cmd::format::Format;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a volume (a random name if none is given); prints its name.
    Create {
        /// Volume driver (only "local").
        #[arg(short, long, default_value = volume::LOCAL_DRIVER)]
        driver: String,
        /// Set metadata on the volume (KEY=VALUE, or KEY for an empty value).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Driver options: type=FS, device=DEV, o=MOUNT_OPTIONS (e.g. -o type=tmpfs -o device=tmpfs -o o=size=64m).
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        options: Vec<String>,
        name: Option<String>,
    },
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls {
        /// Only display volume names.
        #[arg(short, long)]
        quiet: bool,
        /// Filter (dangling=true|false, driver=, label=KEY[=VALUE], name=).
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// table, table TEMPLATE, json, or a Go template ({{.Name}} {{.Driver}} {{.Mountpoint}} {{.Labels}} {{.Scope}}).
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes as JSON.
    Inspect {
        /// A Go template run over each volume's JSON ({{.Mountpoint}}).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    #[command(visible_alias = "remove")]
    Rm {
        /// Do not fail when a volume does not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused anonymous volumes (and unused named ones with --all).
    Prune {
        /// Remove unused named volumes too, not only anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        /// Only volumes matching (label=KEY[=VALUE], label!=KEY[=VALUE]).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
    },
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        let root = globals.root();
        let volumes = Volumes::open(&root).with_context(|| format!("opening the volumes of {}", root.display()))?;
        match self {
            Command::Create { driver, labels, options, name } => create(&volumes, driver, &labels, &options, name),
            Command::Ls { quiet, filters, format } => ls(&volumes, quiet, &filters, format.as_deref()),
            Command::Inspect { format, volumes: names } => inspect(&volumes, format.as_deref(), &names),
            Command::Rm { force, volumes: names } => rm(&volumes, force, &names),
            Command::Prune { all, force, filters } => prune(&volumes, all, force, &filters),
        }
    }
}

/// `KEY=VALUE` (or `KEY`) flags as a map; `flag` names the flag in the error.
fn key_values(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        if k.is_empty() {
            bail!("invalid {flag} {item:?}: use KEY=VALUE");
        }
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

fn create(volumes: &Volumes, driver: String, labels: &[String], options: &[String], name: Option<String>) -> anyhow::Result<ExitCode> {
    let new = NewVolume { name: name.clone(), driver: Some(driver), labels: key_values("--label", labels)?, options: key_values("--opt", options)? };
    let volume = match volumes.create(&new) {
        // As Docker: creating a volume that exists gives back the one there.
        Err(volume::Error::Exists { .. }) => volumes.get(name.as_deref().unwrap_or_default())?,
        other => other?,
    };
    println!("{}", volume.name);
    Ok(ExitCode::SUCCESS)
}

fn ls(volumes: &Volumes, quiet: bool, filters: &[String], format: Option<&str>) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(filters)?;
    let mut shown = Vec::new();
    for v in volumes.list()? {
        let in_use = filters.needs_use() && volumes.in_use(&v.name)?;
        if filters.matches(&v, in_use) {
            shown.push(v);
        }
    }
    // The fields of Docker's `volume ls --format`; Labels as it prints them, k=v joined by commas.
    let titles = [("Name", "VOLUME NAME"), ("Driver", "DRIVER"), ("Scope", "SCOPE"), ("Mountpoint", "MOUNTPOINT"), ("Labels", "LABELS"), ("Links", "LINKS"), ("Size", "SIZE")];
    crate::cmd::format::list(&shown, quiet, |v| v.name.clone(), format, "table {{.Driver}}\t{{.Name}}", &titles, |v| {
        let labels: Vec<String> = v.labels.iter().map(|(k, val)| format!("{k}={val}")).collect();
        serde_json::json!({"Name": v.name, "Driver": v.driver, "Scope": "local", "Mountpoint": v.mountpoint, "Labels": labels.join(","), "Links": "N/A", "Size": "N/A"})
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `docker volume inspect`'s JSON.
fn inspect_json(v: &Volume) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": v.options,
        "Scope": "local",
    })
}

fn inspect(volumes: &Volumes, format: Option<&str>, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match volumes.get(name) {
            Ok(v) => found.push(inspect_json(&v)),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    match format {
        Some(f) => Format::parse(Some(f), "")?.write(&mut std::io::stdout().lock(), &[], &found)?,
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn rm(volumes: &Volumes, force: bool, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for name in names {
        match volumes.remove(name) {
            Ok(()) => println!("{name}"),
            Err(volume::Error::NotFound { .. }) if force => {}
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn prune(volumes: &Volumes, all: bool, force: bool, filters: &[String]) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(filters)?;
    if !force {
        let what = if all { "all local volumes" } else { "anonymous local volumes" };
        print!("WARNING! This will remove {what} not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let pruned = volumes.prune(&filters, all)?;
    if !pruned.names.is_empty() {
        println!("Deleted Volumes:");
        for name in &pruned.names {
            println!("{name}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", crate::cmd::human_size(pruned.bytes));
    Ok(ExitCode::SUCCESS)
}
