//! `builder compose …`: multi-container applications from a compose file, as docker-compose
//! runs them. The file model (discovery, merging, interpolation, checks) is the `compose`
//! crate; this module turns the command line into its `LoadOptions` and runs the commands,
//! one file per command.

mod config;
mod engine;
mod images;
mod lifecycle;
mod logs;
mod projects;
mod ps;
mod spec;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Define and run multi-container applications from a compose file.
    Compose(Box<ComposeArgs>),
}

#[derive(Args, Debug)]
pub struct ComposeArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: Sub,
}

/// Where the project is: the options every compose command takes.
#[derive(Args, Debug, Clone, Default)]
pub struct ProjectArgs {
    /// Compose file (repeatable; later files override earlier ones). Default: compose.yaml,
    /// compose.yml, docker-compose.yaml or docker-compose.yml here or in a parent directory.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Project name (default: the project directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Directory relative paths and `.env` are read from (default: the first file's directory).
    #[arg(long = "project-directory", value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Variables file to read instead of `.env` (repeatable).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Enable services of this profile (repeatable).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Name containers as docker-compose 1.29 did (PROJECT_SERVICE_1).
    #[arg(long)]
    pub compatibility: bool,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Print the resolved compose file (merged, interpolated, normalized).
    Config(config::ConfigArgs),
    /// Create and start containers (build and pull images first as needed).
    Up(up::UpArgs),
    /// Create the containers without starting them (`up --no-start`).
    Create(up::CreateArgs),
    /// Scale services: `scale web=3 worker=2` (as `up -d --scale`, without their dependencies).
    Scale(up::ScaleArgs),
    /// Stop and remove containers (and with -v the volumes, with --rmi the images).
    Down(lifecycle::DownArgs),
    /// List containers.
    Ps(ps::PsArgs),
    /// View output from containers.
    Logs(logs::LogsArgs),
    /// Build or rebuild services.
    Build(images::BuildArgs),
    /// Pull service images.
    Pull(images::PullArgs),
    /// Push service images.
    Push(images::PushArgs),
    /// Execute a command in a running container.
    Exec(lifecycle::ExecArgs),
    /// Run a one-off command on a service.
    Run(lifecycle::RunArgs),
    /// Start services.
    Start(lifecycle::ServicesArgs),
    /// Stop services.
    Stop(lifecycle::StopArgs),
    /// Restart services.
    Restart(lifecycle::StopArgs),
    /// Remove stopped service containers.
    Rm(lifecycle::RmArgs),
    /// Force stop service containers.
    Kill(lifecycle::KillArgs),
    /// List images used by the created containers.
    Images(images::ImagesArgs),
    /// Display the running processes.
    Top(ps::TopArgs),
    /// Print the public port for a port binding.
    Port(ps::PortArgs),
    /// Pause services.
    Pause(lifecycle::ServicesArgs),
    /// Unpause services.
    Unpause(lifecycle::ServicesArgs),
    /// Show the compose version.
    Version(VersionArgs),
    /// List the projects of this root (running ones; -a: all).
    Ls(projects::LsArgs),
    /// Wait for the services' containers to exit and print their exit codes.
    Wait(lifecycle::WaitArgs),
    /// Attach this terminal to a service's running container (detach: Ctrl-P Ctrl-Q).
    Attach(lifecycle::AttachArgs),
    /// Copy files between a service's container and the local filesystem.
    Cp(lifecycle::CpArgs),
    /// Show the resource usage of the services' containers.
    Stats(ps::StatsArgs),
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Only the version number.
    #[arg(long)]
    short: bool,
    /// `pretty` (the default) or `json`.
    #[arg(short, long, default_value = "pretty")]
    format: String,
}

/// `compose version`, as `docker compose version` prints it (no project is read).
fn version(a: VersionArgs) -> anyhow::Result<ExitCode> {
    let v = env!("CARGO_PKG_VERSION");
    match (a.short, a.format.as_str()) {
        (true, _) => println!("{v}"),
        (false, "json") => println!("{}", serde_json::json!({ "version": format!("v{v}") })),
        (false, "pretty") => println!("builder compose version v{v}"),
        (false, other) => anyhow::bail!("invalid --format {other:?}: pretty or json"),
    }
    Ok(ExitCode::SUCCESS)
}

impl ProjectArgs {
    /// Reads the project the options point at.
    pub fn load(&self) -> anyhow::Result<compose::Project> {
        let working_dir = std::env::current_dir().context("reading the current directory")?;
        let opts = compose::LoadOptions {
            files: self.files.clone(),
            project_name: self.project_name.clone(),
            project_directory: self.project_directory.clone(),
            env_files: self.env_files.clone(),
            profiles: self.profiles.clone(),
            environment: std::env::vars().collect(),
            working_dir,
        };
        Ok(compose::load(&opts)?)
    }
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        let Command::Compose(args) = self;
        match args.command {
            Sub::Config(c) => return config::run(&args.project, c),
            Sub::Version(v) => return version(v),
            Sub::Ls(a) => return projects::ls(&globals.root(), a),
            _ => {}
        }
        let project = args.project.load()?;
        let e = engine::Engine::open(globals, project, args.project.compatibility)?;
        match args.command {
            Sub::Config(_) | Sub::Version(_) | Sub::Ls(_) => unreachable!("handled above"),
            Sub::Wait(a) => lifecycle::wait(e, a),
            Sub::Cp(a) => lifecycle::cp(e, a),
            Sub::Attach(a) => lifecycle::attach(e, a),
            Sub::Stats(a) => ps::stats(e, a),
            Sub::Pause(a) => lifecycle::pause(e, a, true),
            Sub::Unpause(a) => lifecycle::pause(e, a, false),
            Sub::Up(a) => up::run(e, a),
            Sub::Scale(a) => {
                let services = a.scales.iter().map(|s| s.split_once('=').map_or(s.clone(), |(n, _)| n.to_string())).collect();
                up::run(e, up::UpArgs { detach: true, no_deps: a.no_deps, scale: a.scales, services, ..Default::default() })
            }
            Sub::Create(a) => up::run(e, up::UpArgs { no_start: true, detach: true, converge: a.converge, services: a.services, ..Default::default() }),
            Sub::Down(a) => lifecycle::down(e, a),
            Sub::Ps(a) => ps::ps(e, a),
            Sub::Logs(a) => logs::run(e, a),
            Sub::Build(a) => images::build(e, a),
            Sub::Pull(a) => images::pull(e, a),
            Sub::Push(a) => images::push(e, a),
            Sub::Exec(a) => lifecycle::exec(e, a),
            Sub::Run(a) => lifecycle::run(e, a),
            Sub::Start(a) => lifecycle::start(e, a),
            Sub::Stop(a) => lifecycle::stop(e, a),
            Sub::Restart(a) => lifecycle::restart(e, a),
            Sub::Rm(a) => lifecycle::rm(e, a),
            Sub::Kill(a) => lifecycle::kill(e, a),
            Sub::Images(a) => images::images(e, a),
            Sub::Top(a) => ps::top(e, a),
            Sub::Port(a) => ps::port(e, a),
        }
    }
}
