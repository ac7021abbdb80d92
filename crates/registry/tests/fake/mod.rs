//! A tiny HTTP/1.1 server that plays a registry and can misbehave on purpose: lie about blob
//! contents, fail with 500s, close connections mid-body, demand tokens, redirect.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// What to answer.
pub enum Reply {
    /// A full response.
    Full { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Promise `Content-Length: body.len()` but send only `send` bytes, then close.
    Truncated { body: Vec<u8>, send: usize },
}

impl Reply {
    pub fn ok(content_type: &str, body: Vec<u8>) -> Reply {
        Reply::Full { status: 200, headers: vec![("Content-Type".into(), content_type.into())], body }
    }
    pub fn status(status: u16) -> Reply {
        Reply::Full { status, headers: vec![], body: Vec::new() }
    }
    pub fn with_header(self, name: &str, value: &str) -> Reply {
        match self {
            Reply::Full { status, mut headers, body } => {
                headers.push((name.into(), value.into()));
                Reply::Full { status, headers, body }
            }
            other => other,
        }
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A running fake server. `handler(request, n)` gets how many times this method+path was seen
/// before (0 for the first).
pub struct FakeServer {
    pub addr: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let seen2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (handler, seen, counts) = (Arc::clone(&handler), Arc::clone(&seen2), Arc::clone(&counts));
                std::thread::spawn(move || serve(conn, &*handler, &seen, &counts));
            }
        });
        FakeServer { addr, seen }
    }

    /// Requests seen so far for `method` and a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.seen.lock().expect("lock").iter().filter(|s| s.method == method && s.path.starts_with(prefix)).count()
    }
}

fn serve(conn: TcpStream, handler: &Handler, seen: &Mutex<Vec<Seen>>, counts: &Mutex<HashMap<String, usize>>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else { return };
        let (method, path) = (method.to_string(), path.to_string());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Seen { method: method.clone(), path: path.clone(), headers, body };
        seen.lock().expect("lock").push(req.clone());
        let key = format!("{method} {path}");
        let n = {
            let mut c = counts.lock().expect("lock");
            let e = c.entry(key).or_insert(0);
            *e += 1;
            *e - 1
        };
        match handler(&req, n) {
            Reply::Full { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                if method != "HEAD" && out.write_all(&body).is_err() {
                    return;
                }
            }
            Reply::Truncated { body, send } => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len());
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&body[..send]);
                let _ = out.flush();
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

/// A small image: (manifest bytes, manifest digest, config bytes, layer bytes).
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
}

impl TestImage {
    pub fn new() -> TestImage {
        let mut tar = tar::Builder::new(Vec::new());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "data.bin", &data[..]).expect("tar");
        let tar = tar.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let layer = gz.finish().expect("gzip");
        let diff_id = oci::Digest::sha256_of(&tar);
        let config = format!(
            r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"config":{{}}}}"#,
            oci::Platform::host().architecture
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
            oci::Digest::sha256_of(&config),
            config.len(),
            oci::Digest::sha256_of(&layer),
            layer.len()
        )
        .into_bytes();
        TestImage { manifest, config, layer }
    }

    pub fn config_digest(&self) -> oci::Digest {
        oci::Digest::sha256_of(&self.config)
    }
    pub fn layer_digest(&self) -> oci::Digest {
        oci::Digest::sha256_of(&self.layer)
    }
    pub fn manifest_digest(&self) -> oci::Digest {
        oci::Digest::sha256_of(&self.manifest)
    }

    /// The honest answer to `req` for repository `repo`, or None for unknown paths.
    pub fn serve(&self, req: &Seen, repo: &str) -> Option<Reply> {
        let p = req.path.as_str();
        if p == "/v2/" {
            return Some(Reply::ok("application/json", b"{}".to_vec()));
        }
        if p.starts_with(&format!("/v2/{repo}/manifests/")) {
            return Some(Reply::ok("application/vnd.oci.image.manifest.v1+json", self.manifest.clone()));
        }
        if p == format!("/v2/{repo}/blobs/{}", self.config_digest()) {
            return Some(Reply::ok("application/octet-stream", self.config.clone()));
        }
        if p == format!("/v2/{repo}/blobs/{}", self.layer_digest()) {
            if let Some(range) = req.header("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
                let start: usize = range.parse().expect("range start");
                return Some(
                    Reply::Full { status: 206, headers: vec![], body: self.layer[start..].to_vec() }
                        .with_header("Content-Range", &format!("bytes {start}-{}/{}", self.layer.len() - 1, self.layer.len())),
                );
            }
            return Some(Reply::ok("application/octet-stream", self.layer.clone()));
        }
        None
    }
}
