//! `RUN --mount=type=ssh`: the ssh agents a build may use (`--ssh ID[=SOCKET|KEY[,KEY…]]`), an
//! agent of our own for key files, and the per-step proxy socket a sandbox connects to.
//!
//! The sandbox never sees the user's agent socket itself: each step gets a fresh socket, owned
//! and moded as the mount asks, whose connections are relayed to the agent. Only the id is part
//! of the op (and so of the cache key); the socket is gone when the step ends and is never in a
//! layer.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, SolveError};

/// What `--ssh ID=…` lends the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshSource {
    /// A running ssh-agent's socket (`--ssh default` takes `$SSH_AUTH_SOCK`).
    Agent(PathBuf),
    /// Private key files; the build runs an agent holding them.
    Keys(Vec<PathBuf>),
}

/// Parses one `--ssh` value as `docker build` does: `default`, `ID`, `ID=SOCKET` or
/// `ID=KEY[,KEY…]`. Without paths the agent of `ssh_auth_sock` (the caller's `$SSH_AUTH_SOCK`)
/// is used. Paths are checked here, on the machine they are on.
pub fn parse_ssh_flag(spec: &str, ssh_auth_sock: Option<&str>) -> std::result::Result<(String, SshSource), String> {
    let (id, value) = match spec.split_once('=') {
        Some((id, v)) => (id.trim(), Some(v)),
        None => (spec.trim(), None),
    };
    if id.is_empty() {
        return Err(format!("invalid --ssh {spec:?}: use default, ID, ID=SOCKET or ID=KEY[,KEY…]"));
    }
    let paths: Vec<PathBuf> = match value {
        Some(v) => v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect(),
        None => Vec::new(),
    };
    if paths.is_empty() {
        let sock = ssh_auth_sock.filter(|s| !s.is_empty()).ok_or_else(|| {
            format!("--ssh {spec}: SSH_AUTH_SOCK is not set; start an ssh-agent or give a socket or key file (--ssh {id}=PATH)")
        })?;
        return agent_socket(id, Path::new(sock)).map(|p| (id.to_string(), SshSource::Agent(p)));
    }
    if let [one] = paths.as_slice()
        && fs::metadata(one).map(|m| m.file_type().is_socket()).unwrap_or(false) {
            return agent_socket(id, one).map(|p| (id.to_string(), SshSource::Agent(p)));
        }
    for p in &paths {
        match fs::metadata(p) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(format!("--ssh {id}: {} is neither an ssh-agent socket nor a key file", p.display())),
            Err(e) => return Err(format!("--ssh {id}: {}: {e}", p.display())),
        }
    }
    Ok((id.to_string(), SshSource::Keys(paths.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect())))
}

fn agent_socket(id: &str, p: &Path) -> std::result::Result<PathBuf, String> {
    match fs::metadata(p) {
        Ok(m) if m.file_type().is_socket() => Ok(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
        Ok(_) => Err(format!("--ssh {id}: {} is not an ssh-agent socket", p.display())),
        Err(e) => Err(format!("--ssh {id}: ssh-agent socket {}: {e}", p.display())),
    }
}

/// An `ssh-agent` this build started for `--ssh ID=KEY…`, stopped when dropped.
pub struct KeyAgent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl KeyAgent {
    /// Starts `ssh-agent` (openssh-client) on a socket in a new directory under `tmp_root`, and
    /// adds `keys` to it.
    pub fn start(id: &str, keys: &[PathBuf], tmp_root: &Path) -> Result<KeyAgent> {
        let dir = tempfile::Builder::new().prefix("ssh-agent-").tempdir_in(tmp_root).map_err(SolveError::io("create temp dir in", tmp_root))?;
        let socket = dir.path().join("agent.sock");
        let missing = |e: std::io::Error| SolveError::Other(format!("--ssh {id}: key files need ssh-agent and ssh-add (Debian's openssh-client) on this machine: {e}"));
        // The agent dies with the build even when it is killed (util-linux `setpriv`, when
        // there; this crate has no unsafe code to set the parent-death signal itself).
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--", "ssh-agent"]);
            c
        } else {
            Command::new("ssh-agent")
        };
        let child = cmd.arg("-D").arg("-a").arg(&socket).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(missing)?;
        let mut agent = KeyAgent { child, socket, _dir: dir };
        let started = Instant::now();
        // The socket file appears at bind(2), before the agent listens: wait until it answers.
        while std::os::unix::net::UnixStream::connect(&agent.socket).is_err() {
            if started.elapsed() > Duration::from_secs(10) || matches!(agent.child.try_wait(), Ok(Some(_))) {
                return Err(SolveError::Other(format!("--ssh {id}: ssh-agent did not start (key files need Debian's openssh-client)")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = Command::new("ssh-add")
            .args(keys)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .env("SSH_ASKPASS_REQUIRE", "never")
            .env("DISPLAY", "")
            .stdin(Stdio::null())
            .output()
            .map_err(missing)?;
        if !out.status.success() {
            let names: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
            return Err(SolveError::Other(format!(
                "--ssh {id}: ssh-add {} failed ({}): {}",
                names.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(agent)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A socket relaying every connection to an ssh agent, stopped when dropped.
pub struct AgentProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens at `path` (created with `uid`/`gid`/`mode`) and relays to the agent at `agent`.
    pub fn start(agent: &Path, path: &Path, uid: u32, gid: u32, mode: u32) -> Result<AgentProxy> {
        let listener = UnixListener::bind(path).map_err(SolveError::io("listen on", path))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(SolveError::io("chmod", path))?;
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(SolveError::io("chown", path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (agent, stopped) = (agent.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                match UnixStream::connect(&agent) {
                    Ok(upstream) => relay(client, upstream),
                    Err(e) => tracing::warn!("ssh agent {}: {e}", agent.display()),
                }
            }
        });
        Ok(AgentProxy { path: path.to_path_buf(), stop, thread: Some(thread) })
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// Copies bytes both ways until either side closes.
fn relay(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let one_way = |mut from: UnixStream, mut to: UnixStream| {
        move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    std::thread::spawn(one_way(a, b2));
    std::thread::spawn(one_way(b, a2));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn flag_values_are_agents_or_key_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let sock = dir.path().join("agent.sock");
        let _l = UnixListener::bind(&sock).expect("bind");
        let key = dir.path().join("id_ed25519");
        fs::write(&key, "not really a key").expect("write");
        let s = sock.to_str().expect("utf8");
        assert_eq!(parse_ssh_flag("default", Some(s)).expect("default"), ("default".into(), SshSource::Agent(sock.clone())));
        assert_eq!(parse_ssh_flag(&format!("work={s}"), None).expect("socket"), ("work".into(), SshSource::Agent(sock.clone())));
        assert_eq!(parse_ssh_flag(&format!("k={}", key.display()), None).expect("key"), ("k".into(), SshSource::Keys(vec![key.clone()])));
        assert!(parse_ssh_flag("default", None).expect_err("no agent").contains("SSH_AUTH_SOCK is not set"));
        assert!(parse_ssh_flag("x=/nonexistent/key", None).expect_err("missing").contains("/nonexistent/key"));
        assert!(parse_ssh_flag(&format!("x={},{}", key.display(), dir.path().display()), None).expect_err("a dir").contains("neither"));
    }

    #[test]
    fn the_proxy_relays_both_ways_with_the_mode_asked_and_is_gone_when_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let upstream_path = dir.path().join("agent.sock");
        let upstream = UnixListener::bind(&upstream_path).expect("bind");
        let echo = std::thread::spawn(move || {
            let (mut c, _) = upstream.accept().expect("accept");
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).expect("read");
            c.write_all(&buf.to_ascii_uppercase()).expect("write");
        });
        let path = dir.path().join("proxy.sock");
        let proxy = AgentProxy::start(&upstream_path, &path, 0, 0, 0o660).expect("proxy");
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o660);
        let mut c = UnixStream::connect(&path).expect("connect");
        c.write_all(b"hello").expect("write");
        let mut back = [0u8; 5];
        c.read_exact(&mut back).expect("read");
        assert_eq!(&back, b"HELLO");
        echo.join().expect("echo");
        drop(proxy);
        assert!(!path.exists());
    }

    #[test]
    fn a_key_agent_holds_the_keys_it_was_given() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("id");
        let made = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "builder-test", "-f"]).arg(&key).status().expect("ssh-keygen (openssh-client)");
        assert!(made.success());
        let agent = KeyAgent::start("k", std::slice::from_ref(&key), dir.path()).expect("agent");
        let list = Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", agent.socket()).output().expect("ssh-add -l");
        assert!(String::from_utf8_lossy(&list.stdout).contains("builder-test"), "{list:?}");
        let sock = agent.socket().to_path_buf();
        drop(agent);
        assert!(!sock.exists());
        let bad = dir.path().join("bad");
        fs::write(&bad, "garbage").expect("write");
        let e = KeyAgent::start("k", &[bad], dir.path()).err().expect("bad key").to_string();
        assert!(e.contains("ssh-add") && e.contains("bad"), "{e}");
    }
}
