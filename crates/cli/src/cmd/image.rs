//! Commands of the image group.

use std::process::ExitCode;

use clap::Subcommand;

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Placeholder until the image commands exist.
    #[command(name = "__image", hide = true)]
    Placeholder,
}

impl Command {
    pub fn run(self, _globals: &Globals) -> anyhow::Result<ExitCode> {
        match self {
            Command::Placeholder => Ok(ExitCode::SUCCESS),
        }
    }
}
