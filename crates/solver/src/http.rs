//! `ADD https://…`: downloads a file, verifies `--checksum`, and keys the result by content.
//!
//! Plain `http://` is fetched with a small HTTP/1.1 client (no redirects beyond 5 hops);
//! `https://` goes through `curl` when present.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;

use graph::HttpOp;
use sha2::Digest as _;

use crate::cache::{CacheIndex, KeyHasher};
use crate::error::{Result, SolveError};
use crate::solve::{Output, Solved};

/// Downloads `op.url` into `cache/http/<key>/<file>` and returns it as an input.
pub fn download(index: &CacheIndex, op: &HttpOp, step: &str) -> Result<Solved> {
    let base = index.state_root().join("cache/http");
    fs::create_dir_all(&base).map_err(SolveError::io("create", &base))?;
    // With a checksum the content is known before downloading: reuse an earlier download.
    if let Some(sum) = &op.checksum {
        let dir = base.join(&blake3::hash(format!("{sum}\0{}", op.filename).as_bytes()).to_hex()[..16]);
        if dir.join(&op.filename).is_file() {
            let mut h = KeyHasher::new();
            h.field("http-content", sum.as_bytes()).field("name", op.filename.as_bytes());
            return Ok(Solved { key: h.finish(), output: Output::Http { dir, file: op.filename.clone() } });
        }
    }
    let tmp = tempfile::Builder::new().prefix("http-").tempdir_in(&base).map_err(SolveError::io("create temp dir in", &base))?;
    let file = tmp.path().join(&op.filename);
    fetch(&op.url, &file).map_err(|e| SolveError::step(step, format!("downloading {}: {e}", op.url)))?;
    let mut hasher = sha2::Sha256::new();
    let mut f = fs::File::open(&file).map_err(SolveError::io("open", &file))?;
    std::io::copy(&mut f, &mut hasher).map_err(SolveError::io("read", &file))?;
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(sum) = &op.checksum {
        if sum != &digest {
            return Err(SolveError::step(step, format!("checksum of {} does not match: expected {sum}, got {digest}", op.url)));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).map_err(SolveError::io("chmod", &file))?;
    let dir = base.join(&blake3::hash(format!("{digest}\0{}", op.filename).as_bytes()).to_hex()[..16]);
    let kept = tmp.keep();
    if fs::rename(&kept, &dir).is_err() {
        let _ = fs::remove_dir_all(&kept);
    }
    let mut h = KeyHasher::new();
    h.field("http-content", digest.as_bytes()).field("name", op.filename.as_bytes());
    Ok(Solved { key: h.finish(), output: Output::Http { dir, file: op.filename.clone() } })
}

/// Downloads `url` into the file `dest` (redirects followed).
pub fn fetch(url: &str, dest: &Path) -> std::io::Result<()> {
    let mut url = url.to_string();
    for _ in 0..5 {
        if url.starts_with("https://") {
            let st = std::process::Command::new("curl").args(["-fsSL", "-o"]).arg(dest).arg(&url).status()?;
            if !st.success() {
                return Err(std::io::Error::other(format!("curl exited with {st}")));
            }
            return Ok(());
        }
        let rest = url.strip_prefix("http://").ok_or_else(|| std::io::Error::other("only http:// and https:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
        let mut s = TcpStream::connect(&addr)?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nUser-Agent: builder\r\n\r\n")?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status)?;
        let code: u16 = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut location = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("location:") {
                location = Some(line[line.len() - v.len()..].trim().to_string());
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        if (300..400).contains(&code) {
            let location = location.ok_or_else(|| std::io::Error::other(format!("redirect {code} without Location")))?;
            url = resolve_location(hostport, path, &location);
            continue;
        }
        if code != 200 {
            return Err(std::io::Error::other(format!("server answered {}", status.trim())));
        }
        let mut out = fs::File::create(dest)?;
        if chunked {
            loop {
                let mut size_line = String::new();
                r.read_line(&mut size_line)?;
                let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16).map_err(std::io::Error::other)?;
                if size == 0 {
                    break;
                }
                let mut chunk = vec![0u8; size];
                r.read_exact(&mut chunk)?;
                out.write_all(&chunk)?;
                let mut crlf = String::new();
                r.read_line(&mut crlf)?;
            }
        } else {
            std::io::copy(&mut r, &mut out)?;
        }
        return out.sync_all();
    }
    Err(std::io::Error::other("too many redirects"))
}

/// The URL a redirect's `Location` names, from the request it answered (`host:port`, path):
/// absolute, scheme-relative (`//host/p`), host-relative (`/p`) or relative to the path's directory.
fn resolve_location(hostport: &str, path: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("http://{rest}")
    } else if location.starts_with('/') {
        format!("http://{hostport}{location}")
    } else {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
        format!("http://{hostport}{dir}{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_resolve_against_the_request() {
        assert_eq!(resolve_location("h:1", "/a/b", "https://o/x"), "https://o/x");
        assert_eq!(resolve_location("h:1", "/a/b", "//o/x"), "http://o/x");
        assert_eq!(resolve_location("h:1", "/a/b", "/dir/"), "http://h:1/dir/");
        assert_eq!(resolve_location("h:1", "/a/b?q=1", "c"), "http://h:1/a/c");
    }
}
