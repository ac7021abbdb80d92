//! One module per command group; each owns its clap `Subcommand` enum.

pub mod build;
pub mod container;
pub mod image;
pub mod parse;
pub mod serve;
