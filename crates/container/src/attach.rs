//! `attach`: a container's stdio, reachable by any later CLI. The shim of a container holds
//! its stdin (a pipe, with `-i`) and its output (pipes, or the pty with `-t`) and serves them
//! on a unix socket in the container's directory ([`Server`]); `attach`, `start -a` and
//! `run -it` connect to it ([`Containers::attach`]). Detaching (Ctrl-P Ctrl-Q, or
//! `--detach-keys`) closes only the connection: the container keeps running.
//!
//! The socket carries frames both ways: one byte of kind, four of length (big-endian), the
//! payload. From the shim: output of stdout or stderr, then the exit code. From a client:
//! input, the end of input, and its terminal's size.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{ContainerState, Containers, Status};

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach.sock";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;
const CLOSE_STDIN: u8 = 4;
const RESIZE: u8 = 5;

/// The longest frame either side accepts (input and output come in reads of 16 KiB).
const MAX_FRAME: usize = 1 << 20;

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// The next frame, or `None` at the end of the stream.
fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("attach frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// Where a client's input goes: the container's stdin pipe or its pty.
#[derive(Default)]
struct Input {
    writer: Option<std::fs::File>,
    terminal: Option<OwnedFd>,
    /// A size that came before the container had a terminal.
    size: Option<(u16, u16)>,
}

/// The shim's end: accepts clients, sends them the container's output, and passes their
/// input on.
#[derive(Clone)]
pub(crate) struct Server {
    clients: Arc<Mutex<Vec<UnixStream>>>,
    input: Arc<Mutex<Input>>,
}

impl Server {
    /// Listens on the container's socket. With `first`, tells the process that started the
    /// shim (`listening` on stdout) and waits for it to connect before returning.
    pub(crate) fn bind(dir: &Path, first: bool) -> Result<Server> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let (_dir, short) = socket_address(dir)?;
        let listener = UnixListener::bind(&short).map_err(|e| Error::io("listening on", &path, e))?;
        let server = Server { clients: Arc::default(), input: Arc::default() };
        if first {
            println!("listening");
            let _ = io::stdout().flush();
            server.add(accept_within(&listener, Duration::from_secs(30)).map_err(|e| Error::io("waiting for the starting process to attach at", &path, e))?);
        }
        let s = server.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                s.add(client);
            }
        });
        Ok(server)
    }

    fn add(&self, client: UnixStream) {
        // A client that stops reading is dropped rather than holding up the container.
        let _ = client.set_write_timeout(Some(Duration::from_secs(5)));
        let Ok(reader) = client.try_clone() else { return };
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).push(client);
        let input = self.input.clone();
        std::thread::spawn(move || serve_input(reader, input));
    }

    /// Where the container's input goes now: `writer` (its stdin pipe or pty), and the pty
    /// whose size clients set.
    pub(crate) fn set_input(&self, writer: Option<std::fs::File>, terminal: Option<OwnedFd>) {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(t), Some((rows, cols))) = (&terminal, input.size) {
            runtime::tty::set_window_size(t.as_fd(), rows, cols);
        }
        input.writer = writer;
        input.terminal = terminal;
    }

    /// A writer that sends what the container prints on `stream` to every client.
    pub(crate) fn output(&self, stream: crate::logs::Stream) -> Box<dyn Write + Send> {
        let kind = if stream == crate::logs::Stream::Stderr { STDERR } else { STDOUT };
        Box::new(Broadcast { kind, clients: self.clients.clone() })
    }

    /// Tells every client the container exited with `code` and lets them go.
    pub(crate) fn exited(&self, code: i32) {
        self.set_input(None, None);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        for mut c in clients.drain(..) {
            let _ = write_frame(&mut c, EXIT, &code.to_be_bytes());
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The first client, if it comes within `limit` (the process that started the shim may have
/// been killed before it connected: then the shim gives up instead of waiting forever).
fn accept_within(listener: &UnixListener, limit: Duration) -> io::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + limit;
    let client = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(io::Error::new(io::ErrorKind::TimedOut, "nobody attached")),
            Err(e) => return Err(e),
        }
    };
    listener.set_nonblocking(false)?;
    client.set_nonblocking(false)?;
    Ok(client)
}

/// Passes one client's frames on to the container's input.
fn serve_input(mut client: UnixStream, input: Arc<Mutex<Input>>) {
    while let Ok(Some((kind, payload))) = read_frame(&mut client) {
        let mut input = input.lock().unwrap_or_else(|p| p.into_inner());
        match kind {
            STDIN => {
                if let Some(w) = &mut input.writer
                    && w.write_all(&payload).is_err()
                {
                    input.writer = None;
                }
            }
            // The end of a client's input closes a pipe (the program sees EOF); a terminal
            // stays, as in Docker.
            CLOSE_STDIN if input.terminal.is_none() => input.writer = None,
            RESIZE if payload.len() == 4 => {
                let (rows, cols) = (u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]));
                input.size = Some((rows, cols));
                if let Some(t) = &input.terminal {
                    runtime::tty::set_window_size(t.as_fd(), rows, cols);
                }
            }
            _ => {}
        }
    }
}

struct Broadcast {
    kind: u8,
    clients: Arc<Mutex<Vec<UnixStream>>>,
}

impl Write for Broadcast {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain_mut(|c| write_frame(c, self.kind, buf).is_ok());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How an attached session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The container exited with this code.
    Exited(i32),
    /// The user typed the detach keys; the container runs on.
    Detached,
}

/// What `attach` connects.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Send this process's stdin to the container (only if it was made with `-i`).
    pub stdin: bool,
    /// The keys that detach (Ctrl-P Ctrl-Q unless `--detach-keys`).
    pub detach_keys: Vec<u8>,
    /// Pass the signals this process gets on to the container (not with a terminal, whose
    /// Ctrl-C goes to the container as a key).
    pub sig_proxy: bool,
}

impl Default for AttachOptions {
    fn default() -> AttachOptions {
        AttachOptions { stdin: true, detach_keys: vec![0x10, 0x11], sig_proxy: true }
    }
}

/// `--detach-keys` as Docker takes it: a comma-separated list of `ctrl-<key>` or single
/// characters (`ctrl-p,ctrl-q`, `ctrl-a,x`).
pub fn parse_detach_keys(value: &str) -> Result<Vec<u8>> {
    let bad = || Error::option("--detach-keys", value, "use a comma-separated list of keys such as ctrl-p,ctrl-q or ctrl-a,x");
    let mut keys = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let key = match part.strip_prefix("ctrl-") {
            Some(k) if k.len() == 1 => {
                let c = k.as_bytes()[0].to_ascii_uppercase();
                if !(b'@'..=b'_').contains(&c) {
                    return Err(bad());
                }
                c - b'@'
            }
            None if part.len() == 1 && part.is_ascii() => part.as_bytes()[0],
            _ => return Err(bad()),
        };
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(bad());
    }
    Ok(keys)
}

/// Connects to the socket of the container in `dir`.
pub(crate) fn connect(dir: &Path) -> Result<UnixStream> {
    let path = dir.join(SOCKET);
    let (_dir, short) = socket_address(dir)?;
    UnixStream::connect(&short).map_err(|e| Error::io("connecting to the container's stdio at", &path, e))
}

/// The address of the socket in `dir`: its path, or, when that is longer than a socket address
/// may be (108 bytes: a long `--root`), the same file through `/proc/self/fd/N/` of the open
/// directory (returned, to be kept open while binding or connecting).
fn socket_address(dir: &Path) -> Result<(Option<std::fs::File>, std::path::PathBuf)> {
    let path = dir.join(SOCKET);
    if path.as_os_str().len() < 100 {
        return Ok((None, path));
    }
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir).map_err(|e| Error::io("opening", dir, e))?;
    let short = std::path::PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", d.as_raw_fd()));
    Ok((Some(d), short))
}

/// Finds the detach keys in the input: bytes that may start them are held back until it is
/// clear whether they do.
struct DetachScanner {
    keys: Vec<u8>,
    held: usize,
}

impl DetachScanner {
    /// The bytes to send for `input`, and whether the keys were typed.
    fn scan(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.get(self.held) == Some(&b) {
                self.held += 1;
                if self.held == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.held]);
            self.held = 0;
            if self.keys.first() == Some(&b) {
                self.held = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

impl Containers {
    /// Attaches this process's stdio to the running container until it exits (its exit code)
    /// or the user detaches.
    pub fn attach(&self, state: &ContainerState, opts: &AttachOptions) -> Result<Ended> {
        if state.status != Status::Running {
            return Err(Error::NotRunning { name: state.name.clone() });
        }
        if state.paused {
            return Err(Error::option("attach", &state.name, "the container is paused: unpause it first"));
        }
        let socket = connect(&self.dir_of(&state.id))?;
        self.attach_to(Some(socket), state, opts)
    }

    /// Runs an attached session on `socket` (connected to the container's shim).
    pub(crate) fn attach_to(&self, socket: Option<UnixStream>, state: &ContainerState, opts: &AttachOptions) -> Result<Ended> {
        let mut socket = match socket {
            Some(s) => s,
            None => connect(&self.dir_of(&state.id))?,
        };
        let io = |e| Error::io("talking to the shim of container", &state.name, e);
        let stdin = io::stdin();
        let on_terminal = runtime::tty::is_terminal(stdin.as_fd());
        let with_stdin = opts.stdin && state.open_stdin;
        let _raw = if state.tty && on_terminal && with_stdin { Some(runtime::tty::RawMode::enable(stdin.as_fd())?) } else { None };
        if state.tty && on_terminal {
            send_size(&mut socket);
            let mut resizes = socket.try_clone().map_err(io)?;
            if let Ok(mut winch) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]) {
                std::thread::spawn(move || {
                    for _ in winch.forever() {
                        send_size(&mut resizes);
                    }
                });
            }
        }
        if opts.sig_proxy
            && !state.tty
            && let Some(pid) = state.pid
        {
            runtime::tty::proxy_signals(pid)?;
        }
        let detached = Arc::new(AtomicBool::new(false));
        if with_stdin {
            let mut to = socket.try_clone().map_err(io)?;
            let detached = detached.clone();
            let mut scanner = DetachScanner { keys: opts.detach_keys.clone(), held: 0 };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut input = io::stdin().lock();
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = write_frame(&mut to, CLOSE_STDIN, &[]);
                            return;
                        }
                        Ok(n) => n,
                    };
                    let (send, detach) = scanner.scan(&buf[..n]);
                    if !send.is_empty() && write_frame(&mut to, STDIN, &send).is_err() {
                        return;
                    }
                    if detach {
                        detached.store(true, Ordering::SeqCst);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            });
        }
        let (mut stdout, mut stderr) = (io::stdout(), io::stderr());
        loop {
            let frame = read_frame(&mut socket);
            if detached.load(Ordering::SeqCst) {
                return Ok(Ended::Detached);
            }
            match frame {
                Ok(Some((STDOUT, data))) => {
                    let _ = stdout.write_all(&data).and_then(|_| stdout.flush());
                }
                Ok(Some((STDERR, data))) => {
                    let _ = stderr.write_all(&data).and_then(|_| stderr.flush());
                }
                Ok(Some((EXIT, code))) if code.len() == 4 => return Ok(Ended::Exited(i32::from_be_bytes([code[0], code[1], code[2], code[3]]))),
                Ok(Some(_)) => {}
                // The shim went away without a word: the record says how the container ended.
                Ok(None) | Err(_) => {
                    self.wait_exit(&state.id, Duration::from_secs(10));
                    return Ok(Ended::Exited(self.load(&state.id).ok().and_then(|s| s.exit_code).unwrap_or(137)));
                }
            }
        }
    }
}

fn send_size(socket: &mut UnixStream) {
    if let Some((rows, cols)) = runtime::tty::window_size(io::stdin().as_fd()) {
        let mut payload = rows.to_be_bytes().to_vec();
        payload.extend_from_slice(&cols.to_be_bytes());
        let _ = write_frame(socket, RESIZE, &payload);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_found_across_reads_and_false_starts_are_sent() {
        let mut s = DetachScanner { keys: vec![0x10, 0x11], held: 0 };
        assert_eq!(s.scan(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.scan(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.scan(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.scan(b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn detach_keys_parse_as_docker_writes_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-a,x").unwrap(), [0x01, b'x']);
        assert_eq!(parse_detach_keys("ctrl-@").unwrap(), [0]);
        let err = parse_detach_keys("ctrl-pp").unwrap_err().to_string();
        assert!(err.starts_with("invalid --detach-keys \"ctrl-pp\""), "{err}");
    }

    #[test]
    fn clients_connect_and_get_output_and_the_exit_code_under_a_long_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a-directory-name-long-enough-that-the-socket-path-exceeds").join("the-longest-address-a-unix-socket-may-have");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(dir.join(SOCKET).as_os_str().len() > 108);
        let server = Server::bind(&dir, false).unwrap();
        let mut client = connect(&dir).unwrap();
        // The client is registered by the accepting thread: wait for it.
        while server.clients.lock().unwrap().is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.output(crate::logs::Stream::Stderr).write_all(b"oops").unwrap();
        server.exited(3);
        assert_eq!(read_frame(&mut client).unwrap(), Some((STDERR, b"oops".to_vec())));
        assert_eq!(read_frame(&mut client).unwrap(), Some((EXIT, 3i32.to_be_bytes().to_vec())));
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").unwrap();
        write_frame(&mut buf, EXIT, &3i32.to_be_bytes()).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((STDOUT, b"hello".to_vec())));
        assert_eq!(read_frame(&mut r).unwrap(), Some((EXIT, vec![0, 0, 0, 3])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }
}
