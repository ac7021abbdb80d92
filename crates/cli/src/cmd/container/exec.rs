//! `builder exec`.

use std::process::ExitCode;

use container::Containers;
use container::exec::ExecOptions;

use super::{ExecArgs, exit_code};

pub(super) fn exec(containers: &Containers, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let state = containers.find(&args.container)?;
    let opts = ExecOptions { interactive: args.interactive, tty: args.tty, env: args.env, workdir: args.workdir, user: args.user, command: args.command };
    match containers.exec(&state, &opts) {
        Ok(status) => Ok(exit_code(status)),
        Err(e @ container::Error::Runtime(runtime::Error::Exec { .. })) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(127))
        }
        Err(e) => Err(e.into()),
    }
}
