//! The container's setup, decided in the parent and carried out by the child.
//!
//! [`Plan::from_spec`] turns a runtime spec into C strings and flags (it may allocate
//! and fail with a readable error); [`Plan::prepare_root`] and [`Plan::become_process`]
//! then only make system calls through a [`Syscall`], in a fixed order:
//!
//! 1. make every mount private, assemble the root (overlay or self-bind);
//! 2. take detached copies of the bind-mount sources while the host is still visible;
//! 3. `pivot_root` into the root and detach the old one;
//! 4. mount /proc, /dev, /sys, …, attach the binds, create device nodes;
//! 5. write the sysctls, mask and write-protect Docker's paths, make the root read-only if asked;
//! 6. hostname, rlimits, working directory;
//! 7. drop the bounding set, switch groups and user, set capabilities,
//!    no_new_privs, parent-death signal, and finally the seccomp filters.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};

use crate::caps;
use crate::error::{Error, Result};
use crate::seccomp;
use crate::spec;
use crate::syscall::Syscall;

/// A setup step that failed, naming the path it was working on.
#[derive(Debug)]
pub struct Failure<'a> {
    pub step: &'static str,
    pub path: Option<&'a CStr>,
    pub errno: Errno,
}

type Step<'a, T = ()> = std::result::Result<T, Failure<'a>>;

fn fail<'a>(step: &'static str, path: Option<&'a CStr>) -> impl FnOnce(Errno) -> Failure<'a> {
    move |errno| Failure { step, path, errno }
}

enum MountKind {
    /// A filesystem mount (proc, tmpfs, sysfs, ...).
    Fs { source: CString, fstype: CString, flags: u64, data: Option<CString> },
    /// A bind mount; the source is opened before pivot_root.
    Bind { source: CString, is_file: bool, readonly: bool, slot: usize },
}

struct MountStep {
    target: CString,
    kind: MountKind,
}

struct Overlay {
    lowers: Vec<CString>,
    upper: CString,
    work: CString,
    volatile: bool,
    /// mount(2) options for kernels without `lowerdir+` (before 6.8), when they fit a page.
    legacy_options: Option<CString>,
}

/// Everything the child needs, prepared before it exists.
pub struct Plan {
    pub namespaces: nix::sched::CloneFlags,
    /// An existing network namespace to join (`path` of the spec's network namespace).
    pub net_path: Option<std::path::PathBuf>,
    rootfs: CString,
    overlay: Option<Overlay>,
    mounts: Vec<MountStep>,
    bind_fds: Vec<Cell<RawFd>>,
    create_devices: bool,
    masked: Vec<CString>,
    readonly: Vec<CString>,
    readonly_rootfs: bool,
    hostname: Option<CString>,
    /// `linux.sysctl`: `/proc/sys/…` paths and values, written in the container's namespaces.
    sysctls: Vec<(CString, CString)>,
    rlimits: Vec<(u32, u64, u64)>,
    cwd: CString,
    uid: u32,
    gid: u32,
    additional_gids: Vec<libc::gid_t>,
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    last_cap: u32,
    no_new_privs: bool,
    seccomp: Option<Arc<seccomp::Filters>>,
    pub terminal: bool,
    pub init: bool,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

fn cstr(s: impl AsRef<std::ffi::OsStr>, what: &str) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(s.as_ref().as_bytes()).map_err(|_| Error::InvalidSpec(format!("{what} contains a NUL byte")))
}

/// mount(8)-style options -> (flags, data).
fn mount_options(options: &[String]) -> (u64, Vec<String>) {
    let mut flags = 0u64;
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "noatime" => (libc::MS_NOATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable" | "runbindable" | "async" | "defaults" => (0, 0),
            other => {
                data.push(other.to_string());
                (0, 0)
            }
        };
        flags |= set;
        flags &= !clear;
    }
    (flags, data)
}

#[allow(clippy::unnecessary_cast)] // the constants are c_int on some libcs
fn rlimit_resource(t: PosixRlimitType) -> u32 {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as u32
}

impl Plan {
    /// Decides the whole setup of `spec` (a bundle at `bundle`). Relative paths
    /// (root, bind sources) are relative to the bundle.
    pub fn from_spec(bundle: &Path, spec: &Spec) -> Result<Plan> {
        let root = spec.root().as_ref().ok_or_else(|| Error::InvalidSpec("config.json has no root".into()))?;
        let rootfs = absolute(bundle, root.path());
        let process = spec.process().as_ref().ok_or_else(|| Error::InvalidSpec("config.json has no process".into()))?;
        let args: Vec<String> = process.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(Error::InvalidSpec("process.args is empty".into()));
        }
        let linux = spec.linux().as_ref();
        let mut namespaces = nix::sched::CloneFlags::empty();
        let mut net_path = None;
        for ns in linux.and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
            if let Some(path) = ns.path() {
                // A network namespace made beforehand (a bridge network's): joined, not created.
                if ns.typ() != LinuxNamespaceType::Network {
                    return Err(Error::InvalidSpec(format!("joining an existing {:?} namespace by path is not supported", ns.typ())));
                }
                net_path = Some(path.clone());
                continue;
            }
            namespaces |= match ns.typ() {
                LinuxNamespaceType::Mount => nix::sched::CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Pid => nix::sched::CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Uts => nix::sched::CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => nix::sched::CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Network => nix::sched::CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => nix::sched::CloneFlags::CLONE_NEWCGROUP,
                other => return Err(Error::InvalidSpec(format!("namespace {other:?} is not supported"))),
            };
        }
        if !namespaces.contains(nix::sched::CloneFlags::CLONE_NEWNS) {
            return Err(Error::InvalidSpec("a mount namespace is required".into()));
        }
        let overlay = match spec::overlay_of(spec)? {
            None => None,
            Some(o) => Some(Overlay {
                lowers: o.lowers.iter().map(|l| cstr(l, "lower dir")).collect::<Result<_>>()?,
                upper: cstr(&o.upper, "upper dir")?,
                work: cstr(&o.work, "work dir")?,
                volatile: spec::wants_volatile(spec),
                legacy_options: {
                    let lowers: Vec<String> = o.lowers.iter().map(|l| l.display().to_string()).collect();
                    let mut opts = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), o.upper.display(), o.work.display());
                    if spec::wants_volatile(spec) {
                        opts.push_str(",volatile");
                    }
                    if opts.len() < 4000 { CString::new(opts).ok() } else { None }
                },
            }),
        };
        let mut mounts = Vec::new();
        let mut binds = 0;
        let mut create_devices = false;
        for m in spec.mounts().iter().flatten() {
            let dest = m.destination();
            if !dest.is_absolute() {
                return Err(Error::InvalidSpec(format!("mount destination {} is not absolute", dest.display())));
            }
            let options = m.options().clone().unwrap_or_default();
            let (flags, data) = mount_options(&options);
            let typ = m.typ().clone().unwrap_or_default();
            let target = cstr(dest, "mount destination")?;
            if typ == "bind" || flags & libc::MS_BIND != 0 {
                let source = absolute(bundle, m.source().as_deref().unwrap_or(Path::new("")));
                let meta = std::fs::metadata(&source).map_err(|e| Error::io("bind mount source", &source, e))?;
                mounts.push(MountStep {
                    target,
                    kind: MountKind::Bind { source: cstr(&source, "bind source")?, is_file: !meta.is_dir(), readonly: flags & libc::MS_RDONLY != 0, slot: binds },
                });
                binds += 1;
            } else {
                if dest == Path::new("/dev") && typ == "tmpfs" {
                    create_devices = true;
                }
                let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
                let data = if data.is_empty() { None } else { Some(cstr(data.join(","), "mount options")?) };
                mounts.push(MountStep { target, kind: MountKind::Fs { source: cstr(&source, "mount source")?, fstype: cstr(&typ, "mount type")?, flags, data } });
            }
        }
        let user = process.user();
        let capset = process.capabilities().as_ref();
        let mask = |f: fn(&oci_spec::runtime::LinuxCapabilities) -> &Option<oci_spec::runtime::Capabilities>| -> u64 {
            capset.and_then(|c| f(c).as_ref()).map(|set| caps::mask_of(set.iter().map(|c| c.to_string()).collect::<Vec<_>>().iter().map(String::as_str))).unwrap_or(0)
        };
        let rlimits = process.rlimits().iter().flatten().map(|r| (rlimit_resource(r.typ()), r.soft(), r.hard())).collect();
        let seccomp = match linux.and_then(|l| l.seccomp().as_ref()) {
            Some(policy) => Some(seccomp::compile_cached(policy)?),
            None => None,
        };
        let hostname = match spec.hostname() {
            Some(h) if namespaces.contains(nix::sched::CloneFlags::CLONE_NEWUTS) && !h.is_empty() => Some(cstr(h, "hostname")?),
            _ => None,
        };
        let sysctls = linux
            .and_then(|l| l.sysctl().as_ref())
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                if k.is_empty() || k.contains("..") || k.contains('/') {
                    return Err(Error::InvalidSpec(format!("linux.sysctl: invalid key {k:?}")));
                }
                Ok((cstr(format!("/proc/sys/{}", k.replace('.', "/")), "sysctl")?, cstr(v, "sysctl value")?))
            })
            .collect::<Result<_>>()?;
        let cwd = process.cwd();
        if !cwd.is_absolute() {
            return Err(Error::InvalidSpec(format!("process.cwd {} is not absolute", cwd.display())));
        }
        Ok(Plan {
            namespaces,
            net_path,
            rootfs: cstr(&rootfs, "root path")?,
            overlay,
            mounts,
            bind_fds: (0..binds).map(|_| Cell::new(-1)).collect(),
            create_devices,
            masked: linux.and_then(|l| l.masked_paths().clone()).unwrap_or_default().iter().map(|p| cstr(p, "masked path")).collect::<Result<_>>()?,
            readonly: linux.and_then(|l| l.readonly_paths().clone()).unwrap_or_default().iter().map(|p| cstr(p, "read-only path")).collect::<Result<_>>()?,
            readonly_rootfs: root.readonly().unwrap_or(false),
            hostname,
            sysctls,
            rlimits,
            cwd: cstr(cwd, "cwd")?,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            bounding: mask(|c| c.bounding()),
            effective: mask(|c| c.effective()),
            permitted: mask(|c| c.permitted()),
            inheritable: mask(|c| c.inheritable()),
            last_cap: caps::kernel_last_cap(),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
            terminal: process.terminal().unwrap_or(false),
            init: spec::wants_init(spec),
            args: args.iter().map(|a| cstr(a, "argument")).collect::<Result<_>>()?,
            env: process.env().clone().unwrap_or_default().iter().map(|e| cstr(e, "environment variable")).collect::<Result<_>>()?,
        })
    }

    /// Steps 1–6: runs as root in the new namespaces; afterwards `/` is the container's root.
    pub fn prepare_root<'a>(&'a self, sys: &dyn Syscall) -> Step<'a> {
        sys.mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(fail("making mounts private", None))?;
        let root = self.rootfs.as_c_str();
        match &self.overlay {
            Some(o) => {
                // Small stack array of pointers: no allocation in the child.
                let mut lowers: [&CStr; 512] = [c""; 512];
                let n = o.lowers.len().min(512);
                for (i, l) in o.lowers.iter().take(n).enumerate() {
                    lowers[i] = l.as_c_str();
                }
                if let Err(e) = sys.mount_overlay(&lowers[..n], &o.upper, &o.work, o.volatile, root) {
                    // Older kernels: no new mount API or no `lowerdir+`; try mount(2).
                    let Some(opts) = &o.legacy_options else { return Err(Failure { step: "mounting the overlay root at", path: Some(root), errno: e }) };
                    sys.mount(Some(c"overlay"), root, Some(c"overlay"), 0, Some(opts)).map_err(fail("mounting the overlay root at", Some(root)))?;
                }
            }
            None => sys.mount(Some(root), root, None, libc::MS_BIND | libc::MS_REC, None).map_err(fail("bind-mounting the root", Some(root)))?,
        }
        for m in &self.mounts {
            if let MountKind::Bind { source, readonly, slot, .. } = &m.kind {
                let fd = sys.open_tree(source).map_err(fail("opening bind source", Some(source)))?;
                if *readonly {
                    sys.set_tree_readonly(fd).map_err(fail("making bind read-only", Some(source)))?;
                }
                self.bind_fds[*slot].set(fd);
            }
        }
        sys.chdir(root).map_err(fail("entering the root", Some(root)))?;
        sys.pivot_root(c".", c".").map_err(fail("pivot_root into", Some(root)))?;
        sys.umount2(c".", libc::MNT_DETACH).map_err(fail("detaching the old root", None))?;
        sys.chdir(c"/").map_err(fail("entering the new root", None))?;
        for m in &self.mounts {
            match &m.kind {
                MountKind::Fs { source, fstype, flags, data } => {
                    mkdir_all(sys, &m.target).map_err(fail("creating mount point", Some(&m.target)))?;
                    sys.mount(Some(source), &m.target, Some(fstype), *flags, data.as_deref()).map_err(fail("mounting", Some(&m.target)))?;
                    if self.create_devices && m.target.as_bytes() == b"/dev" {
                        create_devices(sys)?;
                    }
                }
                MountKind::Bind { is_file, slot, .. } => {
                    if *is_file {
                        if let Some(parent) = parent_of(&m.target) {
                            mkdir_in_buf(sys, parent).map_err(fail("creating mount point", Some(&m.target)))?;
                        }
                        if sys.is_dir(&m.target).is_none() {
                            sys.create_file(&m.target).map_err(fail("creating mount point", Some(&m.target)))?;
                        }
                    } else {
                        mkdir_all(sys, &m.target).map_err(fail("creating mount point", Some(&m.target)))?;
                    }
                    sys.move_mount(self.bind_fds[*slot].get(), &m.target).map_err(fail("bind-mounting", Some(&m.target)))?;
                }
            }
        }
        // Before /proc/sys is made read-only below, as runc does.
        for (path, value) in &self.sysctls {
            sys.write_file(path, value.as_bytes()).map_err(fail("writing sysctl", Some(path)))?;
        }
        for p in &self.masked {
            match sys.is_dir(p) {
                None => {}
                Some(true) => sys.mount(Some(c"tmpfs"), p, Some(c"tmpfs"), libc::MS_RDONLY, None).map_err(fail("masking", Some(p)))?,
                Some(false) => sys.mount(Some(c"/dev/null"), p, None, libc::MS_BIND, None).map_err(fail("masking", Some(p)))?,
            }
        }
        for p in &self.readonly {
            if sys.is_dir(p).is_none() {
                continue;
            }
            sys.mount(Some(p), p, None, libc::MS_BIND | libc::MS_REC, None).map_err(fail("binding read-only path", Some(p)))?;
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_REC;
            sys.mount(Some(p), p, None, flags, None).map_err(fail("making path read-only", Some(p)))?;
        }
        if self.readonly_rootfs {
            sys.mount(Some(c"/"), c"/", None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY, None).map_err(fail("making the root read-only", None))?;
        }
        if let Some(h) = &self.hostname {
            sys.sethostname(h).map_err(fail("setting hostname", Some(h)))?;
        }
        for &(res, soft, hard) in &self.rlimits {
            sys.setrlimit(res, soft, hard).map_err(fail("setting rlimit", None))?;
        }
        mkdir_all(sys, &self.cwd).map_err(fail("creating working directory", Some(&self.cwd)))?;
        Ok(())
    }

    /// Step 7: become the container's process (also used by `exec` in a running container).
    pub fn become_process<'a>(&'a self, sys: &dyn Syscall) -> Step<'a> {
        sys.chdir(&self.cwd).map_err(fail("entering working directory", Some(&self.cwd)))?;
        if self.terminal {
            sys.setsid_and_controlling_tty().map_err(fail("making the terminal controlling", None))?;
        }
        for cap in 0..=self.last_cap {
            if self.bounding & (1u64 << cap) == 0 {
                match sys.drop_bounding_cap(cap) {
                    Ok(()) | Err(Errno::EINVAL) => {}
                    Err(e) => return Err(Failure { step: "dropping bounding capabilities", path: None, errno: e }),
                }
            }
        }
        sys.set_keepcaps(true).map_err(fail("keeping capabilities", None))?;
        sys.setgroups(&self.additional_gids).map_err(fail("setting supplementary groups", None))?;
        sys.setresgid(self.gid).map_err(fail("setting group id", None))?;
        sys.setresuid(self.uid).map_err(fail("setting user id", None))?;
        sys.set_keepcaps(false).map_err(fail("keeping capabilities", None))?;
        sys.capset(self.effective & self.permitted, self.permitted, self.inheritable).map_err(fail("setting capabilities", None))?;
        if self.no_new_privs {
            sys.set_no_new_privs().map_err(fail("setting no_new_privs", None))?;
        }
        // Changing credentials clears the parent-death signal; set it again.
        sys.set_parent_death_signal(libc::SIGKILL).map_err(fail("setting parent-death signal", None))?;
        sys.cloexec_from(3).map_err(fail("closing inherited descriptors", None))?;
        if let Some(filters) = &self.seccomp {
            for f in filters.iter() {
                sys.seccomp(f).map_err(fail("installing seccomp filter", None))?;
            }
        }
        Ok(())
    }
}

fn absolute(bundle: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { bundle.join(p) }
}

fn parent_of(path: &CStr) -> Option<&[u8]> {
    let b = path.to_bytes();
    let i = b.iter().rposition(|&c| c == b'/')?;
    if i == 0 { None } else { Some(&b[..i]) }
}

/// `mkdir -p` without allocating: prefixes are copied into a stack buffer.
fn mkdir_all(sys: &dyn Syscall, path: &CStr) -> Result<(), Errno> {
    mkdir_in_buf(sys, path.to_bytes())
}

fn mkdir_in_buf(sys: &dyn Syscall, path: &[u8]) -> Result<(), Errno> {
    let mut buf = [0u8; 4096];
    if path.len() >= buf.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for end in 1..=path.len() {
        if end == path.len() || path[end] == b'/' {
            if path[end - 1] == b'/' {
                continue;
            }
            buf[..end].copy_from_slice(&path[..end]);
            buf[end] = 0;
            let Ok(c) = CStr::from_bytes_with_nul(&buf[..=end]) else { return Err(Errno::EINVAL) };
            match sys.mkdir(c, 0o755) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn create_devices(sys: &dyn Syscall) -> Step<'static> {
    const DEVICES: [(&CStr, u32, u32); 6] =
        [(c"/dev/null", 1, 3), (c"/dev/zero", 1, 5), (c"/dev/full", 1, 7), (c"/dev/random", 1, 8), (c"/dev/urandom", 1, 9), (c"/dev/tty", 5, 0)];
    // mknod applies the umask (022 from the caller): clear it so every user can write
    // /dev/null, as in Docker, then give the process its umask back.
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let made = DEVICES.iter().try_for_each(|(path, major, minor)| sys.mknod(path, libc::S_IFCHR | 0o666, libc::makedev(*major, *minor)).map_err(fail("creating device", Some(path))));
    nix::sys::stat::umask(umask);
    made?;
    const LINKS: [(&CStr, &CStr); 5] = [
        (c"/proc/self/fd", c"/dev/fd"),
        (c"/proc/self/fd/0", c"/dev/stdin"),
        (c"/proc/self/fd/1", c"/dev/stdout"),
        (c"/proc/self/fd/2", c"/dev/stderr"),
        (c"pts/ptmx", c"/dev/ptmx"),
    ];
    for (target, link) in LINKS {
        sys.symlink(target, link).map_err(fail("creating device link", Some(link)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{SpecOptions, build_spec};
    use crate::syscall::RecordingSyscall;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nwheel:x:10:app\napp:x:1000:\n").unwrap();
        dir
    }

    fn index(calls: &[String], prefix: &str) -> usize {
        calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no call starting with {prefix:?} in {calls:#?}"))
    }

    #[test]
    fn root_is_pivoted_before_proc_is_mounted_and_old_root_detached() {
        let root = rootfs();
        let spec = build_spec(&SpecOptions { rootfs: root.path().into(), args: vec!["true".into()], ..Default::default() }).unwrap();
        let plan = Plan::from_spec(root.path(), &spec).unwrap();
        let sys = RecordingSyscall { dirs: vec!["/proc/sys".into(), "/proc/acpi".into()], ..Default::default() };
        plan.prepare_root(&sys).unwrap();
        let calls = sys.calls();
        assert_eq!(calls[0], format!("mount - / - {:#x} -", libc::MS_REC | libc::MS_PRIVATE));
        let pivot = index(&calls, "pivot_root . .");
        assert!(index(&calls, "mount - ") < pivot);
        assert_eq!(calls[pivot + 1], format!("umount2 . {}", libc::MNT_DETACH));
        assert!(index(&calls, "mount proc /proc proc") > pivot);
        assert!(index(&calls, "mknod /dev/null") > index(&calls, "mount tmpfs /dev tmpfs"));
        // masked directory gets a read-only tmpfs, masked file gets /dev/null
        assert!(calls.contains(&format!("mount tmpfs /proc/acpi tmpfs {:#x} -", libc::MS_RDONLY)));
        assert!(calls.contains(&format!("mount /dev/null /proc/kcore - {:#x} -", libc::MS_BIND)));
        assert!(calls.iter().any(|c| c.starts_with("mount /proc/sys /proc/sys - ") && c.contains(&format!("{:#x}", libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_REC))));
        assert!(calls.contains(&"sethostname builder".to_string()));
    }

    #[test]
    fn sysctls_are_written_under_proc_sys_before_it_is_made_read_only() {
        let root = tempfile::tempdir().unwrap();
        let mut spec = build_spec(&SpecOptions { rootfs: root.path().into(), args: vec!["true".into()], ..Default::default() }).unwrap();
        if let Some(l) = spec.linux_mut() {
            l.set_sysctl(Some([("net.ipv4.ip_forward".to_string(), "1".to_string())].into_iter().collect()));
        }
        let plan = Plan::from_spec(root.path(), &spec).unwrap();
        let sys = RecordingSyscall { dirs: vec!["/proc/sys".into()], ..Default::default() };
        plan.prepare_root(&sys).unwrap();
        let calls = sys.calls();
        let write = index(&calls, "write_file /proc/sys/net/ipv4/ip_forward 1");
        let readonly = calls.iter().position(|c| c.contains("/proc/sys") && c.contains("mount")).expect("/proc/sys made read-only");
        assert!(write < readonly, "{calls:?}");
        if let Some(l) = spec.linux_mut() {
            l.set_sysctl(Some([("../../etc/x".to_string(), "1".to_string())].into_iter().collect()));
        }
        assert!(Plan::from_spec(root.path(), &spec).is_err());
    }

    #[test]
    fn binds_are_opened_before_pivot_and_attached_after() {
        let root = rootfs();
        let host = tempfile::tempdir().unwrap();
        let mut opts = SpecOptions { rootfs: root.path().into(), args: vec!["true".into()], ..Default::default() };
        opts.mounts.push(spec::bind_mount(host.path(), "/data", true));
        let spec = build_spec(&opts).unwrap();
        let plan = Plan::from_spec(root.path(), &spec).unwrap();
        let sys = RecordingSyscall::default();
        plan.prepare_root(&sys).unwrap();
        let calls = sys.calls();
        let open = index(&calls, &format!("open_tree {}", host.path().display()));
        let pivot = index(&calls, "pivot_root");
        assert!(open < pivot);
        assert!(calls[open + 1].starts_with("set_tree_readonly"));
        let attach = index(&calls, "move_mount");
        assert!(attach > pivot && calls[attach].ends_with(" /data"));
        assert!(calls[..attach].contains(&"mkdir /data 755".to_string()));
    }

    #[test]
    fn overlay_root_is_mounted_with_every_layer() {
        let root = rootfs();
        let mut opts = SpecOptions { rootfs: "/merged".into(), args: vec!["true".into()], ..Default::default() };
        let lowers: Vec<PathBuf> = (0..200).map(|i| PathBuf::from(format!("/snapshots/{i:064}"))).collect();
        opts.overlay = Some(spec::OverlayRootfs { lowers: std::iter::once(root.path().to_path_buf()).chain(lowers).collect(), upper: "/u".into(), work: "/w".into() });
        let spec = build_spec(&opts).unwrap();
        let plan = Plan::from_spec(root.path(), &spec).unwrap();
        let sys = RecordingSyscall::default();
        plan.prepare_root(&sys).unwrap();
        let calls = sys.calls();
        let ov = &calls[index(&calls, "mount_overlay")];
        assert_eq!(ov.matches("/snapshots/").count(), 200);
        assert!(ov.ends_with("upper=/u work=/w /merged"), "{ov}");
    }

    #[test]
    fn credentials_change_in_order_and_seccomp_comes_last() {
        let root = rootfs();
        let spec = build_spec(&SpecOptions { rootfs: root.path().into(), args: vec!["id".into()], user: "app".into(), ..Default::default() }).unwrap();
        let plan = Plan::from_spec(root.path(), &spec).unwrap();
        let sys = RecordingSyscall::default();
        plan.become_process(&sys).unwrap();
        let calls = sys.calls();
        let drop_sys_admin = index(&calls, "drop_bounding_cap 21");
        let groups = index(&calls, "setgroups [10]");
        let gid = index(&calls, "setresgid 1000");
        let uid = index(&calls, "setresuid 1000");
        let caps = index(&calls, "capset");
        let nnp = index(&calls, "set_no_new_privs");
        let seccomp = index(&calls, "seccomp");
        assert!(drop_sys_admin < groups && groups < gid && gid < uid && uid < caps && caps < nnp && nnp < seccomp);
        assert!(!calls.iter().any(|c| c == "drop_bounding_cap 0"), "CAP_CHOWN is in Docker's set");
        assert_eq!(calls.iter().filter(|c| c.starts_with("seccomp")).count(), 2, "allow-list plus the ENOSYS filter");
        assert_eq!(calls.last().map(String::as_str).unwrap_or("").split(' ').next(), Some("seccomp"));
    }
}
