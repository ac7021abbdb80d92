//! Supervision: the process that starts a container, waits for it and records how it ended.
//! In the foreground that is the CLI itself; a detached container gets its own supervisor,
//! the shim (a re-exec of the binary as `__shim ID`, in a session of its own).

use std::io::Write;
use std::path::Path;

use runtime::containers::{ContainerState, ContainerStore, Status};

use crate::error::{Error, Result};
use crate::logs::{LogFile, Stream};
use crate::{Created, now};

/// Runs the container with this process as its supervisor.
pub(crate) fn foreground(root: &Path, cstore: &ContainerStore, created: Created) -> Result<runtime::ExitStatus> {
    let Created { state, dir, mut spec, interactive, tty, external, .. } = created;
    let attachment = join_network(root, &dir, &state, &mut spec)?;
    let result = supervise(cstore, state, &dir, &spec, interactive, tty, external);
    if let Some(a) = attachment {
        a.detach();
    }
    result
}

/// Puts the container on its bridge network, if it asked for one: the spec then joins the
/// namespace made for it, and its /etc/hosts names its address.
fn join_network(root: &Path, dir: &Path, state: &ContainerState, spec: &mut runtime::Spec) -> Result<Option<network::Attachment>> {
    if let Some(other) = crate::shared_network(dir)? {
        share_network(root, dir, &other, spec)?;
        return Ok(None);
    }
    let Some(request) = crate::network_request(dir)? else { return Ok(None) };
    let attachment = network::attach(root, &state.id, &state.name, &request)?;
    runtime::spec::join_network(spec, &attachment.netns_path());
    let hostname = spec.hostname().clone().unwrap_or_default();
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    let extra = annotations.entry(runtime::spec::ANNOTATION_EXTRA_HOSTS.to_string()).or_default();
    if let Some(ip) = attachment.record.ip() {
        extra.push_str(&format!("{ip}\t{hostname}\n"));
    }
    spec.set_annotations(Some(annotations));
    crate::set_resolv_conf(spec, attachment.resolv_conf());
    Ok(Some(attachment))
}

/// `--network container:OTHER`: the spec joins OTHER's network namespace (it must be running)
/// and sees its /etc/hosts, resolv.conf and hostname, as Docker shares them.
fn share_network(root: &Path, dir: &Path, other: &str, spec: &mut runtime::Spec) -> Result<()> {
    let cstore = ContainerStore::open(root)?;
    let target = cstore.load(other).map_err(|_| Error::option("--network", &format!("container:{other}"), "that container no longer exists"))?;
    let pid = target.pid.filter(|_| target.status == Status::Running).ok_or_else(|| Error::option("--network", &format!("container:{}", target.name), "cannot join the network of a container that is not running"))?;
    runtime::spec::join_network(spec, Path::new(&format!("/proc/{pid}/ns/net")));
    let theirs = cstore.dir_of(other);
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (dest, file) in [("/etc/hosts", "hosts"), ("/etc/resolv.conf", "resolv.conf"), ("/etc/hostname", "hostname")] {
        let source = theirs.join(file);
        // Instead of this container's own file; the user's own mount at that path wins, as everywhere else.
        mounts.retain(|m| !(m.destination() == Path::new(dest) && m.source().as_deref() == Some(dir.join(file).as_path())));
        if source.exists() && !mounts.iter().any(|m| m.destination() == Path::new(dest)) {
            mounts.push(runtime::spec::bind_mount(&source, dest, false));
        }
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

fn supervise(cstore: &ContainerStore, mut state: ContainerState, dir: &Path, spec: &runtime::Spec, interactive: bool, tty: bool, external: Option<std::path::PathBuf>) -> Result<runtime::ExitStatus> {
    state.supervisor = Some(std::process::id() as i32);
    state.started_at = Some(now());
    state.status = Status::Running;
    if let Some(rt) = external {
        let ov = snapshot::Overlay { lowers: state.lowers.clone(), upper: dir.join("upper"), work: dir.join("work") };
        let guard = ov.mount(&dir.join("rootfs"))?;
        cstore.save(&state)?;
        journal(cstore, &state, "start", &[]);
        let status = runtime::run_external(&rt, dir, &state.id)?;
        drop(guard);
        return finish(cstore, state, status, false);
    }
    if tty {
        let mut container = runtime::start(dir, spec, runtime::Stdio::terminal())?;
        runtime::tty::forward_signals(container.pid())?;
        state.pid = Some(container.pid());
        state.cgroup_dirs = container.cgroup_dirs();
        cstore.save(&state)?;
        journal(cstore, &state, "start", &[]);
        let checker = crate::health::start(cstore, &state);
        let master = container.take_terminal().ok_or_else(|| Error::NotStarted { id: state.id.clone(), reason: "the container has no terminal".into() })?;
        crate::terminal::relay(master, interactive, Some(LogFile::open(dir)?))?;
        let oom = container.oom_killed();
        let status = container.wait()?;
        drop(checker);
        return finish(cstore, state, status, oom);
    }
    // The output goes to this terminal, to whoever attaches from another one (as Docker lets
    // them), and, as Docker keeps it, to the container's log. The input stays this terminal's.
    let server = crate::attach::Server::bind(dir, false)?;
    let (pipes, stdio) = OutputPipes::new(if interactive { runtime::Io::Inherit } else { runtime::Io::Null })?;
    let container = runtime::start(dir, spec, stdio)?;
    let out = Tee(Some(Box::new(std::io::stdout())), server.output(Stream::Stdout));
    let err = Tee(Some(Box::new(std::io::stderr())), server.output(Stream::Stderr));
    let copying = pipes.copy(LogFile::open(dir)?, Some(Box::new(out)), Some(Box::new(err)));
    runtime::tty::forward_signals(container.pid())?;
    state.pid = Some(container.pid());
    state.cgroup_dirs = container.cgroup_dirs();
    cstore.save(&state)?;
    journal(cstore, &state, "start", &[]);
    let checker = crate::health::start(cstore, &state);
    let (status, oom) = container.wait_with_oom()?;
    drop(checker);
    copying.finish();
    let result = finish(cstore, state, status, oom);
    server.exited(status.code());
    result
}

/// Writes to both: this process's own stream (until it fails: a closed terminal) and the
/// attached clients (each dropped when it fails), so neither holds up the other.
struct Tee(Option<Box<dyn Write + Send>>, Box<dyn Write + Send>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.1.write_all(buf);
        if let Some(w) = &mut self.0
            && w.write_all(buf).and_then(|_| w.flush()).is_err()
        {
            self.0 = None;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The state root of a container store (`<root>/containers/<id>` is a container's dir).
fn root_of(cstore: &ContainerStore, id: &str) -> std::path::PathBuf {
    cstore.dir_of(id).parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// Appends a container event to the journal of the container's root.
pub(crate) fn journal(cstore: &ContainerStore, state: &ContainerState, action: &str, extra: &[(&str, &str)]) {
    let mut attrs = vec![("image", state.image.as_str()), ("name", state.name.as_str())];
    attrs.extend_from_slice(extra);
    events::record(&root_of(cstore, &state.id), "container", action, &state.id, &attrs);
}

/// Records the end of a container (unless it is about to be removed).
fn finish(cstore: &ContainerStore, mut state: ContainerState, status: runtime::ExitStatus, oom: bool) -> Result<runtime::ExitStatus> {
    // A `rename` while it ran is kept.
    if let Ok(now) = cstore.load(&state.id) {
        // The cgroups `update` added while it ran go now (the start's own go with it).
        let added: Vec<_> = now.cgroup_dirs.iter().filter(|d| !state.cgroup_dirs.contains(d)).cloned().collect();
        runtime::cgroup::remove_dirs(&added);
        state.name = now.name;
        state.stopped_by_user = now.stopped_by_user;
    }
    journal(cstore, &state, "die", &[("exitCode", &status.code().to_string())]);
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

/// The detached supervisor (`__shim ID`): starts the container with its output in the log,
/// reports `running PID` (or `error: …`) on stdout to the process that started it, records
/// the container's exit, restarts it as its restart policy says (after Docker's backoff,
/// unless the user stopped it), and removes it if asked.
pub fn run(root: &Path, id: &str, attach_first: bool) -> Result<()> {
    runtime::tty::new_session()?;
    let cstore = ContainerStore::open(root)?;
    let mut state = cstore.load(id)?;
    let dir = cstore.dir_of(id);
    let mut spec = runtime::read_bundle(&dir)?;
    let attachment = match join_network(root, &dir, &state, &mut spec) {
        Ok(a) => a,
        Err(e) => {
            println!("error: {e}");
            state.status = Status::Exited;
            state.exit_code = Some(125);
            state.finished_at = Some(now());
            cstore.save(&state)?;
            return Err(e);
        }
    };
    // The network (namespace, address, ports) stays the same across restarts.
    // `attach` reaches the container's stdio through this shim for as long as it runs.
    let server = match crate::attach::Server::bind(&dir, attach_first) {
        Ok(s) => s,
        Err(e) => {
            println!("error: {e}");
            return Err(e);
        }
    };
    let result = restart_loop(root, &cstore, state, &dir, &spec, &server);
    if let Some(a) = attachment {
        a.detach();
    }
    result
}

/// Runs the container until it ends for good, restarting it as its policy says.
fn restart_loop(root: &Path, cstore: &ContainerStore, mut state: ContainerState, dir: &Path, spec: &runtime::Spec, server: &crate::attach::Server) -> Result<()> {
    use runtime::restart::{STABLE_RUN, backoff};
    let id = state.id.clone();
    let id = id.as_str();
    let log = LogFile::open(dir)?;
    let mut first = true;
    let mut in_a_row = 0;
    // A start by the user clears an earlier stop.
    state.stopped_by_user = false;
    let tty = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    loop {
        // With -i the container's stdin is a pipe this shim holds open for attached clients.
        let mut stdin_writer = None;
        let (pipes, stdio) = if tty {
            (None, runtime::Stdio::terminal())
        } else {
            let stdin = if state.open_stdin {
                let (r, w) = std::io::pipe().map_err(|e| Error::io("creating", "a pipe for the container's input", e))?;
                stdin_writer = Some(std::fs::File::from(std::os::fd::OwnedFd::from(w)));
                runtime::Io::Fd(r.into())
            } else {
                runtime::Io::Null
            };
            OutputPipes::new(stdin).map(|(p, s)| (Some(p), s))?
        };
        let mut container = match runtime::start(dir, spec, stdio) {
            Ok(c) => c,
            Err(e) => {
                if first {
                    println!("error: {e}");
                }
                state.status = Status::Exited;
                state.exit_code = Some(127);
                state.finished_at = Some(now());
                cstore.save(&state)?;
                return Err(e.into());
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
        journal(cstore, &state, "start", &[]);
        // A container made with -t keeps its terminal while nobody is attached, as Docker's
        // does: what it prints goes to the log, and its input stays open (a shell waits).
        let mut copying = pipes.map(|p| p.copy(log.clone(), Some(server.output(Stream::Stdout)), Some(server.output(Stream::Stderr))));
        let _terminal = match container.take_terminal() {
            Some(master) if tty => {
                use std::os::fd::AsFd;
                runtime::tty::set_default_window_size(master.as_fd());
                let dup = || master.try_clone().map_err(|e| Error::io("duplicating", "the container's terminal", e));
                let from = std::fs::File::from(dup()?);
                let (log, out) = (log.clone(), server.output(Stream::Stdout));
                copying = Some(Copying(vec![std::thread::spawn(move || crate::logs::pump(from, Stream::Stdout, Some(log), Some(out)))]));
                server.set_input(Some(std::fs::File::from(dup()?)), Some(dup()?));
                Some(master)
            }
            _ => {
                server.set_input(stdin_writer.take(), None);
                None
            }
        };
        if first {
            println!("running {}", container.pid());
            let _ = std::io::stdout().flush();
            first = false;
        }
        let started = std::time::Instant::now();
        let checker = crate::health::start(cstore, &state);
        let (status, oom) = container.wait_with_oom()?;
        drop(checker);
        if let Some(c) = copying {
            c.finish();
        }
        // `rm -f` may have removed the container while it ran.
        let Ok(now_state) = cstore.load(id) else {
            server.exited(status.code());
            return Ok(());
        };
        let restart = state.restart_policy.restarts(status.code(), state.restart_count, now_state.stopped_by_user);
        let auto_remove = state.auto_remove;
        finish(cstore, state, status, oom)?;
        server.exited(status.code());
        if !restart {
            if auto_remove {
                let _ = crate::mounts::remove_container(root, cstore, id, true);
            }
            return Ok(());
        }
        if started.elapsed() >= STABLE_RUN {
            in_a_row = 0;
        }
        std::thread::sleep(backoff(in_a_row));
        in_a_row += 1;
        // Stopped or removed by the user while waiting: stay down.
        match cstore.load(id) {
            Ok(s) if !s.stopped_by_user => {
                state = s;
                state.restart_count += 1;
            }
            _ => return Ok(()),
        }
    }
}

/// Pipes for a container's stdout and stderr, whose other ends the container gets.
struct OutputPipes {
    stdout: std::io::PipeReader,
    stderr: std::io::PipeReader,
}

/// The threads copying a container's output; [`Copying::finish`] waits until the container
/// has closed its side, so the log is complete before the exit is recorded.
struct Copying(Vec<std::thread::JoinHandle<()>>);

impl OutputPipes {
    fn new(stdin: runtime::Io) -> Result<(OutputPipes, runtime::Stdio)> {
        let io = |e| Error::io("creating", "a pipe for the container's output", e);
        let (stdout, out_w) = std::io::pipe().map_err(io)?;
        let (stderr, err_w) = std::io::pipe().map_err(io)?;
        Ok((OutputPipes { stdout, stderr }, runtime::Stdio { stdin, stdout: runtime::Io::Fd(out_w.into()), stderr: runtime::Io::Fd(err_w.into()) }))
    }

    /// Copies both streams into `log`, and each to its `also` writer.
    fn copy(self, log: std::sync::Arc<LogFile>, out: Option<Box<dyn Write + Send>>, err: Option<Box<dyn Write + Send>>) -> Copying {
        let log2 = log.clone();
        let (stdout, stderr) = (self.stdout, self.stderr);
        Copying(vec![
            std::thread::spawn(move || crate::logs::pump(stdout, Stream::Stdout, Some(log), out)),
            std::thread::spawn(move || crate::logs::pump(stderr, Stream::Stderr, Some(log2), err)),
        ])
    }
}

impl Copying {
    fn finish(self) {
        for t in self.0 {
            let _ = t.join();
        }
    }
}
