//! `builder logs`.

use std::process::ExitCode;

use anyhow::Context;
use container::Containers;

pub(super) fn logs(containers: &Containers, follow: bool, tail: Option<&str>, key: &str) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    let tail = match tail.filter(|t| *t != "all") {
        Some(n) => Some(n.parse::<usize>().with_context(|| format!("invalid --tail {n:?}"))?),
        None => None,
    };
    containers.logs(&state, follow, tail, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
