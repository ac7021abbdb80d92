//! `builder logs`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use container::Containers;
use container::logs::{LogOptions, parse_time};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for everything).
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<String>,
    /// Show logs since a time (2026-01-02T15:04:05Z, a Unix time) or a duration back (42m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Show logs before a time (2026-01-02T15:04:05Z, a Unix time) or a duration back (42m).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Show extra details provided to logs.
    #[arg(long)]
    details: bool,
    container: String,
}

pub(super) fn logs(containers: &Containers, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let state = containers.find(&args.container)?;
    let tail = match args.tail.as_deref().filter(|t| *t != "all") {
        Some(n) => Some(n.parse::<usize>().with_context(|| format!("invalid --tail {n:?}: a number of lines or \"all\""))?),
        None => None,
    };
    let now = chrono::Utc::now();
    let opts = LogOptions {
        follow: args.follow,
        tail,
        since: args.since.as_deref().map(|s| parse_time("--since", s, now)).transpose()?,
        until: args.until.as_deref().map(|s| parse_time("--until", s, now)).transpose()?,
        timestamps: args.timestamps,
        details: args.details,
    };
    containers.logs(&state, &opts, &mut std::io::stdout().lock(), &mut std::io::stderr().lock())?;
    Ok(ExitCode::SUCCESS)
}
