//! Running a bundle with an external OCI runtime (`--runtime /usr/sbin/runc`).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::process::ExitStatus;

/// Runs `runtime run --bundle BUNDLE ID` in the foreground, with this process's stdio.
/// The bundle's config.json must have been written with [`crate::write_bundle`].
pub fn run_external(runtime: &Path, bundle: &Path, id: &str) -> Result<ExitStatus> {
    let status = Command::new(runtime)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .status()
        .map_err(|e| Error::External { runtime: runtime.into(), message: format!("starting it: {e}") })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        _ => ExitStatus::Code(1),
    })
}
