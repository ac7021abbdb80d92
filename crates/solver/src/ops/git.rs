//! Git sources (`ADD https://host/repo.git#ref:subdir /dest`), fetched with the host's `git`.
//!
//! The ref is resolved to a commit first (`git ls-remote`, a few bytes over the network), and the
//! cache key is that commit: an unchanged remote is a cache hit without fetching anything, a new
//! commit is a new checkout. The checkout is kept in the cache index like a layer, so the COPY
//! that reads it is keyed by the commit too. Files are owned by root with the commit's time as
//! their mtime (a fresh clone of the same commit gives the same tree), and `.git` is dropped
//! unless `keep_git_dir`.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use graph::GitOp;

use crate::cache::{CacheIndex, CacheRecord, KeyHasher, LayerRef, Snapshot, now_secs};
use crate::error::{Result, SolveError};
use crate::cancel::Cancel;
use super::{Output, Solved};

/// Resolves, fetches (when not cached) and returns the checkout of `op` as a one-layer snapshot;
/// the flag says whether it came from the cache. `ssh_agent` is the build's `--ssh default`
/// socket, used for `git@host:` remotes; `secrets` are the build's, for http(s) credentials (see
/// [`auth_header`]). A cancelled build kills the running `git`.
pub fn checkout(
    index: &CacheIndex,
    op: &GitOp,
    step: &str,
    ignore_cache: bool,
    ssh_agent: Option<&Path>,
    secrets: &HashMap<String, Vec<u8>>,
    cancel: &Cancel,
) -> Result<(Solved, bool)> {
    let git = Git { step, ssh_agent, auth: auth_header(&op.remote, secrets), cancel };
    let (commit, full_ref) = git.resolve(op)?;
    if let Some(want) = op.checksum.as_deref().filter(|c| !c.is_empty())
        && !(want.len() >= 7 && commit.starts_with(&want.to_ascii_lowercase())) {
            return Err(SolveError::step(step, format!("checksum mismatch for {}: the ref resolves to commit {commit}, --checksum expects {want}", shown(op))));
        }
    let mut h = KeyHasher::new();
    h.field("git-commit", commit.as_bytes()).field("subdir", op.subdir.as_bytes()).field("keep-git-dir", &[op.keep_git_dir as u8]);
    if op.keep_git_dir {
        // `.git` names the remote and the branch.
        h.field("remote", op.remote.as_bytes()).field("ref", full_ref.as_bytes());
    }
    let key = h.finish();
    if let Some(hit) = super::probe(index, &key, ignore_cache) {
        return Ok((hit, true));
    }
    let _lock = index.lock_key(&key)?;
    if let Some(hit) = super::probe(index, &key, ignore_cache) {
        return Ok((hit, true));
    }
    let work = index.work_dir()?;
    let repo = work.path().join("checkout");
    git.fetch_and_checkout(op, &commit, &full_ref, &repo)?;
    let time = git.commit_time(&repo, &commit)?;
    if !op.keep_git_dir {
        remove_git_dirs(&repo)?;
    }
    let result = if op.subdir.is_empty() {
        repo
    } else {
        if op.subdir.split('/').any(|c| c == "..") {
            return Err(SolveError::step(step, format!("subdir {:?} of {} leaves the repository", op.subdir, shown(op))));
        }
        let sub = repo.join(&op.subdir);
        if !fs::symlink_metadata(&sub).map(|m| m.is_dir()).unwrap_or(false) {
            return Err(SolveError::step(step, format!("subdir {:?} not found in {} at commit {commit}", op.subdir, shown(op))));
        }
        let moved = work.path().join("subdir");
        fs::rename(&sub, &moved).map_err(SolveError::io("move", &sub))?;
        moved
    };
    normalize(&result, time)?;
    let size = crate::cache::dir_size(&result);
    let rel = index.commit_layer(&key, &result)?;
    let snapshot = Snapshot { layers: vec![LayerRef { dir: rel, blob: None }] };
    let created = now_secs();
    index.put(&key, &CacheRecord { snapshot: snapshot.clone(), new_layers: 1, size, description: format!("git {} {commit}", shown(op)), created, provenance: None })?;
    Ok((Solved { key, output: Output::Snapshot { snapshot, new_layers: 1, created }, provenance: None }, false))
}

/// Checks `op` out into `dest` (which must not exist) for use as a build context, as `docker
/// build https://host/repo.git#ref:subdir` does; returns the context directory (the subdir, if
/// named). `.git` is kept only with `keep_git_dir`.
pub fn clone_context(op: &GitOp, dest: &Path, ssh_agent: Option<&Path>) -> Result<PathBuf> {
    let step = "context";
    let cancel = Cancel::default();
    let git = Git { step, ssh_agent, auth: None, cancel: &cancel };
    let (commit, full_ref) = git.resolve(op)?;
    git.fetch_and_checkout(op, &commit, &full_ref, dest)?;
    if !op.keep_git_dir {
        remove_git_dirs(dest)?;
    }
    if op.subdir.is_empty() {
        return Ok(dest.to_path_buf());
    }
    let sub = dest.join(&op.subdir);
    if op.subdir.split('/').any(|c| c == "..") || !fs::symlink_metadata(&sub).map(|m| m.is_dir()).unwrap_or(false) {
        return Err(SolveError::step(step, format!("subdir {:?} not found in {} at commit {commit}", op.subdir, shown(op))));
    }
    Ok(sub)
}

fn shown(op: &GitOp) -> String {
    if op.reference.is_empty() { op.remote.clone() } else { format!("{}#{}", op.remote, op.reference) }
}

/// The `Authorization` header for an http(s) remote, from the build's secrets as BuildKit names
/// them: `GIT_AUTH_HEADER` (the whole header value) or `GIT_AUTH_TOKEN` (a token, sent as basic
/// auth for `x-access-token`), each optionally suffixed `.<host>` to apply to that host only.
pub fn auth_header(remote: &str, secrets: &HashMap<String, Vec<u8>>) -> Option<String> {
    let rest = remote.strip_prefix("https://").or_else(|| remote.strip_prefix("http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = host_port.split(':').next().unwrap_or(host_port);
    let find = |name: &str| {
        [format!("{name}.{host_port}"), format!("{name}.{host}"), name.to_string()].iter().find_map(|k| secrets.get(k)).map(|v| String::from_utf8_lossy(v).trim().to_string())
    };
    if let Some(h) = find("GIT_AUTH_HEADER") {
        return Some(h);
    }
    use base64::Engine as _;
    find("GIT_AUTH_TOKEN").map(|t| format!("basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{t}"))))
}

struct Git<'a> {
    step: &'a str,
    ssh_agent: Option<&'a Path>,
    /// `Authorization` header for http(s) remotes; passed in the environment, never argv.
    auth: Option<String>,
    cancel: &'a Cancel,
}

impl Git<'_> {
    /// Runs `git args…` (in `dir` when given) without prompts; stdout on success, else an error
    /// with `what` and git's own message.
    fn run(&self, dir: Option<&Path>, args: &[&str], what: &str) -> Result<String> {
        let mut cmd = Command::new("git");
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        cmd.args(args).env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C").stdin(Stdio::null());
        // Only an agent the build was given (`--ssh default`), as BuildKit does.
        match self.ssh_agent {
            Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        if let Some(h) = &self.auth {
            cmd.env("GIT_CONFIG_COUNT", "1").env("GIT_CONFIG_KEY_0", "http.extraHeader").env("GIT_CONFIG_VALUE_0", format!("Authorization: {h}"));
        }
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        let out = self.output(cmd).map_err(|e| SolveError::step(self.step, format!("{what}: running git (is it installed?): {e}")))?;
        if self.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = lines[lines.len().saturating_sub(4)..].join("\n  ");
            return Err(SolveError::step(self.step, format!("{what}: git {} failed ({}): {tail}", args.first().copied().unwrap_or(""), out.status)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `cmd` to the end, or kills it when the build is cancelled.
    fn output(&self, mut cmd: Command) -> std::io::Result<std::process::Output> {
        // Its own process group, so a cancel also stops the helpers git starts (ssh, remote-http).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let out: Option<Box<dyn std::io::Read + Send>> = child.stdout.take().map(|p| Box::new(p) as _);
        let err: Option<Box<dyn std::io::Read + Send>> = child.stderr.take().map(|p| Box::new(p) as _);
        std::thread::scope(|s| {
            let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            };
            let stdout = s.spawn(move || read(out));
            let stderr = s.spawn(move || read(err));
            let status = loop {
                if let Some(st) = child.try_wait()? {
                    break st;
                }
                if self.cancel.is_cancelled() {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            };
            Ok(std::process::Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() })
        })
    }

    /// The commit `op.reference` names on the remote, and the full ref name (empty for a commit).
    fn resolve(&self, op: &GitOp) -> Result<(String, String)> {
        let r = op.reference.as_str();
        if is_commit(r) {
            return Ok((r.to_ascii_lowercase(), String::new()));
        }
        let pattern = if r.is_empty() { "HEAD" } else { r };
        let listing = self.run(None, &["ls-remote", "--", &op.remote, pattern], &format!("resolving {}", shown(op)))?;
        let refs: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
        let wanted = [
            pattern.to_string(),
            format!("refs/heads/{pattern}"),
            format!("refs/tags/{pattern}^{{}}"),
            format!("refs/tags/{pattern}"),
        ];
        for w in &wanted {
            if let Some((sha, name)) = refs.iter().find(|(_, name)| name == w) {
                return Ok((sha.to_string(), name.trim_end_matches("^{}").to_string()));
            }
        }
        Err(SolveError::step(self.step, format!("git ref {pattern:?} not found in {}: give a branch, a tag or a full commit id", op.remote)))
    }

    fn fetch_and_checkout(&self, op: &GitOp, commit: &str, full_ref: &str, repo: &Path) -> Result<()> {
        let what = format!("fetching {}", shown(op));
        fs::create_dir_all(repo).map_err(SolveError::io("create", repo))?;
        self.run(Some(repo), &["init", "-q"], &what)?;
        self.run(Some(repo), &["remote", "add", "origin", &op.remote], &what)?;
        // One commit deep when the server allows it; dumb HTTP and old servers get a full fetch.
        let wanted = if full_ref.is_empty() || full_ref == "HEAD" { commit } else { full_ref };
        let shallow = self.run(Some(repo), &["fetch", "-q", "--depth=1", "--no-tags", "origin", wanted], &what);
        if shallow.is_err() || self.run(Some(repo), &["cat-file", "-e", &format!("{commit}^{{commit}}")], &what).is_err() {
            self.run(Some(repo), &["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], &what)?;
            self.run(Some(repo), &["cat-file", "-e", &format!("{commit}^{{commit}}")], &format!("commit {commit} of {}", op.remote))?;
        }
        match full_ref.strip_prefix("refs/heads/").filter(|_| op.keep_git_dir) {
            // A kept .git is on the branch, as a clone of it would be.
            Some(branch) => self.run(Some(repo), &["checkout", "-q", "-B", branch, commit], &what)?,
            None => self.run(Some(repo), &["checkout", "-q", "--detach", commit], &what)?,
        };
        if repo.join(".gitmodules").is_file() {
            self.run(Some(repo), &["submodule", "update", "-q", "--init", "--recursive", "--depth=1"], &format!("submodules of {}", shown(op)))?;
        }
        Ok(())
    }

    fn commit_time(&self, repo: &Path, commit: &str) -> Result<i64> {
        let out = self.run(Some(repo), &["log", "-1", "--format=%ct", commit], "reading the commit time")?;
        out.trim().parse().map_err(|_| SolveError::step(self.step, format!("unexpected commit time {:?} of {commit}", out.trim())))
    }
}

fn is_commit(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes `.git` (the directory, and the `.git` files of submodules).
fn remove_git_dirs(root: &Path) -> Result<()> {
    let mut found = Vec::new();
    let mut it = walkdir::WalkDir::new(root).into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(|e| SolveError::Other(format!("reading {}: {e}", root.display())))?;
        if e.file_name() == ".git" {
            found.push(e.path().to_path_buf());
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
        }
    }
    for p in found {
        let r = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        if let Err(e) = r
            && e.kind() != std::io::ErrorKind::NotFound {
                return Err(SolveError::Io { op: "remove", path: p, source: e });
            }
    }
    Ok(())
}

/// Root owns everything; files are 0644 (0755 when git says executable), directories 0755, and
/// every mtime is the commit's time.
fn normalize(root: &Path, time: i64) -> Result<()> {
    let mtime = filetime::FileTime::from_unix_time(time, 0);
    let entries: Vec<PathBuf> = walkdir::WalkDir::new(root).contents_first(true).into_iter().filter_map(|e| e.ok()).map(|e| e.into_path()).collect();
    for p in entries {
        let m = fs::symlink_metadata(&p).map_err(SolveError::io("stat", &p))?;
        std::os::unix::fs::lchown(&p, Some(0), Some(0)).map_err(SolveError::io("chown", &p))?;
        if m.file_type().is_symlink() {
            let _ = filetime::set_symlink_file_times(&p, mtime, mtime);
            continue;
        }
        let mode = if m.is_dir() || m.mode() & 0o111 != 0 { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(SolveError::io("chmod", &p))?;
        filetime::set_file_times(&p, mtime, mtime).map_err(SolveError::io("set mtime", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let st = Command::new("sh").arg("-ec").arg(script).current_dir(dir).env("GIT_AUTHOR_DATE", "2020-01-02T03:04:05Z").env("GIT_COMMITTER_DATE", "2020-01-02T03:04:05Z").status().expect("sh");
        assert!(st.success(), "{script}");
    }

    /// A repository with a `v1` tag, a later commit on `main`, and a `docs` directory.
    fn repo(dir: &Path) -> PathBuf {
        let r = dir.join("upstream");
        fs::create_dir(&r).expect("mkdir");
        sh(&r, "git init -q -b main . && git config user.email t@e && git config user.name t \
                && echo one > a.txt && mkdir docs && echo doc > docs/d.md && printf '#!/bin/sh\\n' > run.sh && chmod 700 run.sh \
                && git add -A && git commit -qm one && git tag -a v1 -m v1 \
                && echo two > a.txt && git commit -qam two");
        r
    }

    fn files(index: &CacheIndex, s: &Solved) -> PathBuf {
        match &s.output {
            Output::Snapshot { snapshot, .. } => index.abs(&snapshot.layers[0].dir),
            _ => panic!("not a snapshot"),
        }
    }

    #[test]
    fn refs_subdirs_and_git_dirs_check_out_as_asked_and_an_unchanged_remote_is_cached() {
        let dir = tempfile::tempdir().expect("tmp");
        let upstream = repo(dir.path());
        let index = CacheIndex::open(&dir.path().join("root")).expect("index");
        let remote = format!("file://{}", upstream.display());
        let op = |r: &str, sub: &str, keep: bool| GitOp { remote: remote.clone(), reference: r.into(), subdir: sub.into(), keep_git_dir: keep, checksum: None };

        let (head, cached) = checkout(&index, &op("", "", false), "t", false, None, &HashMap::new(), &Cancel::default()).expect("HEAD");
        assert!(!cached);
        let tree = files(&index, &head);
        assert_eq!(fs::read_to_string(tree.join("a.txt")).expect("a"), "two\n");
        assert!(!tree.join(".git").exists());
        let m = fs::metadata(tree.join("run.sh")).expect("run.sh");
        assert_eq!((m.mode() & 0o777, m.uid(), m.mtime()), (0o755, 0, 1_577_934_245));
        assert_eq!(fs::metadata(tree.join("a.txt")).expect("a").mode() & 0o777, 0o644);

        let (again, cached) = checkout(&index, &op("main", "", false), "t", false, None, &HashMap::new(), &Cancel::default()).expect("main");
        assert!(cached, "main is HEAD's commit");
        assert_eq!(again.key, head.key);

        let (tag, _) = checkout(&index, &op("v1", "", false), "t", false, None, &HashMap::new(), &Cancel::default()).expect("tag");
        assert_eq!(fs::read_to_string(files(&index, &tag).join("a.txt")).expect("a"), "one\n");

        let (docs, _) = checkout(&index, &op("v1", "docs", false), "t", false, None, &HashMap::new(), &Cancel::default()).expect("subdir");
        assert_eq!(fs::read_to_string(files(&index, &docs).join("d.md")).expect("d"), "doc\n");

        let (kept, _) = checkout(&index, &op("main", "", true), "t", false, None, &HashMap::new(), &Cancel::default()).expect("keep");
        let branch = Command::new("git").arg("-C").arg(files(&index, &kept)).args(["rev-parse", "--abbrev-ref", "HEAD"]).output().expect("git");
        assert_eq!(String::from_utf8_lossy(&branch.stdout).trim(), "main");

        sh(&upstream, "echo three > a.txt && git commit -qam three");
        let (newer, cached) = checkout(&index, &op("main", "", false), "t", false, None, &HashMap::new(), &Cancel::default()).expect("new commit");
        assert!(!cached);
        assert_ne!(newer.key, head.key);
        assert_eq!(fs::read_to_string(files(&index, &newer).join("a.txt")).expect("a"), "three\n");
    }

    #[test]
    fn http_credentials_come_from_git_auth_secrets_host_first() {
        let mut secrets = HashMap::new();
        assert_eq!(auth_header("https://example.com/r.git", &secrets), None);
        secrets.insert("GIT_AUTH_TOKEN".to_string(), b"tok\n".to_vec());
        // base64("x-access-token:tok")
        assert_eq!(auth_header("https://example.com/r.git", &secrets).as_deref(), Some("basic eC1hY2Nlc3MtdG9rZW46dG9r"));
        secrets.insert("GIT_AUTH_HEADER.git.example".to_string(), b"bearer abc".to_vec());
        assert_eq!(auth_header("http://user@git.example:8080/r.git", &secrets).as_deref(), Some("bearer abc"));
        secrets.insert("GIT_AUTH_HEADER.git.example:8080".to_string(), b"bearer port".to_vec());
        assert_eq!(auth_header("http://user@git.example:8080/r.git", &secrets).as_deref(), Some("bearer port"));
        assert_eq!(auth_header("https://git.example/r.git", &secrets).as_deref(), Some("bearer abc"));
        assert_eq!(auth_header("git@example.com:r.git", &secrets), None, "only for http(s)");
    }

    #[test]
    fn a_cancelled_build_stops_git() {
        let dir = tempfile::tempdir().expect("tmp");
        let upstream = repo(dir.path());
        let index = CacheIndex::open(&dir.path().join("root")).expect("index");
        let cancel = Cancel::default();
        cancel.cancel();
        let op = GitOp { remote: format!("file://{}", upstream.display()), reference: "main".into(), subdir: String::new(), keep_git_dir: false, checksum: None };
        assert!(matches!(checkout(&index, &op, "t", false, None, &HashMap::new(), &cancel), Err(SolveError::Cancelled)));
    }

    #[test]
    fn a_missing_ref_subdir_or_wrong_checksum_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let upstream = repo(dir.path());
        let index = CacheIndex::open(&dir.path().join("root")).expect("index");
        let remote = format!("file://{}", upstream.display());
        let op = |r: &str, sub: &str, sum: Option<&str>| GitOp { remote: remote.clone(), reference: r.into(), subdir: sub.into(), keep_git_dir: false, checksum: sum.map(str::to_string) };
        let e = checkout(&index, &op("nope", "", None), "[1/2] ADD", false, None, &HashMap::new(), &Cancel::default()).err().expect("bad ref").to_string();
        assert!(e.contains("git ref \"nope\" not found") && e.contains(&remote), "{e}");
        let e = checkout(&index, &op("main", "nodir", None), "[1/2] ADD", false, None, &HashMap::new(), &Cancel::default()).err().expect("bad subdir").to_string();
        assert!(e.contains("subdir \"nodir\" not found"), "{e}");
        let e = checkout(&index, &op("main", "", Some("0000000")), "[1/2] ADD", false, None, &HashMap::new(), &Cancel::default()).err().expect("bad checksum").to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
        let e = checkout(&index, &GitOp { remote: format!("{remote}-missing"), ..op("", "", None) }, "[1/2] ADD", false, None, &HashMap::new(), &Cancel::default()).err().expect("no repo").to_string();
        assert!(e.contains("resolving") && e.contains("-missing"), "{e}");
    }
}
