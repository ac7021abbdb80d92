//! Containers of one state root, without a daemon: what `builder run`, `ps`, `stop`,
//! `logs`, `exec`, `diff`, `commit`, `cp` and compose do, as a library.
//!
//! [`Containers`] is the handle over `--root`. [`Containers::create`] turns an image and
//! [`RunOptions`] into a container record and an OCI bundle (the [`RunConfig`] merges the
//! image config with the options as `docker run` does); [`Containers::run`] then runs it in
//! the foreground (this process supervises it) or detached: a re-exec of the current binary
//! as `<exe> --root ROOT __shim ID`, which must call [`shim::run`], supervises it and records
//! its exit. The sandbox itself is the `runtime` crate; layers come from `snapshot`, images
//! from `oci`, and missing images are pulled through `registry`.

pub mod attach;
pub mod commit;
pub mod config;
pub mod control;
mod error;
pub mod exec;
pub mod fs;
mod image;
pub mod logs;
pub mod mounts;
pub mod settings;
mod security;
pub mod shim;
pub mod health;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use config::{HealthOptions, RunConfig, RunOptions};
pub use settings::Settings;
pub use error::{Error, Result};
pub use runtime::ExitStatus;
pub use runtime::containers::{ContainerState, Status};

use runtime::containers::ContainerStore;

/// The containers under one state root.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
    store: ContainerStore,
    registry: registry::ClientOptions,
}

/// A container whose record and bundle are written, ready for [`Containers::run`].
#[derive(Debug)]
pub struct Created {
    pub state: ContainerState,
    pub dir: PathBuf,
    spec: runtime::Spec,
    interactive: bool,
    tty: bool,
    detach: bool,
    /// Run by a shim (detached, or with a terminal that `attach` can reach), not by this process.
    under_shim: bool,
    attach: attach::AttachOptions,
    external: Option<PathBuf>,
}

/// How [`Containers::run`] ended.
#[derive(Debug)]
pub enum Ran {
    /// Started in the background; its supervisor records how it ends.
    Detached { id: String },
    /// Ran in the foreground to its end.
    Exited(ExitStatus),
}

impl Containers {
    /// Opens (creating if needed) the container records of `root`.
    pub fn open(root: &Path) -> Result<Containers> {
        Ok(Containers { root: root.to_path_buf(), store: ContainerStore::open(root)?, registry: registry::ClientOptions::default() })
    }

    /// The registry client options used to pull missing images (`--insecure-registry`).
    pub fn with_registry(mut self, options: registry::ClientOptions) -> Containers {
        self.registry = options;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory (bundle, upper dir, log) of container `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.store.dir_of(id)
    }

    /// All containers, newest first.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        Ok(self.store.list()?)
    }

    /// A container by full id, unique id prefix or name.
    pub fn find(&self, key: &str) -> Result<ContainerState> {
        Ok(self.store.find(key)?)
    }

    /// The current record of container `id`.
    pub fn load(&self, id: &str) -> Result<ContainerState> {
        Ok(self.store.load(id)?)
    }

    /// Finds `opts.image` (pulling it if missing), merges its config with `opts` and writes
    /// the container's record and bundle. Bad options are refused before anything is written.
    pub fn create(&self, opts: &RunOptions, progress: &dyn registry::Progress) -> Result<Created> {
        // Checked before anything is pulled or made, as Docker checks it.
        if let Some(n) = opts.name.as_deref().filter(|n| !config::valid_name(n)) {
            return Err(Error::option("container name", n, "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, two characters at least"));
        }
        let store = oci::Store::open(&self.root)?;
        let image = self.image(&store, &opts.image, progress)?;
        let lowers = image::layer_snapshots(&self.root, &store, &image)?;
        let config = image.config.config().clone().unwrap_or_default();
        let run = RunConfig::new(&config, opts)?;
        let mut labels = config.labels().clone().unwrap_or_default().into_iter().collect::<std::collections::BTreeMap<_, _>>();
        labels.extend(settings::parse_labels(&opts.labels, &opts.label_files)?);
        let healthcheck = opts.health.merge(image::healthcheck(&store, &image))?;
        let security = security::Security::parse(opts)?;
        let log_options = config::log_options(opts)?;

        let id = runtime::containers::new_id();
        let name = match &opts.name {
            Some(n) => {
                if self.store.list()?.iter().any(|c| &c.name == n) {
                    return Err(Error::NameInUse { name: n.clone() });
                }
                n.clone()
            }
            None => config::random_name(&id),
        };
        let mount_flags = mounts::parse(opts)?;
        let mut ports = Vec::new();
        for p in &opts.publish {
            ports.extend(network::parse_publish(p)?);
        }
        let mut exposed: Vec<String> = config.exposed_ports().clone().unwrap_or_default();
        for p in config::exposed_ports(&opts.expose)? {
            if !exposed.contains(&p) {
                exposed.push(p);
            }
        }
        if opts.publish_all {
            ports.extend(network::publish_all(&exposed));
        }
        // `--network container:NAME` joins that container's network namespace when it starts.
        let shared = match opts.network.strip_prefix("container:") {
            Some(key) => Some(self.store.find(key).map_err(|_| Error::option("--network", &opts.network, format!("no such container: {key}")))?),
            None => None,
        };
        if shared.is_some() {
            shared_network_conflicts(opts)?;
        }
        // Docker's default is the bridge; a user-defined network is one of `--root`'s.
        let mode = match opts.network.as_str() {
            _ if shared.is_some() => format!("container:{}", shared.as_ref().map_or("", |c| c.id.as_str())),
            "" | "default" | "bridge" => network::BRIDGE.to_string(),
            "host" => "host".to_string(),
            "none" => "none".to_string(),
            other => network::Networks::open(&self.root).get(other)?.name,
        };
        if !opts.network_aliases.is_empty() && (mode == network::BRIDGE || mode == "host" || mode == "none") {
            return Err(Error::option("--network-alias", &opts.network_aliases.join(","), "works only on user-defined networks (Docker's rule)"));
        }
        let on_bridge = mode != "host" && mode != "none" && shared.is_none();
        let nets = network::Networks::open(&self.root);
        if let Some(ip) = opts.ip {
            match nets.get(&mode) {
                Ok(n) if on_bridge => network::check_address(&n, ip)?,
                _ => return Err(Error::option("--ip", &ip.to_string(), "a fixed address is supported on user-defined networks only (Docker's rule)")),
            }
        }
        let mut extra = Vec::new();
        for j in &opts.extra_networks {
            let n = nets.get(&j.network)?;
            if !on_bridge || !n.is_bridge() {
                return Err(Error::option("--network", &j.network, "host and none cannot be combined with other networks"));
            }
            if let Some(ip) = j.ip {
                network::check_address(&n, ip)?;
            }
            extra.push(network::Join { network: n.name, aliases: j.aliases.clone(), ip: j.ip });
        }
        let network = if mode == "host" { runtime::Network::Host } else { runtime::Network::None };
        if !on_bridge {
            ports.clear();
        }
        let limits = runtime::Limits { memory: opts.memory.as_deref().map(|m| config::parse_bytes("--memory", m)).transpose()?, pids: opts.pids_limit, cpus: opts.cpus };
        let extra_hosts = opts.add_hosts.iter().map(|h| config::parse_add_host(h)).collect::<Result<Vec<_>>>()?;
        let dns = config::Dns::parse(opts)?;
        let sysctls = config::parse_sysctls(opts, mode != "host")?;
        if opts.detach && opts.runtime.is_some() {
            return Err(Error::ExternalDetached);
        }
        if opts.restart != runtime::restart::RestartPolicy::No {
            // The shim of a detached container restarts it; a foreground one has no supervisor after the CLI.
            if !opts.detach {
                return Err(Error::option("--restart", &opts.restart.to_string(), "needs -d (a detached container's supervisor restarts it)"));
            }
            if opts.auto_remove {
                return Err(Error::option("--restart", &opts.restart.to_string(), "conflicts with --rm"));
            }
        }
        let state = ContainerState {
            id: id.clone(),
            name,
            image: opts.image.clone(),
            image_id: image.config_digest.to_string(),
            command: run.argv.clone(),
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
            auto_remove: opts.auto_remove,
            tty: opts.tty,
            restart_policy: opts.restart,
            restart_count: 0,
            stopped_by_user: false,
            open_stdin: opts.interactive,
            stop_signal: stop_signal(opts, &config)?,
            stop_timeout: opts.stop_timeout,
            paused: false,
        };
        // A foreground --rm container is listed only once it runs (see create_unlisted);
        // one with a terminal runs under its shim, which reads the record.
        let dir = if opts.auto_remove && !under_shim(opts) { self.store.create_unlisted(&id)? } else { self.store.create(&state)? };
        shim::journal(&self.store, &state, "create", &[]);
        let new = mounts::NewContainer {
            root: &self.root,
            store: &self.store,
            id: &id,
            name: &state.name,
            dir: &dir,
            lowers: &lowers,
            image_volumes: config.volumes().clone().unwrap_or_default(),
        };
        let mounts = match mounts::prepare(&mount_flags, &new) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.store.remove(&id);
                return Err(e);
            }
        };
        // As Docker: the host's name on the host network, else the short id.
        let hostname = match &shared {
            Some(other) => shared_hostname(&self.store, other),
            None => opts.hostname.clone().unwrap_or_else(|| if mode == "host" { host_name() } else { id[..12].to_string() }),
        };
        let recorded = Settings {
            path: run.argv.first().cloned().unwrap_or_default(),
            args: run.argv.iter().skip(1).cloned().collect(),
            config: settings::Config {
                hostname: hostname.clone(),
                user: run.user.clone(),
                attach_stdin: opts.interactive && !opts.detach,
                attach_stdout: !opts.detach,
                attach_stderr: !opts.detach,
                exposed_ports: exposed.iter().cloned().chain(ports.iter().map(|p| format!("{}/{}", p.container_port, p.proto.as_str()))).map(|p| (p, settings::Empty {})).collect(),
                tty: opts.tty,
                open_stdin: opts.interactive,
                stdin_once: opts.interactive && !opts.detach,
                env: run.env.clone(),
                cmd: if opts.command.is_empty() && opts.entrypoint.is_none() { config.cmd().clone() } else { Some(opts.command.clone()).filter(|c| !c.is_empty()) },
                healthcheck,
                image: opts.image.clone(),
                volumes: config.volumes().clone().map(|v| v.into_iter().map(|p| (p, settings::Empty {})).collect()),
                working_dir: run.cwd.clone(),
                entrypoint: match &opts.entrypoint {
                    Some(e) if e.is_empty() => None,
                    Some(e) => Some(vec![e.clone()]),
                    None => config.entrypoint().clone(),
                },
                on_build: None,
                labels,
                stop_signal: state.stop_signal.clone(),
                ..Default::default()
            },
            host_config: settings::HostConfig {
                binds: Some(opts.volumes.iter().filter(|v| v.contains(':')).cloned().collect::<Vec<_>>()).filter(|b| !b.is_empty()),
                network_mode: if opts.network.is_empty() || shared.is_some() { mode.to_string() } else { opts.network.clone() },
                port_bindings: port_bindings(&ports),
                restart_policy: restart_policy(opts.restart),
                auto_remove: opts.auto_remove,
                volumes_from: Some(opts.volumes_from.clone()).filter(|v| !v.is_empty()),
                extra_hosts: Some(opts.add_hosts.clone()).filter(|v| !v.is_empty()),
                publish_all_ports: opts.publish_all,
                readonly_rootfs: opts.read_only,
                memory: limits.memory.unwrap_or(0),
                nano_cpus: limits.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
                pids_limit: limits.pids,
                init: Some(opts.init).filter(|i| *i),
                privileged: security.privileged,
                cap_add: Some(security.cap_add.clone()).filter(|c| !c.is_empty()),
                cap_drop: Some(security.cap_drop.clone()).filter(|c| !c.is_empty()),
                ulimits: security.ulimits.clone(),
                devices: security.devices.clone(),
                group_add: Some(security.group_add.clone()).filter(|g| !g.is_empty()),
                log_config: settings::LogConfig { kind: "json-file".into(), config: log_options },
                tmpfs: opts.tmpfs.iter().map(|t| t.split_once(':').map(|(p, o)| (p.to_string(), o.to_string())).unwrap_or((t.clone(), String::new()))).collect(),
                ..Default::default()
            },
        };
        if let Err(e) = recorded.save(&dir) {
            let _ = mounts::remove_container(&self.root, &self.store, &id, true);
            return Err(e);
        }
        let spec_opts = runtime::SpecOptions {
            rootfs: dir.join("rootfs"),
            args: run.argv,
            env: run.env,
            cwd: run.cwd,
            user: run.user,
            hostname,
            network,
            mounts,
            readonly_rootfs: opts.read_only,
            limits,
            // Detached, the shim holds the terminal and writes what comes out of it to the log.
            terminal: opts.tty,
            init: opts.init,
            overlay: Some(runtime::OverlayRootfs { lowers: lowers.clone(), upper: dir.join("upper"), work: dir.join("work") }),
            // --rm throws the changes away: no need to sync them when the container ends.
            volatile: opts.auto_remove,
            extra_hosts,
        };
        let spec = match runtime::build_spec(&spec_opts).map_err(Error::from).and_then(|s| security.apply(s, &lowers)) {
            Ok(mut s) => {
                if let Some(linux) = s.linux_mut() {
                    // Cgroups even without limits: `pause`, `update` and `top` work through them.
                    linux.set_cgroups_path(Some(PathBuf::from(format!("/builder/{id}"))));
                    if !sysctls.is_empty() {
                        linux.set_sysctl(Some(sysctls.clone().into_iter().collect()));
                    }
                }
                if let Some(dns) = &dns {
                    let mut annotations = s.annotations().clone().unwrap_or_default();
                    annotations.insert(ANNOTATION_DNS.to_string(), serde_json::to_string(dns).unwrap_or_default());
                    s.set_annotations(Some(annotations));
                }
                if opts.runtime.is_some() {
                    // runc expects root.path mounted already: we mount it before calling it.
                    runtime::spec::strip_overlay(&mut s);
                }
                s
            }
            Err(e) => {
                let _ = mounts::remove_container(&self.root, &self.store, &id, true);
                return Err(e);
            }
        };
        let mut spec = spec;
        if mode == "none" {
            set_resolv_conf(&mut spec, network::resolv::for_bridge());
        } else if mode == "host" && dns.is_some() {
            set_resolv_conf(&mut spec, std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
        }
        let spec = runtime::write_bundle(&dir, &spec)?;
        if let Some(other) = &shared
            && let Err(e) = std::fs::write(dir.join(SHARED_NETWORK), &other.id).map_err(|e| Error::io("writing", dir.join(SHARED_NETWORK), e))
        {
            let _ = mounts::remove_container(&self.root, &self.store, &id, true);
            return Err(e);
        }
        if on_bridge {
            let mut networks = if mode == network::BRIDGE && extra.is_empty() { Vec::new() } else { vec![network::Join { network: mode.clone(), aliases: opts.network_aliases.clone(), ip: opts.ip }] };
            networks.extend(extra);
            let dns_servers = dns.as_ref().map(|d| d.servers.clone()).unwrap_or_default();
            if let Err(e) = write_network_request(&dir, &network::Request { ports, networks, dns: dns_servers }) {
                let _ = mounts::remove_container(&self.root, &self.store, &id, true);
                return Err(e);
            }
        }
        let attach = attach::AttachOptions { stdin: opts.interactive, detach_keys: opts.detach_keys.clone().unwrap_or_else(|| attach::AttachOptions::default().detach_keys), sig_proxy: !opts.no_sig_proxy };
        Ok(Created { state, dir, spec, interactive: opts.interactive, tty: opts.tty, detach: opts.detach, under_shim: under_shim(opts), attach, external: opts.runtime.clone() })
    }

    /// Runs a created container: detached under its own supervisor, or in the foreground with
    /// this process as the supervisor (then removed at the end if `--rm`).
    pub fn run(&self, created: Created) -> Result<Ran> {
        if created.detach {
            let id = created.state.id.clone();
            self.start_detached(&created.state, false)?;
            return Ok(Ran::Detached { id });
        }
        if created.under_shim {
            // `run -it`: its shim holds the terminal, and this process attaches to it like any
            // later `attach` would.
            let opts = created.attach.clone();
            return match self.start_attached(&created.state, &opts)? {
                attach::Ended::Exited(code) => Ok(Ran::Exited(ExitStatus::Code(code))),
                attach::Ended::Detached => Ok(Ran::Detached { id: created.state.id.clone() }),
            };
        }
        let id = created.state.id.clone();
        let auto_remove = created.state.auto_remove;
        let result = shim::foreground(&self.root, &self.store, created);
        if auto_remove {
            // With its anonymous volumes, as docker run --rm.
            let _ = mounts::remove_container(&self.root, &self.store, &id, true);
        }
        result.map(Ran::Exited)
    }

    /// Starts a stopped container in the background (`start`); a running one is left alone.
    pub fn start(&self, state: &ContainerState) -> Result<()> {
        if state.status == Status::Running {
            return Ok(());
        }
        self.start_detached(state, false).map(drop)
    }

    /// `start -a`: starts a stopped container attached to this process's stdio (a running
    /// one is attached to), until it exits or the user detaches.
    pub fn start_attached(&self, state: &ContainerState, opts: &attach::AttachOptions) -> Result<attach::Ended> {
        if state.status == Status::Running {
            return self.attach(state, opts);
        }
        let socket = self.start_detached(state, true)?;
        let ended = self.attach_to(socket, &self.load(&state.id)?, opts);
        if let Ok(attach::Ended::Exited(_)) = &ended {
            // The record says it exited once its shim is done with it (--rm: removed).
            self.wait_exit(&state.id, Duration::from_secs(10));
        }
        ended
    }

    /// Starts the detached supervisor and waits until it reports the container running.
    /// With `attach_first`, the supervisor waits for this process to attach before it starts
    /// the container, so no output is missed; the attached socket is returned.
    fn start_detached(&self, state: &ContainerState, attach_first: bool) -> Result<Option<std::os::unix::net::UnixStream>> {
        use std::io::BufRead;
        let exe = std::env::current_exe().map_err(|e| Error::io("locating", "the builder binary", e))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--root").arg(&self.root).arg("__shim").arg(&state.id);
        if attach_first {
            cmd.arg("--attach-first");
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::io("starting the container supervisor", &exe, e))?;
        let mut line = String::new();
        let mut socket = None;
        if let Some(out) = child.stdout.take() {
            let mut out = std::io::BufReader::new(out);
            out.read_line(&mut line).map_err(|e| Error::io("reading from the supervisor", &exe, e))?;
            if attach_first && line.starts_with("listening") {
                socket = Some(attach::connect(&self.dir_of(&state.id))?);
                line.clear();
                out.read_line(&mut line).map_err(|e| Error::io("reading from the supervisor", &exe, e))?;
            }
        }
        if let Some(err) = line.strip_prefix("error: ") {
            let _ = child.wait();
            return Err(Error::NotStarted { id: state.id.clone(), reason: err.trim().to_string() });
        }
        if !line.starts_with("running") {
            let _ = child.wait();
            let s = self.store.load(&state.id)?;
            return Err(Error::NotStarted { id: state.id.clone(), reason: format!("status {:?}", s.status) });
        }
        Ok(socket)
    }

    /// Waits up to `timeout` for the container to stop running; false if it still runs.
    pub fn wait_exit(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.store.load(id) {
                Ok(s) if s.status == Status::Running => {}
                _ => return true,
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 10 s) for the supervisor of a container that stopped running to finish:
    /// it lets go of the network (ports, address, name) after recording the exit, and a
    /// command that returns before that would race it.
    fn wait_supervisor(&self, id: &str) {
        let Ok(s) = self.store.load(id) else { return };
        let Some(pid) = s.supervisor.filter(|p| *p != std::process::id() as i32) else { return };
        let deadline = Instant::now() + Duration::from_secs(10);
        while supervisor_alive(pid) && Instant::now() < deadline {
            // Restarting (a restart policy): it is not going away.
            if self.store.load(id).is_ok_and(|s| s.status == Status::Running) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the container has stopped (a Created one: started and stopped) and returns
    /// its exit code; an error if it is removed meanwhile.
    pub fn wait(&self, state: &ContainerState) -> Result<i32> {
        loop {
            let s = self.store.load(&state.id).map_err(|_| Error::option("wait", &state.name, "the container was removed"))?;
            if s.status == Status::Exited {
                return Ok(s.exit_code.unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Records that the user stopped the container, so its supervisor does not restart it
    /// (also while it waits to restart one that exited).
    fn mark_stopped_by_user(&self, id: &str) -> Result<()> {
        let mut s = self.store.load(id)?;
        if !s.stopped_by_user && s.restart_policy != runtime::restart::RestartPolicy::No {
            s.stopped_by_user = true;
            self.store.save(&s)?;
        }
        Ok(())
    }

    /// The container's stop signal (`--stop-signal`, the image's STOPSIGNAL, else SIGTERM),
    /// then SIGKILL after `grace` (`None`: its `--stop-timeout`, else 10 seconds).
    pub fn stop(&self, state: &ContainerState, grace: Option<Duration>) -> Result<()> {
        self.mark_stopped_by_user(&state.id)?;
        if state.status != Status::Running {
            return Ok(());
        }
        let Some(pid) = state.pid else { return Ok(()) };
        let grace = grace.unwrap_or(Duration::from_secs(state.stop_timeout.unwrap_or(10)));
        runtime::tty::signal_process(pid, signal(state.stop_signal.as_deref().unwrap_or("TERM")))?;
        if state.paused {
            // A frozen process acts on the signal once thawed, as with Docker.
            self.unpause(state)?;
        }
        if !self.wait_exit(&state.id, grace) {
            runtime::tty::signal_process(pid, signal("KILL"))?;
            self.wait_exit(&state.id, Duration::from_secs(10));
        }
        self.wait_supervisor(&state.id);
        Ok(())
    }

    /// Sends signal number `sig` to the container's first process.
    pub fn kill(&self, state: &ContainerState, sig: i32) -> Result<()> {
        let pid = state.pid.filter(|_| state.status == Status::Running).ok_or_else(|| Error::NotRunning { name: state.name.clone() })?;
        // A signal that ends it counts as the user's stop; a HUP to reload does not.
        if ["KILL", "TERM", "INT", "QUIT"].iter().any(|n| signal(n) == sig) {
            self.mark_stopped_by_user(&state.id)?;
        }
        runtime::tty::signal_process(pid, sig)?;
        if state.paused {
            // A frozen process acts on the signal once thawed, as with Docker.
            self.unpause(state)?;
        }
        if sig == signal("KILL") {
            // As docker: after SIGKILL the container is recorded as exited before kill returns.
            self.wait_exit(&state.id, Duration::from_secs(10));
        }
        Ok(())
    }

    /// Removes the container; a running one only with `force` (killed first). It lets go of
    /// its volumes; with `volumes` (`rm -v`) the anonymous ones made for it are removed too.
    pub fn remove(&self, state: &ContainerState, force: bool, volumes: bool) -> Result<()> {
        if state.status == Status::Running {
            if !force {
                return Err(Error::StillRunning { name: state.name.clone() });
            }
            if let Some(pid) = state.pid {
                runtime::tty::signal_process(pid, signal("KILL"))?;
            }
            if state.paused {
                let _ = self.unpause(state);
            }
            self.wait_exit(&state.id, Duration::from_secs(10));
            self.wait_supervisor(&state.id);
        }
        network::forget(&self.root, &state.id);
        mounts::remove_container(&self.root, &self.store, &state.id, volumes)?;
        shim::journal(&self.store, state, "destroy", &[]);
        Ok(())
    }

    /// The ports a running container publishes (`port`, the PORTS column of `ps`).
    pub fn ports(&self, state: &ContainerState) -> Vec<network::PortBinding> {
        if state.status != Status::Running {
            return Vec::new();
        }
        network::record(&self.root, &state.id).map(|r| r.ports).unwrap_or_default()
    }

    /// The container's address on its (first) network, while it runs.
    pub fn address(&self, state: &ContainerState) -> Option<std::net::Ipv4Addr> {
        network::record(&self.root, &state.id).filter(|_| state.status == Status::Running).and_then(|r| r.ip())
    }

    /// The networks a container joins when it starts (empty: host or none).
    pub fn networks_of(&self, state: &ContainerState) -> Result<Vec<network::Join>> {
        let Some(req) = network_request(&self.store.dir_of(&state.id))? else { return Ok(Vec::new()) };
        Ok(if req.networks.is_empty() { vec![network::Join { network: network::BRIDGE.into(), ..Default::default() }] } else { req.networks })
    }

    /// `network connect`: a running container gets the interface now, and keeps the network
    /// for its next starts; a stopped one gets it when it starts.
    pub fn connect(&self, state: &ContainerState, join: &network::Join) -> Result<()> {
        let dir = self.store.dir_of(&state.id);
        let net = network::Networks::open(&self.root).get(&join.network)?;
        let mut req = network_request(&dir)?.ok_or_else(|| Error::option("container", &state.name, "it shares the host's network or another container's (or has none), so it cannot be connected to a network"))?;
        if req.networks.is_empty() {
            req.networks.push(network::Join { network: network::BRIDGE.into(), ..Default::default() });
        }
        let names = network::Networks::open(&self.root);
        if req.networks.iter().any(|j| names.get(&j.network).is_ok_and(|n| n.id == net.id)) {
            return Err(network::Error::AlreadyConnected { container: state.name.clone(), network: net.name }.into());
        }
        if let Some(ip) = join.ip {
            network::check_address(&net, ip)?;
        }
        if state.status == Status::Running {
            let pid = state.pid.ok_or_else(|| Error::NotRunning { name: state.name.clone() })?;
            let ep = network::connect(&self.root, &state.id, pid, join)?;
            if ep.dns {
                let mut spec = runtime::read_bundle(&dir)?;
                set_resolv_conf(&mut spec, network::resolv::for_user_network());
                let body = spec.annotations().as_ref().and_then(|a| a.get(runtime::spec::ANNOTATION_RESOLV_CONF)).cloned().unwrap_or_default();
                network::use_embedded_dns(&dir.join("resolv.conf"), &body)?;
            }
        }
        req.networks.push(network::Join { network: net.name, aliases: join.aliases.clone(), ip: join.ip });
        write_network_request(&dir, &req)
    }

    /// `network disconnect`: the reverse of [`Containers::connect`].
    pub fn disconnect(&self, state: &ContainerState, network: &str) -> Result<()> {
        let dir = self.store.dir_of(&state.id);
        let net = network::Networks::open(&self.root).get(network)?;
        let names = network::Networks::open(&self.root);
        let mut req = network_request(&dir)?.unwrap_or_default();
        if req.networks.is_empty() {
            req.networks.push(network::Join { network: network::BRIDGE.into(), ..Default::default() });
        }
        let before = req.networks.len();
        req.networks.retain(|j| names.get(&j.network).map_or(true, |n| n.id != net.id));
        if req.networks.len() == before {
            return Err(network::Error::NotConnected { container: state.name.clone(), network: net.name }.into());
        }
        if let Some(pid) = state.pid.filter(|_| state.status == Status::Running) {
            network::disconnect(&self.root, &state.id, pid, network)?;
        }
        write_network_request(&dir, &req)
    }

    /// Renames a container; the new name must be valid and free.
    pub fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        if !config::valid_name(new_name) {
            return Err(Error::option("container name", new_name, "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, two characters at least"));
        }
        let mut state = self.store.find(key)?;
        if self.store.list()?.iter().any(|c| c.name == new_name && c.id != state.id) {
            return Err(Error::NameInUse { name: new_name.to_string() });
        }
        state.name = new_name.to_string();
        self.store.save(&state)?;
        Ok(())
    }

    /// Finds an image locally, pulling it through the registry client if it is missing.
    fn image(&self, store: &oci::Store, name: &str, progress: &dyn registry::Progress) -> Result<oci::LocalImage> {
        image::find_or_pull(store, &self.registry, name, progress)
    }
}

/// The signal number of a name ("TERM", "SIGKILL", "9").
pub fn signal(name: &str) -> i32 {
    runtime::tty::signal_number(name).unwrap_or(9)
}

/// `-p` as `HostConfig.PortBindings`: `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`.
fn port_bindings(ports: &[network::PortBinding]) -> std::collections::BTreeMap<String, Vec<settings::HostPort>> {
    let mut out: std::collections::BTreeMap<String, Vec<settings::HostPort>> = std::collections::BTreeMap::new();
    for p in ports {
        let host_ip = if p.host_ip.is_unspecified() { String::new() } else { p.host_ip.to_string() };
        let host_port = match (p.host_port, p.host_port_end) {
            (0, _) => String::new(),
            (first, last) if last > first => format!("{first}-{last}"),
            (port, _) => port.to_string(),
        };
        out.entry(format!("{}/{}", p.container_port, p.proto.as_str())).or_default().push(settings::HostPort { host_ip, host_port });
    }
    out
}

fn restart_policy(p: runtime::restart::RestartPolicy) -> settings::RestartPolicy {
    use runtime::restart::RestartPolicy as P;
    let (name, max) = match p {
        P::No => ("no", 0),
        P::Always => ("always", 0),
        P::UnlessStopped => ("unless-stopped", 0),
        P::OnFailure(n) => ("on-failure", n.unwrap_or(0)),
    };
    settings::RestartPolicy { name: name.into(), maximum_retry_count: max }
}

const NETWORK_REQUEST: &str = "network.json";
/// The id of the container whose network namespace this one joins (`--network container:…`).
const SHARED_NETWORK: &str = "network-container";

/// What Docker refuses beside `--network container:…`: the network is the other container's.
fn shared_network_conflicts(opts: &RunOptions) -> Result<()> {
    let refuse = |flag: &'static str, value: String| Err(Error::option(flag, &value, format!("conflicts with --network {} (the network, its ports, names and resolver are that container's)", opts.network)));
    if !opts.publish.is_empty() {
        return refuse("--publish", opts.publish.join(","));
    }
    if opts.publish_all {
        return refuse("--publish-all", "true".into());
    }
    if let Some(h) = &opts.hostname {
        return refuse("--hostname", h.clone());
    }
    if !opts.add_hosts.is_empty() {
        return refuse("--add-host", opts.add_hosts.join(","));
    }
    if !opts.dns.is_empty() || !opts.dns_search.is_empty() || !opts.dns_options.is_empty() {
        return refuse("--dns", opts.dns.iter().chain(&opts.dns_search).chain(&opts.dns_options).cloned().collect::<Vec<_>>().join(","));
    }
    if !opts.network_aliases.is_empty() {
        return refuse("--network-alias", opts.network_aliases.join(","));
    }
    if let Some(ip) = opts.ip {
        return refuse("--ip", ip.to_string());
    }
    if let Some(j) = opts.extra_networks.first() {
        return refuse("--network", j.network.clone());
    }
    Ok(())
}

/// The host name of a container, as its bundle has it (a joiner of its network shares it).
fn shared_hostname(store: &ContainerStore, other: &ContainerState) -> String {
    runtime::read_bundle(&store.dir_of(&other.id)).ok().and_then(|s| s.hostname().clone()).unwrap_or_else(|| other.id[..12].to_string())
}

/// The container whose network this one joins, if it was created with `--network container:…`.
pub(crate) fn shared_network(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(SHARED_NETWORK);
    match std::fs::read_to_string(&path) {
        Ok(id) => Ok(Some(id.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

fn write_network_request(dir: &Path, request: &network::Request) -> Result<()> {
    let path = dir.join(NETWORK_REQUEST);
    let body = serde_json::to_vec(request).map_err(|e| Error::io("encoding", &path, std::io::Error::other(e)))?;
    std::fs::write(&path, body).map_err(|e| Error::io("writing", &path, e))
}

/// What the container asks of the bridge network, if it is on one.
pub(crate) fn network_request(dir: &Path) -> Result<Option<network::Request>> {
    let path = dir.join(NETWORK_REQUEST);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::io("reading", &path, std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", &path, e)),
    }
}

/// Whether process `pid` is alive (a zombie is not).
fn supervisor_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The host's name, which a container on the host network takes (as Docker's).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "builder".into())
}

/// The container's `--dns*` options (JSON of [`config::Dns`]), applied to every resolv.conf it gets.
const ANNOTATION_DNS: &str = "org.builder.container.dns";

/// Sets the container's whole /etc/resolv.conf (with its `--dns*` options applied).
pub(crate) fn set_resolv_conf(spec: &mut runtime::Spec, body: String) {
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    let dns: Option<config::Dns> = annotations.get(ANNOTATION_DNS).and_then(|d| serde_json::from_str(d).ok());
    let body = match dns {
        Some(d) => d.apply(&body),
        None => body,
    };
    annotations.insert(runtime::spec::ANNOTATION_RESOLV_CONF.to_string(), body);
    spec.set_annotations(Some(annotations));
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Whether a container runs under a shim of its own rather than this process: detached ones,
/// those with a terminal (so `attach` reaches them) and those whose CLI passes no signals on,
/// unless an external runtime runs them.
fn under_shim(opts: &RunOptions) -> bool {
    opts.detach || ((opts.tty || opts.no_sig_proxy) && opts.runtime.is_none())
}

/// The signal `stop` sends first: `--stop-signal`, else the image's STOPSIGNAL (checked here,
/// so a bad one is refused before anything is written).
fn stop_signal(opts: &RunOptions, image: &oci::spec::Config) -> Result<Option<String>> {
    match &opts.stop_signal {
        Some(s) => {
            runtime::tty::signal_number(s).ok_or_else(|| Error::option("--stop-signal", s, "use a signal name (SIGINT, TERM) or number"))?;
            Ok(Some(s.clone()))
        }
        None => Ok(image.stop_signal().clone().filter(|s| runtime::tty::signal_number(s).is_some())),
    }
}
