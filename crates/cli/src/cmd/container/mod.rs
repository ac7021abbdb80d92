//! Commands of the container group: `run`, `ps`, `logs`, `stop`, `kill`, `rm`, `start`,
//! `restart`, `create`, `attach`, `wait`, `pause`, `unpause`, `update`, `top`, `export`, `exec`, `diff`, `commit`, `cp`, `rename`, `stats`, `container prune`, and the
//! hidden `__shim` that supervises a detached container. One thin file per command: the
//! work is the `container` crate's; these parse arguments and print.

mod commit;
mod control;
mod cp;
mod diff;
mod exec;
mod filters;
mod lifecycle;
mod logs;
mod prune;
mod ps;
pub(crate) use ps::dir_size;
pub(crate) use lifecycle::AttachFlags;
pub(crate) use run::ipv4;
mod rename;
mod run;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use container::{ContainerState, Containers};

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// Create a new container (state Created) without starting it; `start` runs it.
    Create(Box<RunArgs>),
    /// List containers.
    Ps {
        /// Show all containers (default shows just running).
        #[arg(short, long)]
        all: bool,
        /// Only display container IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Filter: id, name (a regular expression), label=KEY[=VALUE], status, exited=CODE, ancestor=IMAGE,
        /// before=/since=CONTAINER, volume, network, health (starting|healthy|unhealthy|none), publish=/expose=PORT[/PROTO].
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// table, table TEMPLATE, json, or a Go template ({{.ID}} {{.Names}} {{.Status}} {{.Labels}} {{json .}} …).
        #[arg(long)]
        format: Option<String>,
        /// Show the N last created containers (all states).
        #[arg(short = 'n', long = "last", value_name = "N")]
        last: Option<usize>,
        /// Show the latest created container (all states).
        #[arg(short, long)]
        latest: bool,
        /// Display total file sizes.
        #[arg(short, long)]
        size: bool,
        /// Don't truncate IDs and commands.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Fetch the logs of a container.
    Logs(logs::LogsArgs),
    /// Stop running containers (the stop signal, SIGTERM unless set, then SIGKILL after a grace period).
    Stop {
        /// Seconds to wait before killing (default: the container's --stop-timeout, else 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to running containers.
    Kill {
        /// Signal to send.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill and remove a running container.
        #[arg(short, long)]
        force: bool,
        /// Remove the anonymous volumes of the container too.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers (in the background, or attached with -a).
    Start(lifecycle::StartArgs),
    /// Attach this terminal's input and output to a running container (detach: Ctrl-P Ctrl-Q).
    Attach(lifecycle::AttachArgs),
    /// Freeze every process of running containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Change the memory, CPU and process limits of running containers.
    Update(control::UpdateArgs),
    /// Show the processes of a running container (`ps` options may follow; default -ef).
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PS OPTIONS")]
        ps_args: Vec<String>,
    },
    /// Write a container's filesystem as a tar archive (to stdout, or -o FILE).
    Export {
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        container: String,
    },
    /// Block until containers stop, then print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers.
    Restart {
        /// Seconds to wait before killing (default: the container's --stop-timeout, else 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container.
    Exec(Box<ExecArgs>),
    /// Show changed files of a container's filesystem (A added, C changed, D deleted).
    Diff { container: String },
    /// Create a new image from a container's changes.
    Commit {
        /// Commit message (history comment).
        #[arg(short, long)]
        message: Option<String>,
        container: String,
        reference: String,
    },
    /// Copy files between a container and the host: `cp CONTAINER:SRC DEST` or `cp SRC CONTAINER:DEST`.
    Cp { src: String, dest: String },
    /// Rename a container.
    Rename { container: String, new_name: String },
    /// Show what running containers use: CPU, memory, block I/O, processes (like `docker stats`).
    Stats {
        /// Print one reading and exit, instead of refreshing every second.
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Show stopped containers too.
        #[arg(short, long)]
        all: bool,
        /// The containers (default: all running ones).
        containers: Vec<String>,
    },
    /// Remove all stopped containers (`builder container prune`).
    #[command(name = "container-prune")]
    ContainerPrune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// List the port mappings of a container, or the mapping of one of its ports.
    Port {
        container: String,
        /// PORT[/PROTO] of the container.
        port: Option<String>,
    },
    /// Supervises a detached container (internal).
    #[command(name = "__shim", hide = true)]
    Shim {
        id: String,
        /// Wait for the starting process to attach before starting the container.
        #[arg(long = "attach-first")]
        attach_first: bool,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from this environment).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Mount a volume or a host path: NAME:/path, /host/path:/path, or /path (an anonymous volume), with :ro, :nocopy.
    #[arg(short, long = "volume", value_name = "[SOURCE:]TARGET[:OPTIONS]")]
    pub volume: Vec<String>,
    /// Attach a mount: type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy][,tmpfs-size=…].
    #[arg(long = "mount", value_name = "type=…,target=…")]
    pub mount: Vec<String>,
    /// Mount a tmpfs at PATH (options as mount(8) takes them: size=64m,mode=1777).
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Mount the volumes of another container (CONTAINER[:ro|rw]).
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    pub volumes_from: Vec<String>,
    /// Username or UID (format: name|uid[:group|gid]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep STDIN open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Network: bridge (the default), host, none, or a network of `network create`; may be
    /// repeated to join several, each also as `name=NET[,alias=A…]`.
    #[arg(long, alias = "net", value_name = "NETWORK")]
    pub network: Vec<String>,
    /// Another name of the container on a user-defined network (resolved by its DNS); may be repeated.
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_alias: Vec<String>,
    /// The container's IPv4 address on its user-defined network (instead of the lowest free one).
    #[arg(long, value_name = "ADDRESS")]
    pub ip: Option<String>,
    /// Publish a container's port on the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp] (ranges too).
    #[arg(short = 'p', long = "publish", value_name = "[IP:][HOST_PORT:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs on a random host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports (PORT[-PORT][/tcp|/udp]) without publishing it.
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Container host name.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Add a line to the container's /etc/hosts (`NAME:IP`); may be repeated.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// A name server for the container's /etc/resolv.conf; may be repeated.
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// A search domain for the container's /etc/resolv.conf (`.`: none); may be repeated.
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolv.conf option (ndots:2, edns0); may be repeated.
    #[arg(long = "dns-option", visible_alias = "dns-opt", value_name = "OPT")]
    pub dns_option: Vec<String>,
    /// A namespaced kernel parameter (net.*, kernel.shm*/msg*/sem, fs.mqueue.*); may be repeated.
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Limit on the number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Restart policy of a detached container: no, always, on-failure[:N], unless-stopped.
    #[arg(long, default_value = "no", value_parser = clap::value_parser!(runtime::restart::RestartPolicy))]
    pub restart: runtime::restart::RestartPolicy,
    /// Use this OCI runtime binary (e.g. /usr/sbin/runc) instead of the built-in one (foreground only).
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Write the container ID to this file (which must not exist).
    #[arg(long, value_name = "FILE")]
    pub cidfile: Option<PathBuf>,
    /// Signal `stop` sends first (default: the image's STOPSIGNAL, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Pass the signals builder gets on to the container (foreground, without -t).
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub sig_proxy: bool,
    /// Keys that detach from a `run -it` container, which keeps running (default ctrl-p,ctrl-q).
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Set metadata on the container (KEY=VALUE, or KEY for an empty value); may be repeated.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Read labels from a file of KEY=VALUE lines.
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_file: Vec<PathBuf>,
    /// Command to run to check health (run with /bin/sh -c in the container).
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h), default 30s.
    #[arg(long = "health-interval", value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h), default 30s.
    #[arg(long = "health-timeout", value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before failures count (ms|s|m|h), default 0s.
    #[arg(long = "health-start-period", value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Time between checks during the start period (ms|s|m|h).
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    pub health_start_interval: Option<String>,
    /// The whole health test as a JSON array (["CMD", "curl", "-f", "http://localhost"]); what compose passes.
    #[arg(long = "health-test", value_name = "JSON", hide = true)]
    pub health_test: Option<String>,
    /// Consecutive failures needed to report unhealthy, default 3.
    #[arg(long = "health-retries", value_name = "N")]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Give the container every capability, no seccomp filter, no masked paths and a writable /sys.
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities (NET_ADMIN, CAP_SYS_TIME, ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (CHOWN, ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Set a resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, memlock, stack, …; -1 is unlimited).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER][:PERMISSIONS] (r, w, m).
    #[arg(long = "device", value_name = "HOST[:CONTAINER[:rwm]]")]
    pub device: Vec<String>,
    /// Add a supplementary group to the container's process (a name or a GID).
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Logging driver: json-file (the only one, and the default).
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log options: max-size=SIZE (rotate past it: 10m, 512k), max-file=N (files kept, with max-size);
    /// labels=K1,K2, labels-regex=RE, env=VAR1,VAR2, env-regex=RE (attributes of each record, shown by logs --details).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opt: Vec<String>,
    /// The image to run.
    pub image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    #[arg(short, long = "workdir")]
    pub workdir: Option<String>,
    #[arg(short, long)]
    pub user: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        let containers = open(globals)?;
        match self {
            Command::Run(args) => run::run(&containers, *args),
            Command::Create(args) => run::create(&containers, *args),
            Command::Attach(args) => lifecycle::attach(&containers, args),
            Command::Wait { containers: keys } => lifecycle::wait(&containers, &keys),
            Command::Pause { containers: keys } => each(&containers, &keys, |c, s| Ok(c.pause(&s)?)),
            Command::Unpause { containers: keys } => each(&containers, &keys, |c, s| Ok(c.unpause(&s)?)),
            Command::Update(args) => control::update(&containers, args),
            Command::Top { container, ps_args } => control::top(&containers, &container, &ps_args),
            Command::Export { output, container } => control::export(&containers, &container, output),
            Command::Ps { all, quiet, filter, format, last, latest, size, no_trunc } => ps::ps(&containers, &ps::PsArgs { all, quiet, filters: filter, format, last, latest, size, no_trunc }),
            Command::Logs(args) => logs::logs(&containers, args),
            Command::Stop { time, containers: keys } => each(&containers, &keys, |c, s| Ok(c.stop(&s, time.map(Duration::from_secs))?)),
            Command::Kill { signal, containers: keys } => {
                let sig = runtime::tty::signal_number(&signal).with_context(|| format!("invalid signal {signal:?}"))?;
                each(&containers, &keys, |c, s| Ok(c.kill(&s, sig)?))
            }
            Command::Rm { force, volumes, containers: keys } => each(&containers, &keys, |c, s| Ok(c.remove(&s, force, volumes)?)),
            Command::Start(args) => lifecycle::start(&containers, args),
            Command::Restart { time, containers: keys } => each(&containers, &keys, |c, s| {
                c.stop(&s, time.map(Duration::from_secs))?;
                Ok(c.start(&c.load(&s.id)?)?)
            }),
            Command::Exec(args) => exec::exec(&containers, *args),
            Command::Diff { container } => diff::diff(&containers, &container),
            Command::Cp { src, dest } => cp::cp(&containers, &src, &dest),
            Command::Commit { message, container, reference } => commit::commit(&containers, &container, &reference, message.as_deref()),
            Command::Shim { id, attach_first } => {
                container::shim::run(containers.root(), &id, attach_first)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Port { container, port } => ps::port(&containers, &container, port.as_deref()),
            Command::Rename { container, new_name } => rename::rename(&containers, &container, &new_name),
            Command::Stats { no_stream, all, containers: keys } => stats::stats(&containers, no_stream, all, &keys),
            Command::ContainerPrune { force } => prune::container_prune(&containers, force),
        }
    }
}

/// The containers of `--root`, pulling through the registries `--insecure-registry` allows.
pub(crate) fn open(globals: &Globals) -> anyhow::Result<Containers> {
    let registry = registry::ClientOptions { insecure_registries: globals.insecure_registries.clone(), ..Default::default() };
    Ok(Containers::open(&globals.root())?.with_registry(registry))
}

/// Applies `f` to each named container, printing its name like docker does.
fn each(containers: &Containers, keys: &[String], f: impl Fn(&Containers, ContainerState) -> anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    for key in keys {
        match containers.find(key).map_err(anyhow::Error::from).and_then(|s| f(containers, s)) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// A process's exit status as this process's exit code.
fn exit_code(status: container::ExitStatus) -> ExitCode {
    ExitCode::from(status.code().clamp(0, 255) as u8)
}
