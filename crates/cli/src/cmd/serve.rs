//! Commands of the serve group.

use std::process::ExitCode;

use clap::Subcommand;

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Placeholder until the serve commands exist.
    #[command(name = "__serve", hide = true)]
    Placeholder,
}

impl Command {
    pub fn run(self, _globals: &Globals) -> anyhow::Result<ExitCode> {
        match self {
            Command::Placeholder => Ok(ExitCode::SUCCESS),
        }
    }
}
