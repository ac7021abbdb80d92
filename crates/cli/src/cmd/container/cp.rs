//! `builder cp`.

use std::process::ExitCode;

use container::Containers;

pub(super) fn cp(containers: &Containers, src: &str, dest: &str) -> anyhow::Result<ExitCode> {
    containers.copy(src, dest)?;
    Ok(ExitCode::SUCCESS)
}
