//! Terminals for `-t`: a pseudo-terminal pair, raw mode for the user's terminal, and
//! window-size propagation. Also the small process helpers the CLI's shim needs.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Error, Result};

/// A new pseudo-terminal: `master` stays with the CLI, `slave` becomes the container's stdio.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    pub fn open() -> Result<Pty> {
        let p = nix::pty::openpty(None, None).map_err(|e| Error::sys("openpty", e))?;
        Ok(Pty { master: p.master, slave: p.slave })
    }
}

/// Copies the window size of `from` (the user's terminal) to `to` (the pty master).
pub fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read/write a winsize on our stack.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Gives the pty master `to` the size a terminal starts with (24 rows, 80 columns), for a
/// container whose input is not a terminal: with no size at all, programs that page long
/// output (psql, git) take every screen as full and wait in their pager for keys.
pub fn set_default_window_size(to: BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from our stack.
    unsafe {
        libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// The window size (rows, columns) of terminal `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize on our stack.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets the window size of the pty master `to` (an attached client's terminal size).
pub fn set_window_size(to: BorrowedFd<'_>, rows: u16, cols: u16) {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from our stack.
    unsafe {
        libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    termios::tcgetattr(fd).is_ok()
}

/// The user's terminal in raw mode until dropped.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    pub fn enable(fd: BorrowedFd<'_>) -> Result<RawMode> {
        let saved = termios::tcgetattr(fd).map_err(|e| Error::sys("reading terminal settings", e))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(|e| Error::sys("setting raw mode", e))?;
        let fd = fd.try_clone_to_owned().map_err(|e| Error::io("duplicating", "terminal", e))?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Starts a new session (for the detached shim: no terminal can hang it up).
pub fn new_session() -> Result<()> {
    nix::unistd::setsid().map(|_| ()).map_err(|e| Error::sys("setsid", e))
}

/// Sends `signal` to host process `pid`; false if it no longer exists.
pub fn signal_process(pid: i32, signal: i32) -> Result<bool> {
    use nix::sys::signal::{Signal, kill};
    let sig = if signal == 0 { None } else { Some(Signal::try_from(signal).map_err(|e| Error::sys("signal number", e))?) };
    match kill(nix::unistd::Pid::from_raw(pid), sig) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(e) => Err(Error::sys("sending a signal", e)),
    }
}

/// The number of a signal given as "KILL", "SIGTERM" or "9".
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse::<nix::sys::signal::Signal>().ok().map(|s| s as i32)
}

/// Makes this process pass termination signals on to the container `pid` instead of
/// dying of them (which would kill the container with SIGKILL through its parent-death
/// signal). The handlers are process-wide, so it does not matter which of this process's
/// threads the kernel picks for a signal (blocking them with a signal mask would cover only
/// the calling thread and the threads it starts later). SIGINT and SIGQUIT from the terminal
/// are not forwarded (the container, in the same process group, gets them itself); sent
/// with kill(2), they are.
pub fn forward_signals(pid: i32) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    use signal_hook::iterator::SignalsInfo;
    use signal_hook::iterator::exfiltrator::origin::WithOrigin;
    use signal_hook::low_level::siginfo::Cause;
    let mut signals = SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])
        .map_err(|e| Error::io("installing signal handlers", "", e))?;
    std::thread::spawn(move || {
        for origin in signals.forever() {
            let from_terminal = matches!(origin.cause, Cause::Kernel) && (origin.signal == SIGINT || origin.signal == SIGQUIT);
            if !from_terminal {
                let _ = signal_process(pid, origin.signal);
            }
        }
    });
    Ok(())
}

/// Passes every termination signal this process gets on to the container `pid`, those typed
/// at the terminal (Ctrl-C) too: for `attach` and `start -a`, whose container is not in this
/// terminal's process group (`--sig-proxy`).
pub fn proxy_signals(pid: i32) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]).map_err(|e| Error::io("installing signal handlers", "", e))?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let _ = signal_process(pid, sig);
        }
    });
    Ok(())
}
