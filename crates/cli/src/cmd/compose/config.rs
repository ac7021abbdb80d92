//! `builder compose config`: the resolved file, as Compose prints it.

use std::process::ExitCode;

use clap::Args;

use super::ProjectArgs;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_parser = ["yaml", "json"], default_value = "yaml")]
    format: String,
    /// Only check the file; print nothing.
    #[arg(short, long)]
    quiet: bool,
    /// Print the service names, one a line.
    #[arg(long)]
    services: bool,
    /// Print the volume names, one a line.
    #[arg(long)]
    volumes: bool,
    /// Print the network names, one a line.
    #[arg(long)]
    networks: bool,
}

pub fn run(project: &ProjectArgs, args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let p = project.load()?;
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let names: Option<Vec<&String>> = if args.services {
        Some(p.services.keys().collect())
    } else if args.volumes {
        Some(p.volumes.keys().collect())
    } else if args.networks {
        Some(p.networks.keys().collect())
    } else {
        None
    };
    match names {
        Some(names) => names.iter().for_each(|n| println!("{n}")),
        None if args.format == "json" => println!("{}", serde_json::to_string_pretty(&p.to_json())?),
        None => print!("{}", p.to_yaml()),
    }
    Ok(ExitCode::SUCCESS)
}
