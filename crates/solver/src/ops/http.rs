//! Http ops (`ADD https://…`): downloads a file (reqwest, rustls), verifies `--checksum`, and
//! keys the result by its content, so a URL serving the same bytes again is a cache hit.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use graph::HttpOp;
use sha2::Digest as _;

use crate::cache::{CacheIndex, KeyHasher};
use crate::error::{Result, SolveError};
use super::{Output, Solved};

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
            return Ok(Solved { key: h.finish(), output: Output::Http { dir, file: op.filename.clone() }, provenance: None });
        }
    }
    let tmp = tempfile::Builder::new().prefix("http-").tempdir_in(&base).map_err(SolveError::io("create temp dir in", &base))?;
    let file = tmp.path().join(&op.filename);
    fetch(&op.url, &file).map_err(|e| SolveError::step(step, format!("downloading {}: {e}", op.url)))?;
    let mut hasher = sha2::Sha256::new();
    let mut f = fs::File::open(&file).map_err(SolveError::io("open", &file))?;
    std::io::copy(&mut f, &mut hasher).map_err(SolveError::io("read", &file))?;
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    if let Some(sum) = &op.checksum
        && sum != &digest {
            return Err(SolveError::step(step, format!("checksum of {} does not match: expected {sum}, got {digest}", op.url)));
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
    Ok(Solved { key: h.finish(), output: Output::Http { dir, file: op.filename.clone() }, provenance: None })
}

/// Downloads `url` (`http://` or `https://`, up to 5 redirects) into the file `dest`.
pub fn fetch(url: &str, dest: &Path) -> std::io::Result<()> {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err(std::io::Error::other("only http:// and https:// URLs are supported"));
    };
    // A URL parser would read `http:///file` as the host `file`: say what is wrong instead.
    if rest.split(['/', '?', '#']).next().unwrap_or_default().is_empty() {
        return Err(std::io::Error::other("the URL names no host"));
    }
    // reqwest is built without a default TLS provider; ring is the one we ship.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("builder/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(30))
        .timeout(None)
        .build()
        .map_err(|e| std::io::Error::other(error_chain(&e)))?;
    let mut resp = client.get(url).send().map_err(|e| std::io::Error::other(error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(std::io::Error::other(format!("server answered {status}")));
    }
    let mut out = fs::File::create(dest)?;
    resp.copy_to(&mut out).map_err(|e| std::io::Error::other(error_chain(&e)))?;
    out.flush()?;
    out.sync_all()
}

/// An error with its causes ("error sending request: connection refused"), as reqwest nests them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cur = c.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// A one-shot server on loopback: answers each connection with the next canned response.
    fn serve(responses: Vec<String>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for r in responses {
                let Ok((mut s, _)) = l.accept() else { return };
                let mut reader = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                    line.clear();
                }
                let _ = s.write_all(r.as_bytes());
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn redirects_are_followed_and_errors_name_the_status() {
        let base = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /file.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n".into(),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        ]);
        let dir = tempfile::tempdir().expect("tmp");
        let dest = dir.path().join("f");
        fetch(&format!("{base}/start"), &dest).expect("fetch");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "hello");
        let e = fetch(&format!("{base}/missing"), &dest).expect_err("404");
        assert!(e.to_string().contains("404"), "{e}");
        let e = fetch("ftp://x/y", &dest).expect_err("scheme");
        assert!(e.to_string().contains("only http:// and https://"), "{e}");
        let e = fetch("http:///file.txt", &dest).expect_err("no host");
        assert!(e.to_string().contains("names no host"), "{e}");
    }
}
