//! A real registry for tests: Debian's `docker-registry` on a free loopback port, storage in a
//! temp dir, optional htpasswd basic auth. Stopped when dropped.
//!
//! ```ignore
//! let registry = Registry::start();
//! builder.ok(&["push", &format!("{}/app:1", registry.addr())]);
//! ```
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `docker-registry`.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    auth: Option<(String, String)>,
}

impl Registry {
    /// A registry anyone can push to and pull from.
    pub fn start() -> Registry {
        Registry::launch(None)
    }

    /// A registry that requires `user`/`pass` (HTTP basic auth) for everything.
    pub fn start_with_auth(user: &str, pass: &str) -> Registry {
        Registry::launch(Some((user.to_string(), pass.to_string())))
    }

    /// "127.0.0.1:PORT", the registry part of an image reference.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The credentials, if the registry has auth.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage directory (to inspect or damage what it stores).
    pub fn storage(&self) -> std::path::PathBuf {
        self.dir.path().join("storage")
    }

    fn launch(auth: Option<(String, String)>) -> Registry {
        // The free port may be taken by another test between probing and binding: try again.
        let mut last = String::new();
        for _ in 0..5 {
            match Registry::try_launch(auth.clone()) {
                Ok(r) => return r,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    fn try_launch(auth: Option<(String, String)>) -> Result<Registry, String> {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(bin.exists(), "tests need Debian's docker-registry (/usr/bin/docker-registry)");
        let dir = tempfile::tempdir().expect("registry temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("registry storage dir");
        let port = free_port();
        let mut auth_yaml = String::new();
        if let Some((user, pass)) = &auth {
            let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("run htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            auth_yaml = format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", htpasswd.display());
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Registry { child, port, dir, auth };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
                return Err(format!("docker-registry exited with {status}:\n{log}"));
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", self.port);
                let mut resp = String::new();
                if s.write_all(req.as_bytes()).is_ok() && s.read_to_string(&mut resp).is_ok() && resp.starts_with("HTTP/1") {
                    // Make sure it is our registry that answered, not one that already had the port.
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!("docker-registry exited with {status} (port {} taken?)", self.port));
                    }
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("docker-registry did not answer on {} within 20 s", self.addr()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP status code of a plain `GET http://ADDR/PATH` (no auth). It accepts every manifest
/// type, since a registry answers 404 for an OCI manifest to a client that does not.
pub fn http_status(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `GET http://ADDR/PATH` (no auth, every manifest type accepted): the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp[split..].to_vec())
}
