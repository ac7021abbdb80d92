//! Starting a container: clone into new namespaces, let the child carry out the
//! [`Plan`], and wait for it.
//!
//! The child is created with a raw `clone` (fork-like, no new stack) that also creates
//! the namespaces, so there is no second process and no re-exec. The parent keeps two
//! pipes to it: it releases the child after placing it in its cgroups (the child dies
//! on EOF, i.e. if the parent died first), and it reads the child's error report
//! (EOF without a report means `execve` succeeded: the pipe is close-on-exec).
//!
//! The child asks for SIGKILL when the thread that started it dies
//! (`PR_SET_PDEATHSIG`). As PID 1 of its PID namespace, its death takes every process
//! of the container with it, and with them the mount namespace: nothing is left on
//! the host when the caller is killed.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::bundle;
use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::plan::{Failure, Plan};
use crate::syscall::{LinuxSyscall, Syscall};

/// Where one of the container's standard streams goes.
#[derive(Debug)]
pub enum Io {
    /// The caller's own descriptor (0, 1 or 2).
    Inherit,
    /// /dev/null.
    Null,
    /// A descriptor the caller owns (a pipe, a file).
    Fd(OwnedFd),
    /// A new pseudo-terminal allocated inside the container (its own /dev/pts), used for
    /// all three streams; the caller gets the master with [`Container::take_terminal`].
    Terminal,
}

/// The container's stdin, stdout and stderr.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: Io,
    pub stdout: Io,
    pub stderr: Io,
}

impl Stdio {
    pub fn inherit() -> Stdio {
        Stdio { stdin: Io::Inherit, stdout: Io::Inherit, stderr: Io::Inherit }
    }
    pub fn null() -> Stdio {
        Stdio { stdin: Io::Null, stdout: Io::Null, stderr: Io::Null }
    }
    /// Given descriptors; a missing stdin reads from /dev/null.
    pub fn fds(stdin: Option<OwnedFd>, stdout: OwnedFd, stderr: OwnedFd) -> Stdio {
        Stdio { stdin: stdin.map_or(Io::Null, Io::Fd), stdout: Io::Fd(stdout), stderr: Io::Fd(stderr) }
    }
    /// A pseudo-terminal inside the container (`-t`).
    pub fn terminal() -> Stdio {
        Stdio { stdin: Io::Terminal, stdout: Io::Terminal, stderr: Io::Terminal }
    }
}

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell-style exit code: the code, or 128 + signal number (137 for SIGKILL).
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A started container (or a process exec'd into one). Dropping it without
/// [`Container::wait`] kills and reaps it.
#[derive(Debug)]
pub struct Container {
    pid: Pid,
    cgroup: Option<Cgroup>,
    done: bool,
    terminal: Option<OwnedFd>,
}

impl Container {
    /// The master side of the container's terminal (with [`Io::Terminal`]).
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    /// The host PID of the container's first process.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The cgroup directories holding the container (empty without limits).
    pub fn cgroup_dirs(&self) -> Vec<std::path::PathBuf> {
        self.cgroup.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default()
    }

    /// Sends `signal` to the container's first process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let sig = Signal::try_from(signal).map_err(|e| Error::sys("signal number", e))?;
        nix::sys::signal::kill(self.pid, sig).map_err(|e| Error::sys("signalling the container", e))
    }

    /// Waits for the container to exit; its cgroups are removed afterwards.
    pub fn wait(mut self) -> Result<ExitStatus> {
        let status = wait_for(self.pid)?;
        self.done = true;
        Ok(status)
    }

    /// Waits like [`Container::wait`], and also tells whether the kernel OOM-killed a
    /// process of the container (read before the cgroup is removed).
    pub fn wait_with_oom(mut self) -> Result<(ExitStatus, bool)> {
        let status = wait_for(self.pid)?;
        self.done = true;
        Ok((status, self.oom_killed()))
    }

    /// Whether the kernel OOM-killed a process of the container (only with a memory limit).
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(Cgroup::oom_killed)
    }
}

fn wait_for(pid: Pid) -> Result<ExitStatus> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitStatus::Signal(sig as i32)),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("waiting for the container", e)),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if !self.done {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
            let _ = wait_for(self.pid);
        }
    }
}

/// Runs the bundle's container in the foreground until it exits.
///
/// Safe to call from several threads at once. The container is killed if the calling
/// thread (or the whole process) dies.
pub fn run(bundle_dir: &Path, spec: &Spec, stdio: Stdio) -> Result<ExitStatus> {
    start(bundle_dir, spec, stdio)?.wait()
}

/// Starts the bundle's container and returns once its command is running.
pub fn start(bundle_dir: &Path, spec: &Spec, stdio: Stdio) -> Result<Container> {
    let spec = bundle::with_etc_files(bundle_dir, spec)?;
    let plan = Plan::from_spec(bundle_dir, &spec)?;
    let name = format!("{}-{}", std::process::id(), unique());
    // A cgroupsPath asks for cgroups even without limits (containers, not build steps).
    let always = spec.linux().as_ref().is_some_and(|l| l.cgroups_path().is_some());
    let cgroup = Cgroup::create(&name, spec.linux().as_ref().and_then(|l| l.resources().as_ref()), always)?;
    launch(&plan, cgroup, stdio, Mode::Create)
}

/// Runs another process inside a running container (`exec`): joins the namespaces
/// and cgroups of `container_pid`; `spec.process` says what to run and as whom.
pub fn exec(container_pid: i32, cgroup_dirs: Vec<std::path::PathBuf>, spec: &Spec, stdio: Stdio) -> Result<Container> {
    let plan = Plan::from_spec(Path::new("/"), spec)?;
    let mut fds = Vec::new();
    for ns in ["ipc", "uts", "net", "pid", "mnt"] {
        let path = format!("/proc/{container_pid}/ns/{ns}");
        let f = std::fs::File::open(&path).map_err(|e| Error::io("opening namespace", &path, e))?;
        fds.push(OwnedFd::from(f));
    }
    // Placed in the container's cgroups before it is released, so nothing it forks escapes
    // the container's limits.
    let cgroup = if cgroup_dirs.is_empty() { None } else { Some(Cgroup::from_dirs(cgroup_dirs)) };
    let mut container = launch(&plan, cgroup, stdio, Mode::Join(&fds))?;
    if let Some(cg) = container.cgroup.take() {
        // The cgroup belongs to the container, not to this exec: never remove it here.
        std::mem::forget(cg);
    }
    Ok(container)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

enum Mode<'a> {
    Create,
    Join(&'a [OwnedFd]),
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("creating a pipe", e))
}

// SAFETY: glibc's process environment pointer; only written in the child before execvp.
unsafe extern "C" {
    static mut environ: *const *const libc::c_char;
}

fn launch(plan: &Plan, cgroup: Option<Cgroup>, stdio: Stdio, mode: Mode<'_>) -> Result<Container> {
    // Descriptors for 0, 1, 2 in the child; owned ones stay alive until the child has them.
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut targets = [0 as RawFd; 3];
    let wants_terminal = [&stdio.stdin, &stdio.stdout, &stdio.stderr].iter().any(|io| matches!(io, Io::Terminal));
    for (i, io) in [stdio.stdin, stdio.stdout, stdio.stderr].into_iter().enumerate() {
        targets[i] = match io {
            // Replaced by the terminal's slave inside the container.
            Io::Terminal => i as RawFd,
            Io::Inherit => i as RawFd,
            Io::Null => {
                let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e))?;
                let fd = OwnedFd::from(f);
                let raw = fd.as_raw_fd();
                keep.push(fd);
                raw
            }
            Io::Fd(fd) => {
                let raw = fd.as_raw_fd();
                keep.push(fd);
                raw
            }
        };
    }
    // Move the child's stdio descriptors above 2 first, so dup2 onto 0..2 cannot clobber one
    // still needed (the caller's stdout might be our descriptor 0, say).
    let mut high = [0 as RawFd; 3];
    for i in 0..3 {
        let d = nix::fcntl::fcntl(borrowed(targets[i]), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(|e| Error::sys("duplicating stdio", e))?;
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that we now own.
        let owned = unsafe { OwnedFd::from_raw_fd(d) };
        high[i] = d;
        keep.push(owned);
    }
    let argv: Vec<*const libc::c_char> = plan.args.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const libc::c_char> = plan.env.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let ns_fds: Vec<RawFd> = match mode {
        Mode::Create => Vec::new(),
        Mode::Join(fds) => fds.iter().map(|f| f.as_raw_fd()).collect(),
    };
    let net_fd = match (&mode, &plan.net_path) {
        (Mode::Create, Some(path)) => Some(OwnedFd::from(std::fs::File::open(path).map_err(|e| Error::io("opening network namespace", path, e))?)),
        _ => None,
    };
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // The child sends the terminal's master over this socket.
    let console = if wants_terminal {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        Some(socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(|e| Error::sys("creating the console socket", e))?)
    } else {
        None
    };
    let console_child = console.as_ref().map_or(-1, |(_, c)| c.as_raw_fd());
    let flags = match mode {
        Mode::Create => plan.namespaces.bits() as libc::c_long,
        Mode::Join(_) => 0,
    };
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack): the child gets a copy of
    // this address space and continues below; it only makes system calls on data
    // prepared above and leaves with execve or _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as libc::c_long, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(Error::sys("clone (creating the container's namespaces)", Errno::last()));
    }
    if pid == 0 {
        let child = Child { plan, sync_r: sync_r.as_raw_fd(), sync_w: sync_w.as_raw_fd(), err_r: err_r.as_raw_fd(), err_w: err_w.as_raw_fd(), stdio: high, argv: &argv, envp: &envp, ns_fds: &ns_fds, net_fd: net_fd.as_ref().map_or(-1, |f| f.as_raw_fd()), console: console_child };
        child.main();
    }
    let pid = Pid::from_raw(pid as i32);
    drop(sync_r);
    drop(err_w);
    let mut container = Container { pid, cgroup, done: false, terminal: None };
    // Two bytes release the child: `g` starts its setup, `c` says it is in its cgroups. A new
    // container sets up its root (mounts, pivot_root) while it is being moved in, since the
    // first move into a cgroup waits for an RCU grace period (milliseconds); it waits for `c`
    // before it forks or runs anything of the image. An exec is moved in before it starts.
    let join = matches!(mode, Mode::Join(_));
    let release = |byte: &[u8]| nix::unistd::write(&sync_w, byte).map_err(|e| Error::sys("releasing the container", e));
    if !join {
        release(b"g")?;
    }
    if let Some(cg) = &container.cgroup
        && let Err(e) = cg.add(pid.as_raw())
    {
        // The child sees the pipe close before `c` and exits.
        drop(sync_w);
        let _ = wait_for(pid);
        container.done = true;
        return Err(e);
    }
    if join {
        release(b"g")?;
    }
    // A child that failed its setup meanwhile has gone: its report below says why.
    let _ = release(b"c");
    drop(sync_w);
    drop(keep);
    if let Some((ours, theirs)) = console {
        drop(theirs);
        // Nothing arrives if setup failed first: the report below says why.
        container.terminal = receive_fd(&ours);
    }
    let mut report = [0u8; 1024];
    let mut n = 0;
    loop {
        match nix::unistd::read(&err_r, &mut report[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n == report.len() {
                    break;
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("reading the container's setup report", e)),
        }
    }
    if n >= 5 {
        let errno = Errno::from_raw(i32::from_le_bytes([report[1], report[2], report[3], report[4]]));
        let message = String::from_utf8_lossy(&report[5..n]).into_owned();
        let _ = wait_for(pid);
        container.done = true;
        return Err(if report[0] == b'x' { Error::Exec { command: message, errno } } else { Error::Setup { message, errno } });
    }
    Ok(container)
}

fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for an immediate fcntl on a descriptor that is open for the call.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// What the child works with; all of it prepared by the parent.
struct Child<'a> {
    plan: &'a Plan,
    sync_r: RawFd,
    sync_w: RawFd,
    err_r: RawFd,
    err_w: RawFd,
    stdio: [RawFd; 3],
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    ns_fds: &'a [RawFd],
    /// A network namespace to join before setting up the root, or -1.
    net_fd: RawFd,
    /// Socket to send the terminal master on, or -1.
    console: RawFd,
}

impl Child<'_> {
    /// Never returns: execs the command or exits after reporting why it could not.
    fn main(&self) -> ! {
        let sys = LinuxSyscall;
        let _ = sys.set_parent_death_signal(libc::SIGKILL);
        // The container starts with a clean signal state: nothing blocked, nothing ignored
        // (Rust programs ignore SIGPIPE, callers may ignore more, and that survives execve).
        // SAFETY: sigset and sigaction on stack values.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // The kernel's struct sigaction; raw, because glibc refuses to touch the
            // real-time signals it reserves (32, 33), which a caller may have ignored.
            #[repr(C)]
            struct KernelSigaction {
                handler: usize,
                flags: u64,
                restorer: usize,
                mask: u64,
            }
            let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
            for sig in 1..=64 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, 0usize, 8usize);
                }
            }
        }
        // SAFETY: closing our copies of the parent's pipe ends.
        unsafe {
            libc::close(self.sync_w);
            libc::close(self.err_r);
        }
        let mut go = [0u8; 1];
        // SAFETY: reading one byte into a stack buffer.
        if unsafe { libc::read(self.sync_r, go.as_mut_ptr().cast(), 1) } != 1 {
            // The parent died before releasing us.
            self.exit(1);
        }
        for (i, &fd) in self.stdio.iter().enumerate() {
            if let Err(e) = sys.dup2(fd, i as RawFd) {
                self.report(b's', &Failure { step: "setting up stdio", path: None, errno: e });
            }
        }
        if !self.ns_fds.is_empty() {
            // An exec was moved into the cgroups before `g`: `c` is already there.
            self.wait_for_cgroups();
            self.join_namespaces(&sys);
        }
        if self.net_fd >= 0 {
            // SAFETY: a namespace descriptor opened by the parent.
            if unsafe { libc::setns(self.net_fd, libc::CLONE_NEWNET) } < 0 {
                self.report(b's', &Failure { step: "joining the container's network namespace", path: None, errno: Errno::last() });
            }
        }
        if self.ns_fds.is_empty() {
            if let Err(f) = self.plan.prepare_root(&sys) {
                self.report(b's', &f);
            }
            // In the cgroups before anything forks or the image's program runs.
            self.wait_for_cgroups();
            if self.plan.init {
                self.become_init();
            }
        }
        if self.console >= 0 {
            self.open_terminal(&sys);
        }
        if let Err(f) = self.plan.become_process(&sys) {
            self.report(b's', &f);
        }
        // SAFETY: we are the only thread of this process; environ points at the
        // prepared, NUL-terminated array, which lives until execvp replaces us.
        unsafe {
            environ = self.envp.as_ptr();
            libc::execvp(self.argv[0], self.argv.as_ptr());
        }
        let errno = Errno::last();
        // SAFETY: argv[0] is a valid C string prepared by the parent.
        let command = unsafe { CStr::from_ptr(self.argv[0]) };
        self.report(b'x', &Failure { step: "", path: Some(command), errno });
    }

    /// Waits for the parent's `c`: this process is in the container's cgroups. Exits if the
    /// parent gave up (the pipe closed without it).
    fn wait_for_cgroups(&self) {
        let mut c = [0u8; 1];
        // SAFETY: reading one byte into a stack buffer.
        if unsafe { libc::read(self.sync_r, c.as_mut_ptr().cast(), 1) } != 1 {
            self.exit(1);
        }
    }

    /// For `exec`: enter the container's namespaces, then fork once more so the
    /// command is inside the PID namespace too; this process waits and passes on the status.
    fn join_namespaces(&self, sys: &LinuxSyscall) {
        for &fd in self.ns_fds {
            // SAFETY: fd is a namespace descriptor opened by the parent.
            if unsafe { libc::setns(fd, 0) } < 0 {
                self.report(b's', &Failure { step: "joining the container's namespaces", path: None, errno: Errno::last() });
            }
        }
        let pid = raw_fork();
        if pid < 0 {
            self.report(b's', &Failure { step: "forking into the container", path: None, errno: Errno::last() });
        }
        if pid == 0 {
            let _ = sys.set_parent_death_signal(libc::SIGKILL);
            return;
        }
        // SAFETY: the grandchild reports through its own copy of the pipe.
        unsafe { libc::close(self.err_w) };
        self.exit(wait_code(pid));
    }

    /// `--init`: this process stays PID 1, forwarding signals to the command and reaping
    /// every orphan, and exits with the command's status.
    fn become_init(&self) {
        // SAFETY: sigset operations on stack values; all signals blocked before fork so
        // none is lost; the child unblocks them again.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
            let pid = raw_fork();
            if pid < 0 {
                self.report(b's', &Failure { step: "starting the init process", path: None, errno: Errno::last() });
            }
            if pid == 0 {
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                let _ = LinuxSyscall.set_parent_death_signal(libc::SIGKILL);
                return;
            }
            libc::close(self.err_w);
            for fd in 0..3 {
                libc::close(fd);
            }
            loop {
                let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
                if sig == libc::SIGCHLD {
                    loop {
                        let mut status = 0;
                        let reaped = libc::waitpid(-1, &mut status, libc::WNOHANG);
                        if reaped <= 0 {
                            break;
                        }
                        if reaped == pid {
                            self.exit(status_code(status));
                        }
                    }
                } else if sig > 0 {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// Allocates a pty in the container's own /dev/pts, makes its slave our stdio and
    /// sends the master to the parent.
    fn open_terminal(&self, sys: &LinuxSyscall) {
        let fail = |step| Failure { step, path: None, errno: Errno::last() };
        // SAFETY: plain system calls on descriptors we own; the cmsg buffer is a
        // properly aligned stack array large enough for one descriptor.
        unsafe {
            let master = libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if master < 0 {
                self.report(b's', &fail("opening /dev/ptmx"));
            }
            let unlock: libc::c_int = 0;
            if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) < 0 {
                self.report(b's', &fail("unlocking the terminal"));
            }
            let slave = libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
            if slave < 0 {
                self.report(b's', &fail("opening the terminal"));
            }
            for fd in 0..3 {
                if let Err(e) = sys.dup2(slave, fd) {
                    self.report(b's', &Failure { step: "setting up the terminal", path: None, errno: e });
                }
            }
            libc::close(slave);
            let mut byte = [0u8; 1];
            let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
            let mut cbuf = [0u64; 4];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), master);
            if libc::sendmsg(self.console, &msg, 0) < 0 {
                self.report(b's', &fail("sending the terminal"));
            }
            libc::close(master);
            libc::close(self.console);
        }
    }

    fn report(&self, kind: u8, f: &Failure<'_>) -> ! {
        let mut buf = [0u8; 1024];
        buf[0] = kind;
        buf[1..5].copy_from_slice(&(f.errno as i32).to_le_bytes());
        let mut n = 5;
        let mut push = |b: &[u8]| {
            let k = b.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&b[..k]);
            n += k;
        };
        push(f.step.as_bytes());
        if let Some(p) = f.path {
            if !f.step.is_empty() {
                push(b" ");
            }
            push(p.to_bytes());
        }
        // SAFETY: writing our stack buffer to the report pipe.
        unsafe { libc::write(self.err_w, buf.as_ptr().cast(), n) };
        self.exit(if kind == b'x' { 127 } else { 1 });
    }

    fn exit(&self, code: i32) -> ! {
        // SAFETY: _exit ends the process without running the parent's atexit handlers.
        unsafe { libc::_exit(code) }
    }
}

fn status_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) }
}

fn wait_code(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child into a stack integer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return status_code(status);
        }
        if r < 0 && Errno::last() != Errno::EINTR {
            return 1;
        }
    }
}

/// fork(2) as a bare system call: glibc's fork would run atfork handlers and take
/// locks that another thread of the original process may have held at clone time.
fn raw_fork() -> libc::pid_t {
    // SAFETY: a fork-like clone; the caller only makes system calls afterwards.
    unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0usize, 0usize, 0usize, 0usize) as libc::pid_t }
}

/// Receives one descriptor sent with SCM_RIGHTS; None if the peer closed first.
fn receive_fd(sock: &OwnedFd) -> Option<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
    }
    None
}
