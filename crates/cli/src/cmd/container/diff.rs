//! `builder diff`.

use std::process::ExitCode;

use container::Containers;

pub(super) fn diff(containers: &Containers, key: &str) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    for change in containers.diff(&state)? {
        println!("{} {}", change.kind, change.path.display());
    }
    Ok(ExitCode::SUCCESS)
}
