//! `builder rename`.

use std::process::ExitCode;

use container::Containers;

pub(super) fn rename(containers: &Containers, key: &str, new_name: &str) -> anyhow::Result<ExitCode> {
    containers.rename(key, new_name)?;
    Ok(ExitCode::SUCCESS)
}
