//! Commands of the container group: `run`, `ps`, `logs`, `stop`, `kill`, `rm`,
//! `start`, `restart`, `exec`, `diff`, `cp`, and the hidden `__shim` that supervises
//! a detached container (a re-exec of this binary, so no daemon is needed).
//!
//! The sandbox itself is `runtime`; layers come from `snapshot`; images from `oci`.

use std::io::{BufRead, Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use runtime::containers::{ContainerState, ContainerStore, Status};

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// List containers.
    Ps {
        /// Show all containers (default shows just running).
        #[arg(short, long)]
        all: bool,
        /// Only display container IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Fetch the logs of a container.
    Logs {
        /// Follow log output.
        #[arg(short, long)]
        follow: bool,
        /// Number of lines to show from the end of the logs.
        #[arg(long, value_name = "N")]
        tail: Option<String>,
        container: String,
    },
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period).
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
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
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start stopped containers (detached).
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart containers.
    Restart {
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
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
    /// Supervises a detached container (internal).
    #[command(name = "__shim", hide = true)]
    Shim { id: String },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Assign a name to the container.
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from this environment).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// Bind mount a volume (HOST:CONTAINER[:ro]).
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Username or UID (format: name|uid[:group|gid]).
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Network: host (default: there is no bridge) or none.
    #[arg(long, default_value = "host")]
    network: String,
    /// Container host name.
    #[arg(long)]
    hostname: Option<String>,
    /// Add a line to the container's /etc/hosts (`NAME:IP`); may be repeated.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_hosts: Vec<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    memory: Option<String>,
    /// Limit on the number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Number of CPUs.
    #[arg(long)]
    cpus: Option<f64>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    init: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Use this OCI runtime binary (e.g. /usr/sbin/runc) instead of the built-in one (foreground only).
    #[arg(long, value_name = "PATH")]
    runtime: Option<PathBuf>,
    /// The image to run.
    image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[arg(short, long)]
    interactive: bool,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[arg(short, long = "workdir")]
    workdir: Option<String>,
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        let root = globals.root();
        match self {
            Command::Run(args) => run(globals, &root, *args),
            Command::Ps { all, quiet } => ps(&root, all, quiet),
            Command::Logs { follow, tail, container } => logs(&root, follow, tail.as_deref(), &container),
            Command::Stop { time, containers } => each(&root, &containers, |store, s| stop(store, s, time)),
            Command::Kill { signal, containers } => {
                let sig = runtime::tty::signal_number(&signal).with_context(|| format!("invalid signal {signal:?}"))?;
                each(&root, &containers, |_, s| kill(s, sig))
            }
            Command::Rm { force, containers } => each(&root, &containers, |store, s| rm(store, s, force)),
            Command::Start { containers } => each(&root, &containers, |store, s| start(globals, store, s)),
            Command::Restart { time, containers } => each(&root, &containers, |store, s| {
                stop(store, s.clone(), time)?;
                start(globals, store, store.load(&s.id)?)
            }),
            Command::Exec(args) => exec(&root, *args),
            Command::Diff { container } => diff(&root, &container),
            Command::Cp { src, dest } => cp(&root, &src, &dest),
            Command::Commit { message, container, reference } => commit(&root, &container, &reference, message.as_deref()),
            Command::Shim { id } => shim(&root, &id),
            Command::Rename { container, new_name } => rename(&root, &container, &new_name),
            Command::Stats { no_stream, all, containers } => stats(&root, no_stream, all, &containers),
            Command::ContainerPrune { force } => container_prune(&root, force),
        }
    }
}

/// Applies `f` to each named container, printing its name like docker does.
fn each(root: &Path, keys: &[String], f: impl Fn(&ContainerStore, ContainerState) -> anyhow::Result<()>) -> anyhow::Result<ExitCode> {
    let store = ContainerStore::open(root)?;
    let mut code = ExitCode::SUCCESS;
    for key in keys {
        match store.find(key).map_err(anyhow::Error::from).and_then(|s| f(&store, s)) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// "64m" -> bytes.
fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?} (use e.g. 64m, 1g)"))?;
    Ok((n * mult as f64) as i64)
}

fn read_env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading env file {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(expand_env).collect())
}

/// `KEY` alone takes the value from this process's environment, like docker.
fn expand_env(e: &str) -> String {
    if e.contains('=') {
        return e.to_string();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_string(),
    }
}

/// Image env overridden by user env, by key.
fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let key = o.split('=').next().unwrap_or(o);
        out.retain(|e| e.split('=').next() != Some(key));
        if o.contains('=') {
            out.push(o.clone());
        }
    }
    out
}

fn random_name(id: &str) -> String {
    const A: [&str; 8] = ["brave", "calm", "eager", "fancy", "gentle", "happy", "keen", "lucid"];
    const N: [&str; 8] = ["turing", "hopper", "lovelace", "knuth", "ritchie", "thompson", "liskov", "dijkstra"];
    let b = u8::from_str_radix(id.get(..2).unwrap_or("0"), 16).unwrap_or(0) as usize;
    format!("{}_{}_{}", A[b % 8], N[(b / 8) % 8], id.get(2..6).unwrap_or(""))
}

/// Finds the image locally, pulling it (with `builder pull`) if it is missing.
fn find_or_pull(globals: &Globals, store: &oci::Store, name: &str) -> anyhow::Result<oci::LocalImage> {
    if let Ok((_, image)) = store.find_image(name) {
        return Ok(image);
    }
    eprintln!("Unable to find image '{name}' locally");
    let exe = std::env::current_exe().context("locating the builder binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root").arg(globals.root());
    for r in &globals.insecure_registries {
        cmd.arg("--insecure-registry").arg(r);
    }
    let status = cmd.arg("pull").arg(name).stdout(std::process::Stdio::null()).status().context("running builder pull")?;
    if !status.success() {
        bail!("pulling {name} failed");
    }
    Ok(store.find_image(name).with_context(|| format!("image {name} after pull"))?.1)
}

/// Unpacks (once) every layer of `image`; returns the snapshot dirs top first.
fn layer_snapshots(root: &Path, store: &oci::Store, image: &oci::LocalImage) -> anyhow::Result<Vec<PathBuf>> {
    let snapshots = snapshot::Snapshots::open(root)?;
    let mut lowers = Vec::new();
    for (digest, _) in image.layers()? {
        let d = digest.to_string();
        let path = snapshots.ensure_layer(&d, || store.open_blob(&digest).map_err(std::io::Error::other)).with_context(|| format!("unpacking layer {d}"))?;
        lowers.push(path);
    }
    if lowers.is_empty() {
        // An image without layers (FROM scratch + config only): an empty lower dir.
        let empty = root.join("snapshots").join("empty");
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty);
    }
    lowers.reverse();
    Ok(lowers)
}

fn run(globals: &Globals, root: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let store = oci::Store::open(root)?;
    let image = find_or_pull(globals, &store, &args.image)?;
    let lowers = layer_snapshots(root, &store, &image)?;
    let config = image.config.config().clone().unwrap_or_default();

    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        Vec::new()
    } else {
        config.cmd().clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command specified: image {} has no Entrypoint or Cmd", args.image);
    }
    let mut user_env = Vec::new();
    for f in &args.env_file {
        user_env.extend(read_env_file(f)?);
    }
    user_env.extend(args.env.iter().map(|e| expand_env(e)));
    let env = merge_env(&config.env().clone().unwrap_or_default(), &user_env);

    let cstore = ContainerStore::open(root)?;
    let id = runtime::containers::new_id();
    let name = match &args.name {
        Some(n) => {
            if cstore.list()?.iter().any(|c| &c.name == n) {
                bail!("the container name {n:?} is already in use");
            }
            n.clone()
        }
        None => random_name(&id),
    };
    let mut mounts = Vec::new();
    for v in &args.volume {
        let parts: Vec<&str> = v.split(':').collect();
        let (host, ctr, ro) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, mode] if *mode == "ro" || *mode == "rw" => (*h, *c, *mode == "ro"),
            _ => bail!("invalid volume {v:?}: use HOST:CONTAINER[:ro]"),
        };
        if !ctr.starts_with('/') {
            bail!("invalid volume {v:?}: the container path must be absolute");
        }
        let host = std::path::absolute(host)?;
        if !host.exists() {
            std::fs::create_dir_all(&host).with_context(|| format!("creating volume source {}", host.display()))?;
        }
        mounts.push(runtime::bind_mount(host, ctr, ro));
    }
    let network = match args.network.as_str() {
        "host" | "default" | "bridge" => runtime::Network::Host,
        "none" => runtime::Network::None,
        other => bail!("network {other:?} is not supported (host or none)"),
    };
    let limits = runtime::Limits { memory: args.memory.as_deref().map(parse_bytes).transpose()?, pids: args.pids_limit, cpus: args.cpus };
    let state = ContainerState {
        id: id.clone(),
        name,
        image: args.image.clone(),
        image_id: image.config_digest.to_string(),
        command: argv.clone(),
        created: now(),
        status: Status::Created,
        pid: None,
        supervisor: None,
        exit_code: None,
        started_at: None,
        finished_at: None,
        oom_killed: false,
        lowers: lowers.clone(),
        cgroup_dirs: Vec::new(),
        auto_remove: args.rm,
        tty: args.tty,
    };
    // Checked before anything is created for the container.
    let extra_hosts = args.add_hosts.iter().map(|h| super::build::parse_add_host(h)).collect::<anyhow::Result<Vec<_>>>()?;
    let dir = if args.rm && !args.detach { cstore.create_unlisted(&id)? } else { cstore.create(&state)? };
    let external = args.runtime.is_some();
    let opts = runtime::SpecOptions {
        rootfs: dir.join("rootfs"),
        args: argv,
        env,
        cwd: args.workdir.clone().unwrap_or_else(|| config.working_dir().clone().unwrap_or_default()),
        user: args.user.clone().unwrap_or_else(|| config.user().clone().unwrap_or_default()),
        hostname: args.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
        network,
        mounts,
        readonly_rootfs: args.read_only,
        limits,
        // Detached, the shim holds the terminal and writes what comes out of it to the log.
        terminal: args.tty,
        init: args.init,
        overlay: Some(runtime::OverlayRootfs { lowers, upper: dir.join("upper"), work: dir.join("work") }),
        // --rm throws the changes away: no need to sync them when the container ends.
        volatile: args.rm,
        extra_hosts,
    };
    let spec = match runtime::build_spec(&opts) {
        Ok(mut s) => {
            if external {
                // runc expects root.path mounted already: we mount it before calling it.
                runtime::spec::strip_overlay(&mut s);
            }
            s
        }
        Err(e) => {
            let _ = cstore.remove(&id);
            return Err(e.into());
        }
    };
    let spec = runtime::write_bundle(&dir, &spec)?;
    if args.detach {
        if external {
            bail!("--runtime works in the foreground only");
        }
        start_shim(globals, &cstore, state)?;
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let result = foreground(&cstore, state, &dir, &spec, args.interactive, args.tty, args.runtime.as_deref());
    if args.rm {
        let _ = cstore.remove(&id);
    }
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            // Like docker: 127 when the command cannot be run, 125 when the container cannot start.
            let code = match e.downcast_ref::<runtime::Error>() {
                Some(runtime::Error::Exec { .. }) => 127,
                _ => 125,
            };
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(code));
        }
    };
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

/// Runs the container with this process as its supervisor.
fn foreground(
    cstore: &ContainerStore,
    mut state: ContainerState,
    dir: &Path,
    spec: &runtime::Spec,
    interactive: bool,
    tty: bool,
    external: Option<&Path>,
) -> anyhow::Result<runtime::ExitStatus> {
    state.supervisor = Some(std::process::id() as i32);
    state.started_at = Some(now());
    state.status = Status::Running;
    if let Some(rt) = external {
        let ov = snapshot::Overlay { lowers: state.lowers.clone(), upper: dir.join("upper"), work: dir.join("work") };
        let guard = ov.mount(&dir.join("rootfs"))?;
        cstore.save(&state)?;
        let status = runtime::run_external(rt, dir, &state.id)?;
        drop(guard);
        return finish(cstore, state, status, false);
    }
    if tty {
        let mut container = runtime::start(dir, spec, runtime::Stdio::terminal())?;
        runtime::tty::forward_signals(container.pid())?;
        state.pid = Some(container.pid());
        state.cgroup_dirs = container.cgroup_dirs();
        cstore.save(&state)?;
        let master = container.take_terminal().context("the container's terminal")?;
        relay_terminal(master, interactive)?;
        let oom = container.oom_killed();
        let status = container.wait()?;
        return finish(cstore, state, status, oom);
    }
    let stdio = runtime::Stdio { stdin: if interactive { runtime::Io::Inherit } else { runtime::Io::Null }, stdout: runtime::Io::Inherit, stderr: runtime::Io::Inherit };
    let container = runtime::start(dir, spec, stdio)?;
    runtime::tty::forward_signals(container.pid())?;
    state.pid = Some(container.pid());
    state.cgroup_dirs = container.cgroup_dirs();
    cstore.save(&state)?;
    let status = wait_with_oom(container)?;
    finish(cstore, state, status.0, status.1)
}

fn wait_with_oom(container: runtime::Container) -> anyhow::Result<(runtime::ExitStatus, bool)> {
    Ok(container.wait_with_oom()?)
}

fn finish(cstore: &ContainerStore, mut state: ContainerState, status: runtime::ExitStatus, oom: bool) -> anyhow::Result<runtime::ExitStatus> {
    // A `rename` while it ran is kept.
    if let Ok(now) = cstore.load(&state.id) {
        state.name = now.name;
    }
    if state.auto_remove {
        // About to be removed: no need to record how it ended.
        return Ok(status);
    }
    state.status = Status::Exited;
    state.exit_code = Some(status.code());
    state.finished_at = Some(now());
    state.pid = None;
    state.oom_killed = oom;
    state.cgroup_dirs.clear();
    if cstore.dir_of(&state.id).exists() {
        cstore.save(&state)?;
    }
    Ok(status)
}

/// Starts the detached supervisor and waits until it reports the container running.
fn start_shim(globals: &Globals, cstore: &ContainerStore, state: ContainerState) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the builder binary")?;
    let mut child = std::process::Command::new(exe)
        .arg("--root")
        .arg(globals.root())
        .arg("__shim")
        .arg(&state.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting the container supervisor")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    if let Some(err) = line.strip_prefix("error: ") {
        let _ = child.wait();
        bail!("{}", err.trim());
    }
    if !line.starts_with("running") {
        let _ = child.wait();
        let s = cstore.load(&state.id)?;
        bail!("container {} did not start (status {:?})", state.id, s.status);
    }
    Ok(())
}

/// The detached supervisor: starts the container with its output in the log, records
/// its exit, and removes it if asked.
fn shim(root: &Path, id: &str) -> anyhow::Result<ExitCode> {
    runtime::tty::new_session()?;
    let cstore = ContainerStore::open(root)?;
    let mut state = cstore.load(id)?;
    let dir = cstore.dir_of(id);
    let spec = runtime::read_bundle(&dir)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("container.log"))?;
    let tty = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    let stdio = if tty {
        runtime::Stdio::terminal()
    } else {
        runtime::Stdio { stdin: runtime::Io::Null, stdout: runtime::Io::Fd(log.try_clone()?.into()), stderr: runtime::Io::Fd(log.try_clone()?.into()) }
    };
    let mut container = match runtime::start(&dir, &spec, stdio) {
        Ok(c) => c,
        Err(e) => {
            println!("error: {e}");
            state.status = Status::Exited;
            state.exit_code = Some(127);
            state.finished_at = Some(now());
            cstore.save(&state)?;
            return Ok(ExitCode::from(1));
        }
    };
    state.status = Status::Running;
    state.pid = Some(container.pid());
    state.supervisor = Some(std::process::id() as i32);
    state.started_at = Some(now());
    state.exit_code = None;
    state.finished_at = None;
    state.cgroup_dirs = container.cgroup_dirs();
    cstore.save(&state)?;
    // A container made with -t keeps its terminal while nobody is attached, as Docker's does:
    // what it prints goes to the log, and its input stays open (a shell waits, not exits).
    let _terminal = match container.take_terminal() {
        Some(master) if tty => {
            runtime::tty::set_default_window_size(master.as_fd());
            let mut from = std::fs::File::from(master.try_clone()?);
            let mut to = log;
            std::thread::spawn(move || std::io::copy(&mut from, &mut to));
            Some(master)
        }
        _ => None,
    };
    println!("running {}", container.pid());
    let _ = std::io::stdout().flush();
    let (status, oom) = wait_with_oom(container)?;
    // Re-read: `stop` may have changed nothing, but `rm -f` may have removed us.
    if !cstore.dir_of(id).exists() {
        return Ok(ExitCode::SUCCESS);
    }
    let auto_remove = state.auto_remove;
    finish(&cstore, state, status, oom)?;
    if auto_remove {
        let _ = cstore.remove(id);
    }
    Ok(ExitCode::SUCCESS)
}

fn human_duration(since: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(since) else { return "unknown".into() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 86400 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn status_text(s: &ContainerState) -> String {
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", human_duration(s.started_at.as_deref().unwrap_or(&s.created))),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code.unwrap_or(0), human_duration(s.finished_at.as_deref().unwrap_or(&s.created))),
    }
}

fn ps(root: &Path, all: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let cstore = ContainerStore::open(root)?;
    let list: Vec<_> = cstore.list()?.into_iter().filter(|c| all || c.status == Status::Running).collect();
    if quiet {
        for c in &list {
            println!("{}", &c.id[..12]);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.join(" ");
            if cmd.chars().count() > 20 {
                cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
            }
            [c.id[..12].to_string(), c.image.clone(), format!("\"{cmd}\""), format!("{} ago", human_duration(&c.created)), status_text(c), c.name.clone()]
        })
        .collect();
    let header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    Ok(ExitCode::SUCCESS)
}

fn logs(root: &Path, follow: bool, tail: Option<&str>, key: &str) -> anyhow::Result<ExitCode> {
    let cstore = ContainerStore::open(root)?;
    let state = cstore.find(key)?;
    let path = cstore.dir_of(&state.id).join("container.log");
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            std::fs::File::open(&path)?
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    match tail.filter(|t| *t != "all") {
        Some(n) => {
            let n: usize = n.parse().with_context(|| format!("invalid --tail {n:?}"))?;
            let mut text = Vec::new();
            file.read_to_end(&mut text)?;
            let body = text.strip_suffix(b"\n").unwrap_or(&text);
            let lines: Vec<&[u8]> = if body.is_empty() { Vec::new() } else { body.split(|&b| b == b'\n').collect() };
            for l in &lines[lines.len().saturating_sub(n)..] {
                out.write_all(l)?;
                out.write_all(b"\n")?;
            }
        }
        None => {
            std::io::copy(&mut file, &mut out)?;
        }
    }
    out.flush()?;
    if follow {
        loop {
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)?;
            if !buf.is_empty() {
                out.write_all(&buf)?;
                out.flush()?;
            }
            let running = cstore.load(&state.id).map(|s| s.status == Status::Running).unwrap_or(false);
            if !running {
                // Drain what was written between the last read and the exit.
                let mut rest = Vec::new();
                file.read_to_end(&mut rest)?;
                out.write_all(&rest)?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            let _ = file.stream_position();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits up to `timeout` for the container to stop running.
fn wait_exit(store: &ContainerStore, id: &str, timeout: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        match store.load(id) {
            Ok(s) if s.status == Status::Running => {}
            _ => return Ok(true),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(store: &ContainerStore, s: ContainerState, time: u64) -> anyhow::Result<()> {
    if s.status != Status::Running {
        return Ok(());
    }
    let Some(pid) = s.pid else { return Ok(()) };
    runtime::tty::signal_process(pid, libc_sig("TERM"))?;
    if !wait_exit(store, &s.id, Duration::from_secs(time))? {
        runtime::tty::signal_process(pid, libc_sig("KILL"))?;
        wait_exit(store, &s.id, Duration::from_secs(10))?;
    }
    Ok(())
}

fn libc_sig(name: &str) -> i32 {
    runtime::tty::signal_number(name).unwrap_or(9)
}

fn kill(s: ContainerState, sig: i32) -> anyhow::Result<()> {
    if s.status != Status::Running {
        bail!("container {} is not running", s.name);
    }
    let pid = s.pid.context("container has no process")?;
    runtime::tty::signal_process(pid, sig)?;
    Ok(())
}

fn rm(store: &ContainerStore, s: ContainerState, force: bool) -> anyhow::Result<()> {
    if s.status == Status::Running {
        if !force {
            bail!("cannot remove running container {}: stop it first or use rm -f", s.name);
        }
        if let Some(pid) = s.pid {
            runtime::tty::signal_process(pid, libc_sig("KILL"))?;
        }
        wait_exit(store, &s.id, Duration::from_secs(10))?;
    }
    store.remove(&s.id)?;
    Ok(())
}

fn rename(root: &Path, key: &str, new_name: &str) -> anyhow::Result<ExitCode> {
    let valid = new_name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && new_name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        bail!("invalid container name {new_name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    let store = ContainerStore::open(root)?;
    let mut state = store.find(key)?;
    if let Some(other) = store.list()?.iter().find(|c| c.name == new_name && c.id != state.id) {
        bail!("the container name {new_name:?} is already in use by container {}", &other.id[..12]);
    }
    state.name = new_name.to_string();
    store.save(&state)?;
    Ok(ExitCode::SUCCESS)
}

/// `docker stats`: two readings a pause apart give the CPU share; the table is printed once
/// (`--no-stream`) or redrawn after every pause of a second until interrupted.
fn stats(root: &Path, no_stream: bool, all: bool, keys: &[String]) -> anyhow::Result<ExitCode> {
    let store = ContainerStore::open(root)?;
    let chosen = || -> anyhow::Result<Vec<ContainerState>> {
        if keys.is_empty() {
            return Ok(store.list()?.into_iter().filter(|c| all || c.status == Status::Running).collect());
        }
        keys.iter().map(|k| store.find(k).map_err(anyhow::Error::from)).collect()
    };
    let read = |cs: &[ContainerState]| -> Vec<Option<runtime::stats::Usage>> {
        cs.iter().map(|c| c.pid.filter(|_| c.status == Status::Running).and_then(|p| runtime::stats::usage(p, &c.cgroup_dirs))).collect()
    };
    // One reading, then another after a pause: the CPU share is the time used in between.
    let pause = Duration::from_millis(if no_stream { 500 } else { 1000 });
    loop {
        let containers = chosen()?;
        let before = read(&containers);
        let at = std::time::Instant::now();
        std::thread::sleep(pause);
        let now = read(&containers);
        let secs = at.elapsed().as_secs_f64().max(0.001);
        let mut out = String::from("CONTAINER ID   NAME                 CPU %     MEM USAGE / LIMIT       MEM %     NET I/O   BLOCK I/O             PIDS\n");
        for ((c, b), n) in containers.iter().zip(&before).zip(&now) {
            let u = n.unwrap_or_default();
            let cpu = match (b, n) {
                (Some(b), Some(n)) => n.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e9 / secs * 100.0,
                _ => 0.0,
            };
            let mem_pct = if u.memory_limit > 0 { u.memory as f64 * 100.0 / u.memory_limit as f64 } else { 0.0 };
            let mem = format!("{} / {}", binary_size(u.memory), binary_size(u.memory_limit));
            let block = format!("{} / {}", crate::cmd::human_size(u.block_read), crate::cmd::human_size(u.block_write));
            out.push_str(&format!("{:<14} {:<20} {:<9} {:<23} {:<9} {:<9} {:<21} {}\n", &c.id[..12], c.name, format!("{cpu:.2}%"), mem, format!("{mem_pct:.2}%"), "0B / 0B", block, u.pids));
        }
        if no_stream {
            print!("{out}");
            return Ok(ExitCode::SUCCESS);
        }
        // Redraw in place, as `docker stats` does.
        print!("\x1b[2J\x1b[H{out}");
        std::io::Write::flush(&mut std::io::stdout())?;
    }
}

/// Memory sizes in binary units, as `docker stats` prints them (`1.5MiB / 23.4GiB`).
fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes}B") } else { format!("{v:.2}{}", units[i]) }
}

/// `docker container prune`: removes every container that is not running.
fn container_prune(root: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if !force {
        print!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = ContainerStore::open(root)?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in store.list()?.into_iter().filter(|c| c.status != Status::Running) {
        reclaimed += solver::cache::dir_size(&store.dir_of(&c.id));
        store.remove(&c.id)?;
        deleted.push(c.id);
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in &deleted {
            println!("{id}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", crate::cmd::human_size(reclaimed));
    Ok(ExitCode::SUCCESS)
}

fn start(globals: &Globals, store: &ContainerStore, s: ContainerState) -> anyhow::Result<()> {
    if s.status == Status::Running {
        return Ok(());
    }
    start_shim(globals, store, s)
}

fn exec(root: &Path, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let cstore = ContainerStore::open(root)?;
    let state = cstore.find(&args.container)?;
    if state.status != Status::Running {
        bail!("container {} is not running", state.name);
    }
    let pid = state.pid.context("container has no process")?;
    let mut spec = runtime::read_bundle(&cstore.dir_of(&state.id))?;
    let mut process = spec.process().clone().context("container spec has no process")?;
    let container_root = PathBuf::from(format!("/proc/{pid}/root"));
    if let Some(u) = &args.user {
        let user = runtime::resolve_user(&container_root, u)?;
        let mut pu = process.user().clone();
        pu.set_uid(user.uid);
        pu.set_gid(user.gid);
        pu.set_additional_gids(Some(user.additional_gids));
        process.set_user(pu);
    }
    let env = merge_env(&process.env().clone().unwrap_or_default(), &args.env.iter().map(|e| expand_env(e)).collect::<Vec<_>>());
    process.set_env(Some(env));
    process.set_args(Some(args.command.clone()));
    if let Some(w) = &args.workdir {
        process.set_cwd(PathBuf::from(w));
    }
    process.set_terminal(Some(args.tty));
    spec.set_process(Some(process));
    if args.tty {
        let mut proc_ = runtime::exec(pid, state.cgroup_dirs.clone(), &spec, runtime::Stdio::terminal())?;
        let master = proc_.take_terminal().context("the exec's terminal")?;
        relay_terminal(master, args.interactive)?;
        let status = proc_.wait()?;
        return Ok(ExitCode::from(status.code().clamp(0, 255) as u8));
    }
    let stdio = runtime::Stdio { stdin: if args.interactive { runtime::Io::Inherit } else { runtime::Io::Null }, stdout: runtime::Io::Inherit, stderr: runtime::Io::Inherit };
    let status = match runtime::exec(pid, state.cgroup_dirs.clone(), &spec, stdio) {
        Ok(p) => p.wait()?,
        Err(e @ runtime::Error::Exec { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(127));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

fn diff(root: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let cstore = ContainerStore::open(root)?;
    let state = cstore.find(key)?;
    let upper = cstore.dir_of(&state.id).join("upper");
    let mut changes = Vec::new();
    walk_changes(&upper, Path::new("/"), &state.lowers, &mut changes)?;
    // Mount points of the files the runtime provides are not changes (as in docker diff).
    let provided = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];
    changes.retain(|(_, p)| !provided.iter().any(|f| p == Path::new(f)));
    let dirs_with_changes: Vec<PathBuf> = changes.iter().filter_map(|(_, p)| p.parent().map(Path::to_path_buf)).collect();
    changes.retain(|(k, p)| *k != 'C' || !std::fs::symlink_metadata(upper.join(p.strip_prefix("/").unwrap_or(p))).map(|m| m.is_dir()).unwrap_or(false) || dirs_with_changes.iter().any(|d| d.starts_with(p)));
    changes.sort_by(|a, b| a.1.cmp(&b.1));
    for (kind, path) in changes {
        println!("{kind} {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn walk_changes(dir: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<(char, PathBuf)>) -> anyhow::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let meta = std::fs::symlink_metadata(e.path())?;
        let path = rel.join(e.file_name());
        let in_lower = lowers.iter().any(|l| std::fs::symlink_metadata(l.join(path.strip_prefix("/").unwrap_or(&path))).is_ok());
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(('D', path));
            continue;
        }
        out.push((if in_lower { 'C' } else { 'A' }, path.clone()));
        if meta.is_dir() {
            walk_changes(&e.path(), &path, lowers, out)?;
        }
    }
    Ok(())
}

/// A container's root as seen from the host: its live root while running, or its
/// layers mounted for the duration of the command.
enum ContainerRoot {
    Live(PathBuf),
    Mounted(snapshot::MountGuard),
}

impl ContainerRoot {
    fn open(cstore: &ContainerStore, state: &ContainerState) -> anyhow::Result<ContainerRoot> {
        if state.status == Status::Running {
            if let Some(pid) = state.pid {
                return Ok(ContainerRoot::Live(PathBuf::from(format!("/proc/{pid}/root"))));
            }
        }
        let dir = cstore.dir_of(&state.id);
        let ov = snapshot::Overlay { lowers: state.lowers.clone(), upper: dir.join("upper"), work: dir.join("work") };
        let target = dir.join("rootfs");
        ov.mount_overlay(&target).with_context(|| format!("mounting the filesystem of container {}", state.name))?;
        // Wrap in a guard so it is unmounted when done.
        Ok(ContainerRoot::Mounted(snapshot::mount::MountGuard::adopt(target)))
    }
    fn path(&self) -> &Path {
        match self {
            ContainerRoot::Live(p) => p,
            ContainerRoot::Mounted(g) => g.target(),
        }
    }
}

fn cp(root: &Path, src: &str, dest: &str) -> anyhow::Result<ExitCode> {
    let cstore = ContainerStore::open(root)?;
    let split = |s: &str| -> Option<(String, String)> {
        let (c, p) = s.split_once(':')?;
        if c.is_empty() || c.contains('/') { None } else { Some((c.to_string(), p.to_string())) }
    };
    match (split(src), split(dest)) {
        (Some((c, p)), None) => {
            let state = cstore.find(&c)?;
            let croot = ContainerRoot::open(&cstore, &state)?;
            snapshot::copy::copy_out(croot.path(), &p, Path::new(dest)).with_context(|| format!("copying {src} to {dest}"))?;
        }
        (None, Some((c, p))) => {
            let state = cstore.find(&c)?;
            let croot = ContainerRoot::open(&cstore, &state)?;
            snapshot::copy::copy_in(Path::new(src), croot.path(), &p).with_context(|| format!("copying {src} to {dest}"))?;
        }
        _ => bail!("cp needs exactly one of SRC and DEST to be CONTAINER:PATH"),
    }
    Ok(ExitCode::SUCCESS)
}

fn commit(root: &Path, key: &str, reference: &str, message: Option<&str>) -> anyhow::Result<ExitCode> {
    let cstore = ContainerStore::open(root)?;
    let state = cstore.find(key)?;
    let store = oci::Store::open(root)?;
    let (_, base) = store.find_image(&state.image_id).or_else(|_| store.find_image(&state.image)).with_context(|| format!("image {} of container {}", state.image, state.name))?;
    let reference = oci::Reference::parse(reference)?;
    let upper = cstore.dir_of(&state.id).join("upper");
    // The empty mount points the runtime created for /etc/hosts & co. are not changes.
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let p = upper.join(f);
        let in_lower = state.lowers.iter().any(|l| l.join(f).exists());
        if !in_lower && std::fs::metadata(&p).map(|m| m.is_file() && m.len() == 0).unwrap_or(false) {
            let _ = std::fs::remove_file(&p);
        }
    }
    let opts = snapshot::diff::DiffOptions { lowers: state.lowers.clone(), ..Default::default() };
    let mut writer = store.blob_writer()?;
    let layer = snapshot::diff::write_layer(&upper, &mut writer, &opts).with_context(|| format!("writing the changes of {}", state.name))?;
    let blob = writer.commit(None)?;
    let mut config = base.config.clone();
    let mut rootfs = config.rootfs().clone();
    let mut diff_ids = rootfs.diff_ids().clone();
    diff_ids.push(layer.diff_id.clone());
    rootfs.set_diff_ids(diff_ids);
    config.set_rootfs(rootfs);
    let mut history = config.history().clone().unwrap_or_default();
    let entry = oci::spec::HistoryBuilder::default()
        .created(now())
        .created_by(format!("builder commit {}", state.name))
        .comment(message.unwrap_or(""))
        .build()
        .context("building history")?;
    history.push(entry);
    config.set_history(Some(history));
    config.set_created(Some(now()));
    let config_blob = store.put_json(&config)?;
    let mut layers = base.manifest.layers().clone();
    layers.push(oci::spec::Descriptor::new(oci::spec::MediaType::ImageLayerGzip, blob.size, blob.digest.to_spec()));
    let manifest = oci::import::write_manifest(&store, &config_blob.digest, config_blob.size, layers, None)?;
    store.tag(&reference, manifest)?;
    println!("{}", config_blob.digest);
    Ok(ExitCode::SUCCESS)
}

/// Relays a container's pty to this terminal until the container's side closes (EIO): the
/// window size and raw mode of our stdin (when it is a terminal), stdin to the pty when
/// `interactive`, and the pty's output to stdout.
fn relay_terminal(master: std::os::fd::OwnedFd, interactive: bool) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let on_terminal = runtime::tty::is_terminal(stdin.as_fd());
    if on_terminal {
        runtime::tty::copy_window_size(stdin.as_fd(), master.as_fd());
    } else {
        runtime::tty::set_default_window_size(master.as_fd());
    }
    let _raw = if on_terminal && interactive { Some(runtime::tty::RawMode::enable(stdin.as_fd())?) } else { None };
    let master = std::fs::File::from(master);
    if interactive {
        let mut to_master = master.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || to_master.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let mut from = master;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
        let _ = out.flush();
    }
    Ok(())
}
