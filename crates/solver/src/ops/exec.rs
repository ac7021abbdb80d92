//! Exec ops (RUN): a process in the sandbox on an overlay of the input snapshot; the overlay's
//! upper dir becomes the new layer. The key is the op, its inputs' keys and the content of what
//! its bind mounts read from local sources; secrets and ssh agents are never part of it.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use graph::{CacheSharing, ExecOp, MountKind};

use super::local::{Excludes, clean};
use super::{Output, Solved, StepCtx, local_of, snapshot_of};
use crate::cache::KeyHasher;
use crate::cancel::Cancel;
use crate::error::{Result, SolveError};
use crate::progress::Event;
use crate::provenance::Provenance;
use crate::view::View;

/// Adds to the step's key the content of what each bind mount reads from a local source, and
/// to its provenance the environment it runs with (by digest).
pub(crate) fn add_to_key(ctx: &StepCtx<'_>, e: &ExecOp, inputs: &[Solved], h: &mut KeyHasher, prov: &mut Provenance) -> Result<()> {
    for kv in &e.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        prov.inputs.insert(format!("env:{k}"), crate::provenance::digest_of(v.as_bytes()));
    }
    for (n, m) in e.mounts.iter().enumerate() {
        if let MountKind::Bind { input, source, .. } = &m.kind
            && let Some(l) = local_of(inputs, *input) {
                super::local::add_sources(ctx, l, std::slice::from_ref(source), &Excludes::default(), &format!("bind-{n}"), h, prov)?;
            }
    }
    Ok(())
}

/// Prepares the mounts and runs the process on top of input 0; returns the upper dir.
pub(crate) fn execute(ctx: &StepCtx<'_>, e: &ExecOp, inputs: &[Solved], work: &Path) -> Result<PathBuf> {
    let step = ctx.step;
    let lowers = ctx.layer_dirs(snapshot_of(step, inputs, 0)?)?;
    let mut views = Vec::new();
    let mut proxies = Vec::new();
    let mut mount_sources = Vec::new();
    for (n, m) in e.mounts.iter().enumerate() {
        let src = match &m.kind {
            MountKind::Bind { input, source, .. } => {
                let dir = match inputs.get(*input).map(|s| &s.output) {
                    Some(Output::Local(l)) => l.dir.clone(),
                    Some(Output::Http { dir, .. }) => dir.clone(),
                    Some(Output::Snapshot { snapshot, .. }) => {
                        let view = View::open(&ctx.layer_dirs(snapshot)?, &work.join(format!("mnt{n}")))?;
                        let p = view.path().to_path_buf();
                        views.push(view);
                        p
                    }
                    None => return Err(SolveError::step(step, "bind mount input is missing")),
                };
                // Symlinks in the source path stay inside the source.
                MountSource::Dir(super::file::resolve_in_root(&dir, source))
            }
            MountKind::Cache { id, sharing, from, source, uid, gid, mode, .. } => {
                let seed = match from.and_then(|i| inputs.get(i)).map(|s| &s.output) {
                    Some(Output::Snapshot { snapshot, .. }) => {
                        let view = View::open(&ctx.layer_dirs(snapshot)?, &work.join(format!("mnt{n}")))?;
                        let p = view.path().join(clean(source));
                        views.push(view);
                        Some(p)
                    }
                    Some(Output::Local(l)) => Some(l.dir.join(clean(source))),
                    _ => None,
                };
                let (dir, lock) = cache_mount_dir(&ctx.index.mount_dir(id), *sharing, *uid, *gid, *mode, seed.as_deref())?;
                MountSource::Cache { dir, lock }
            }
            MountKind::Tmpfs { .. } => MountSource::Tmpfs,
            MountKind::Ssh { id, required, uid, gid, mode } => match ctx.ssh.get(id) {
                Some(agent) => {
                    // A socket of this step's own, relayed to the agent.
                    let sock = work.join(format!("ssh-{n}.sock"));
                    proxies.push(crate::ssh::AgentProxy::start(agent, &sock, *uid, *gid, *mode)?);
                    MountSource::Socket(sock)
                }
                None if *required => return Err(SolveError::step(step, format!("ssh agent {id:?} not given: pass --ssh {id}[=SOCKET|KEY]"))),
                None => MountSource::Nothing,
            },
            MountKind::Secret { id, required, .. } => match ctx.secrets.get(id) {
                Some(b) => MountSource::Secret(b.clone()),
                None if *required => return Err(SolveError::step(step, format!("secret {id} not found: pass it with --secret id={id},src=FILE"))),
                None => MountSource::Nothing,
            },
        };
        mount_sources.push(src);
    }
    let d = ctx.vertex;
    let progress = ctx.progress.clone();
    let on_output = move |b: &[u8]| progress(Event::Log { vertex: d, bytes: b.to_vec() });
    let upper = run(ExecRequest { step, op: e, lowers, mount_sources, work, cancel: ctx.cancel, on_output: &on_output, helper: ctx.exec_helper })?;
    drop(views);
    drop(proxies);
    Ok(upper)
}

/// A directory a RUN --mount binds (already resolved by the scheduler).
pub enum MountSource {
    /// A read-only view or a directory of another input (`bind`), at `source` within it.
    Dir(PathBuf),
    /// A persistent cache directory.
    Cache { dir: PathBuf, lock: Option<fs::File> },
    Tmpfs,
    /// Bytes of a secret.
    Secret(Vec<u8>),
    /// An ssh-agent socket for this step (`type=ssh`).
    Socket(PathBuf),
    /// A missing optional secret or ssh agent: nothing is mounted.
    Nothing,
}

pub struct ExecRequest<'a> {
    pub step: &'a str,
    pub op: &'a ExecOp,
    /// Layer directories of the input, bottom first.
    pub lowers: Vec<PathBuf>,
    /// The mounts, in the op's order.
    pub mount_sources: Vec<MountSource>,
    /// Private work directory (upper, work, bundle live here).
    pub work: &'a Path,
    pub cancel: &'a Cancel,
    pub on_output: &'a (dyn Fn(&[u8]) + Sync),
    /// Run the sandbox from this single-threaded helper command (`builder __build-exec BUNDLE`)
    /// instead of from this (multi-threaded) process.
    pub helper: Option<&'a [String]>,
}

/// Runs the process; returns the upper dir (the new layer's content) on success.
pub fn run(mut req: ExecRequest<'_>) -> Result<PathBuf> {
    if req.cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    let upper = req.work.join("upper");
    let ovl_work = req.work.join("work");
    let rootfs = req.work.join("rootfs");
    let bundle = req.work.join("bundle");
    let secrets = req.work.join("secrets");
    for d in [&upper, &ovl_work, &rootfs, &bundle] {
        fs::create_dir_all(d).map_err(SolveError::io("create", d))?;
    }
    // What the mounts will create in the upper dir if missing; removed afterwards.
    let mut stub_targets: Vec<String> = ["/proc", "/sys", "/dev", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].iter().map(|s| s.to_string()).collect();
    let mut mounts = Vec::new();
    let mut _locks = Vec::new();
    let mount_sources = std::mem::take(&mut req.mount_sources);
    for (m, src) in req.op.mounts.iter().zip(mount_sources) {
        stub_targets.push(m.target.clone());
        match (&m.kind, src) {
            (MountKind::Bind { readwrite, .. }, MountSource::Dir(dir)) => {
                if *readwrite {
                    // Writes are discarded: bind a private copy.
                    let copy = req.work.join(format!("bind-rw-{}", mounts.len()));
                    copy_tree(&dir, &copy)?;
                    mounts.push(runtime::bind_mount(&copy, &m.target, false));
                } else {
                    mounts.push(runtime::bind_mount(&dir, &m.target, true));
                }
            }
            (MountKind::Cache { readonly, .. }, MountSource::Cache { dir, lock }) => {
                _locks.extend(lock);
                mounts.push(runtime::bind_mount(&dir, &m.target, *readonly));
            }
            (MountKind::Tmpfs { .. }, _) => mounts.push(runtime::tmpfs_mount(&m.target)),
            (MountKind::Secret { uid, gid, mode, .. }, MountSource::Secret(bytes)) => {
                fs::create_dir_all(&secrets).map_err(SolveError::io("create", &secrets))?;
                let file = secrets.join(format!("{}", mounts.len()));
                fs::write(&file, &bytes).map_err(SolveError::io("write secret", &file))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&file, fs::Permissions::from_mode(*mode)).map_err(SolveError::io("chmod", &file))?;
                std::os::unix::fs::chown(&file, Some(*uid), Some(*gid)).map_err(SolveError::io("chown", &file))?;
                mounts.push(runtime::bind_mount(&file, &m.target, true));
            }
            (MountKind::Ssh { .. }, MountSource::Socket(sock)) => mounts.push(runtime::bind_mount(&sock, &m.target, false)),
            (_, MountSource::Nothing) => {}
            _ => return Err(SolveError::step(req.step, format!("mount at {} has no source", m.target))),
        }
    }
    let existed: Vec<bool> = stub_targets.iter().map(|t| exists_in(&req.lowers, t)).collect();
    let lowers_top_first: Vec<PathBuf> = req.lowers.iter().rev().cloned().collect();
    // Overlay needs at least one lower dir: an empty one stands in for scratch.
    let lowers_top_first = if lowers_top_first.is_empty() {
        let empty = req.work.join("empty");
        fs::create_dir_all(&empty).map_err(SolveError::io("create", &empty))?;
        vec![empty]
    } else {
        lowers_top_first
    };
    let opts = runtime::SpecOptions {
        rootfs: rootfs.clone(),
        args: req.op.args.clone(),
        env: req.op.env.clone(),
        cwd: req.op.cwd.clone(),
        user: req.op.user.clone(),
        hostname: "buildkitsandbox".into(),
        network: match req.op.network {
            graph::Network::Host => runtime::Network::Host,
            graph::Network::None => runtime::Network::None,
        },
        mounts,
        overlay: Some(runtime::OverlayRootfs { lowers: lowers_top_first, upper: upper.clone(), work: ovl_work.clone() }),
        // No sync of the upper dir when the sandbox ends: the cache makes layers durable itself
        // (see "Durability" in `cache`).
        volatile: true,
        extra_hosts: req.op.extra_hosts.clone(),
        ..Default::default()
    };
    let mut spec = runtime::build_spec(&opts).map_err(|e| SolveError::step(req.step, e.to_string()))?;
    if req.op.security == graph::Security::Insecure {
        spec = runtime::spec::make_insecure(&spec).map_err(|e| SolveError::step(req.step, e.to_string()))?;
    }
    // BuildKit names the sandbox `buildkitsandbox` but sets no HOSTNAME variable (the runtime adds
    // one for `builder run`, as Docker does for containers); a RUN that saves its env must not differ.
    if !req.op.env.iter().any(|e| e.starts_with("HOSTNAME="))
        && let Some(p) = spec.process_mut().as_mut() {
            let env: Vec<String> = p.env().clone().unwrap_or_default().into_iter().filter(|e| !e.starts_with("HOSTNAME=")).collect();
            p.set_env(Some(env));
        }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SolveError::step(req.step, format!("creating output pipe: {e}")))?;
    let tail = Mutex::new(Vec::<u8>::new());
    let started = std::time::Instant::now();
    let status = std::thread::scope(|s| -> Result<runtime::ExitStatus> {
        let reader = s.spawn(|| {
            let mut f = fs::File::from(rd);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        (req.on_output)(&buf[..n]);
                        if let Ok(mut t) = tail.lock() {
                            t.extend_from_slice(&buf[..n]);
                            if t.len() > 8192 {
                                let cut = t.len() - 8192;
                                t.drain(..cut);
                            }
                        }
                    }
                }
            }
        });
        let result = match req.helper {
            Some(helper) => run_helper(helper, &bundle, &spec, wr, &req),
            None => run_in_process(&bundle, &spec, wr, &req),
        };
        let _ = reader.join();
        result
    })?;
    tracing::debug!(step = req.step, elapsed_ms = started.elapsed().as_millis() as u64, %status, "sandbox exited");
    if req.cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    if !status.success() {
        let t = tail.lock().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        let last: Vec<&str> = lines.iter().rev().take(10).rev().cloned().collect();
        let tail = if last.is_empty() { String::new() } else { format!("\n  last output:\n    {}", last.join("\n    ")) };
        return Err(SolveError::ExecFailed { step: req.step.to_string(), command: shown_command(&req.op.args), code: status.code(), tail });
    }
    for (t, existed) in stub_targets.iter().zip(existed) {
        if !existed {
            remove_stub(&upper, t);
        }
    }
    Ok(upper)
}

/// Starts the sandbox from this process (the runtime may be called from several threads).
fn run_in_process(bundle: &Path, spec: &oci_spec::runtime::Spec, out: OwnedFd, req: &ExecRequest<'_>) -> Result<runtime::ExitStatus> {
    let err: OwnedFd = out.try_clone().map_err(SolveError::io("dup pipe", bundle))?;
    let stdio = runtime::Stdio::fds(None, out, err);
    match runtime::start(bundle, spec, stdio) {
        Ok(container) => {
            let pid = container.pid();
            req.cancel.add(pid);
            let r = container.wait().map_err(|e| SolveError::step(req.step, e.to_string()));
            req.cancel.remove(pid);
            r
        }
        Err(e) => Err(SolveError::step(req.step, format!("starting the sandbox: {e}{}", foreign_program_hint(&e)))),
    }
}

/// Why a program may not start: one built for another platform (`--platform`, or a base image
/// of another architecture) runs only through an emulator the kernel knows of.
fn foreign_program_hint(e: &runtime::Error) -> String {
    match e {
        runtime::Error::Exec { errno: nix::errno::Errno::ENOEXEC, .. } => format!(
            " (the program is not built for this machine, {}: running programs of another platform needs an emulator registered with binfmt_misc, e.g. Debian's qemu-user-static)",
            oci::Platform::host()
        ),
        _ => String::new(),
    }
}

/// Starts the sandbox from a fresh single-threaded helper process: creating a container
/// clones the calling process, which is only safe when no other thread can hold a lock
/// (an allocator lock, say) at that moment. The helper dies with this process.
fn run_helper(helper: &[String], bundle: &Path, spec: &oci_spec::runtime::Spec, out: OwnedFd, req: &ExecRequest<'_>) -> Result<runtime::ExitStatus> {
    runtime::write_bundle(bundle, spec).map_err(|e| SolveError::step(req.step, format!("writing the sandbox bundle: {e}")))?;
    let err: OwnedFd = out.try_clone().map_err(SolveError::io("dup pipe", bundle))?;
    let (exe, args) = helper.split_first().ok_or_else(|| SolveError::step(req.step, "empty helper command"))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .arg(bundle)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::from(err))
        .spawn()
        .map_err(|e| SolveError::step(req.step, format!("starting the sandbox helper {exe}: {e}")))?;
    let pid = child.id() as i32;
    req.cancel.add(pid);
    let status = child.wait();
    req.cancel.remove(pid);
    let status = status.map_err(|e| SolveError::step(req.step, format!("waiting for the sandbox helper: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => runtime::ExitStatus::Code(c),
        (None, Some(sig)) => runtime::ExitStatus::Signal(sig),
        _ => runtime::ExitStatus::Code(255),
    })
}

fn shown_command(args: &[String]) -> String {
    if args.len() == 3 && args[1] == "-c" {
        format!("{} -c {}", args[0], args[2])
    } else {
        args.join(" ")
    }
}

/// Whether `target` exists in any of the layers (whiteouts ignored: a stub we would remove is
/// empty anyway).
fn exists_in(layers: &[PathBuf], target: &str) -> bool {
    let rel = target.trim_start_matches('/');
    layers.iter().any(|l| fs::symlink_metadata(l.join(rel)).is_ok())
}

/// Removes an empty mount-point stub and the empty parents created for it.
fn remove_stub(upper: &Path, target: &str) {
    let rel = target.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let mut p = upper.join(rel);
    let removable = match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::read_dir(&p).map(|mut r| r.next().is_none()).unwrap_or(false),
        Ok(m) if m.is_file() => m.len() == 0,
        _ => false,
    };
    if !removable {
        return;
    }
    let _ = fs::remove_dir(&p).or_else(|_| fs::remove_file(&p));
    while let Some(parent) = p.parent().map(Path::to_path_buf) {
        if parent == upper || !parent.starts_with(upper) {
            break;
        }
        if fs::remove_dir(&parent).is_err() {
            break;
        }
        p = parent;
    }
}

/// Copies a directory tree (for read-write bind mounts whose writes are discarded).
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .map_err(SolveError::io("run cp -a for", src))?;
    if !status.success() {
        return Err(SolveError::Other(format!("copying {} for a read-write bind mount failed", src.display())));
    }
    Ok(())
}

/// Prepares a `type=cache` mount directory: created with uid/gid/mode the first time; a
/// `locked` mount is held exclusively, a `private` one that is busy gets a fresh directory.
pub fn cache_mount_dir(base: &Path, sharing: CacheSharing, uid: u32, gid: u32, mode: u32, seed: Option<&Path>) -> Result<(PathBuf, Option<fs::File>)> {
    let dir = base.join("data");
    if !dir.exists() {
        fs::create_dir_all(base).map_err(SolveError::io("create", base))?;
        let tmp = base.join(format!("data.tmp{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        match seed {
            Some(s) => copy_tree(s, &tmp)?,
            None => fs::create_dir(&tmp).map_err(SolveError::io("create", &tmp))?,
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(SolveError::io("chmod", &tmp))?;
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(SolveError::io("chown", &tmp))?;
        if fs::rename(&tmp, &dir).is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
    }
    let lock_path = base.join("lock");
    let lock = fs::File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(SolveError::io("open", &lock_path))?;
    match sharing {
        CacheSharing::Shared => Ok((dir, None)),
        CacheSharing::Locked => {
            fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(SolveError::io("lock", &lock_path))?;
            Ok((dir, Some(lock)))
        }
        CacheSharing::Private => {
            if fs4::fs_std::FileExt::try_lock_exclusive(&lock).is_ok() {
                Ok((dir, Some(lock)))
            } else {
                let private = base.join(format!("private-{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
                fs::create_dir_all(&private).map_err(SolveError::io("create", &private))?;
                Ok((private, None))
            }
        }
    }
}
