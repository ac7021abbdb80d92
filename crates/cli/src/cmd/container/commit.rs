//! `builder commit`.

use std::process::ExitCode;

use container::Containers;

pub(super) fn commit(containers: &Containers, key: &str, reference: &str, message: Option<&str>) -> anyhow::Result<ExitCode> {
    let state = containers.find(key)?;
    println!("{}", containers.commit(&state, reference, message)?);
    Ok(ExitCode::SUCCESS)
}
