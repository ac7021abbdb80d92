//! `builder`: build, run and ship container images. One binary, no daemon.
//!
//! This crate only parses arguments and renders output; every command's work
//! lives in the library crates. Each command group has its own module under
//! `cmd/`, with its own clap `Subcommand` enum flattened into [`Command`].

#![deny(unsafe_code)]

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "builder", version, about = "Build, run and ship container images", propagate_version = true)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(clap::Args, Debug, Clone)]
pub struct Globals {
    /// State directory (images, cache, containers). Default: /var/lib/builder as root, else $XDG_DATA_HOME/builder.
    #[arg(long, global = true, env = "BUILDER_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Registries that may be reached over plain HTTP (loopback registries always may).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Address of a `builder serve` instance to run the command on (tcp://HOST:PORT, unix:///PATH).
    #[arg(long, global = true, env = "BUILDER_HOST", value_name = "ADDR")]
    pub addr: Option<String>,
    /// Log more (same as RUST_LOG=debug).
    #[arg(long, short = 'D', global = true)]
    pub debug: bool,
}

impl Globals {
    /// The state directory, resolved from `--root` or the defaults.
    pub fn root(&self) -> PathBuf {
        if let Some(root) = &self.root {
            return root.clone();
        }
        if nix_is_root() {
            return PathBuf::from("/var/lib/builder");
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("builder")
    }
}

fn nix_is_root() -> bool {
    // /proc/self is owned by the effective uid; avoids an unsafe geteuid() call here.
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Frontend(cmd::parse::Command),
    #[command(flatten)]
    Image(cmd::image::Command),
    #[command(flatten)]
    Container(cmd::container::Command),
    #[command(flatten)]
    Build(cmd::build::Command),
    #[command(flatten)]
    Serve(cmd::serve::Command),
    #[command(flatten)]
    System(cmd::system::Command),
    #[command(flatten)]
    Info(cmd::info::Command),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(cmd::volume::Command),
    /// Manage networks.
    #[command(subcommand)]
    Network(cmd::network::Command),
    #[command(flatten)]
    Compose(cmd::compose::Command),
}

/// Docker's management-command forms (`docker container ls`, `docker image rm`, …), which its
/// tutorials use as much as the short ones: `builder container ls` runs `builder ps`, and so on.
/// Returns the arguments with the pair replaced by the short command, or an error naming the
/// sub-command builder does not have.
fn management_form(mut args: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>, String> {
    // The first argument that is neither an option nor the value of a global option.
    let mut i = 1;
    while i < args.len() {
        match args[i].to_str() {
            Some("--root" | "--insecure-registry" | "--addr") => i += 2,
            Some(a) if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    let (Some(group), Some(sub)) = (args.get(i).and_then(|a| a.to_str()), args.get(i + 1).and_then(|a| a.to_str())) else { return Ok(args) };
    let short = match (group, sub) {
        ("container", "ls" | "list" | "ps") => "ps",
        ("container", "rm" | "remove") => "rm",
        ("container", "prune") => "container-prune",
        ("container", s @ ("run" | "create" | "logs" | "stop" | "kill" | "start" | "restart" | "attach" | "wait" | "pause" | "unpause" | "update" | "top" | "export" | "exec" | "diff" | "commit" | "cp" | "rename" | "stats" | "port")) => s,
        ("image", "ls" | "list") => "images",
        ("image", "rm" | "remove") => "rmi",
        ("image", "prune") => "image-prune",
        ("image", s @ ("build" | "tag" | "pull" | "push" | "history" | "save" | "load" | "import")) => s,
        ("container" | "image", "inspect") => {
            let kind = format!("--type={group}");
            args.splice(i..i + 2, [std::ffi::OsString::from("inspect"), kind.into()]);
            return Ok(args);
        }
        ("container" | "image", s) if !s.starts_with('-') => return Err(format!("builder {group} {s}: no such command (builder {group} takes the docker {group} commands builder has: see builder --help)")),
        _ => return Ok(args),
    };
    args.splice(i..i + 2, [std::ffi::OsString::from(short)]);
    Ok(args)
}

fn main() -> ExitCode {
    let args = match management_form(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let filter = if cli.globals.debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let result = match cli.command {
        Command::Frontend(c) => c.run(&cli.globals),
        Command::Image(c) => c.run(&cli.globals),
        Command::Container(c) => c.run(&cli.globals),
        Command::Build(c) => c.run(&cli.globals),
        Command::Serve(c) => c.run(&cli.globals),
        Command::System(c) => c.run(&cli.globals),
        Command::Info(c) => c.run(&cli.globals),
        Command::Volume(c) => c.run(&cli.globals),
        Command::Network(c) => c.run(&cli.globals),
        Command::Compose(c) => c.run(&cli.globals),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
