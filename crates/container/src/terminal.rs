//! Relaying a container's pty to this process's terminal.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use crate::error::{Error, Result};

/// Relays a container's pty to this terminal until the container's side closes (EIO): the
/// window size and raw mode of our stdin (when it is a terminal), stdin to the pty when
/// `interactive`, and the pty's output to stdout and the container's log (not for `exec`).
pub fn relay(master: std::os::fd::OwnedFd, interactive: bool, log: Option<std::sync::Arc<crate::logs::LogFile>>) -> Result<()> {
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
        let mut to_master = master.try_clone().map_err(|e| Error::io("duplicating", "the container's terminal", e))?;
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
    // What the container prints goes to this terminal and to the container's log.
    crate::logs::pump(master, crate::logs::Stream::Stdout, log, Some(Box::new(std::io::stdout())));
    Ok(())
}
