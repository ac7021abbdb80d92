//! `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`): where `docker login` keeps
//! credentials, either inline (`auths`) or in a `docker-credential-*` helper (`credsStore`,
//! `credHelpers`). `builder login`/`logout` write the same file, so both tools share logins.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The key Docker uses for Docker Hub in `config.json`.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// The docker client configuration directory.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    dir: PathBuf,
}

impl DockerConfig {
    /// `dir` if given, else `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn locate(dir: Option<&Path>) -> DockerConfig {
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("DOCKER_CONFIG").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
            .unwrap_or_else(|| PathBuf::from(".docker"));
        DockerConfig { dir }
    }

    /// The `config.json` path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn read(&self) -> Result<Map<String, Value>> {
        let path = self.path();
        match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(Error::Credentials { path, reason: "not a JSON object".into() }),
                Err(e) => Err(Error::Credentials { path, reason: format!("invalid JSON: {e}") }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
            Err(e) => Err(Error::Io { op: "read", path, source: e }),
        }
    }

    fn write(&self, config: &Map<String, Value>) -> Result<()> {
        let path = self.path();
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::Io { op: "create directory", path: self.dir.clone(), source: e })?;
        let tmp = self.dir.join(format!(".config.json.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(config).map_err(|e| Error::Credentials { path: path.clone(), reason: e.to_string() })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&tmp)?;
            f.set_permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io { op: "write", path: path.clone(), source: e }
        })
    }

    /// The credentials stored for `registry` (a host[:port], `docker.io` for Docker Hub).
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let config = self.read()?;
        let key = config_key(registry);
        if let Some(helper) = helper_for(&config, registry) {
            return self.helper_get(&helper, &key);
        }
        let Some(Value::Object(auths)) = config.get("auths") else { return Ok(None) };
        for (k, entry) in auths {
            if normalize_key(k) != normalize_key(&key) {
                continue;
            }
            if let Some(token) = entry.get("identitytoken").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                return Ok(Some(Credentials { username: "<token>".into(), secret: token.into() }));
            }
            if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                let decoded = BASE64
                    .decode(auth.trim())
                    .map_err(|e| Error::Credentials { path: self.path(), reason: format!("auths[{k:?}].auth is not base64: {e}") })?;
                let text = String::from_utf8_lossy(&decoded);
                let Some((user, pass)) = text.split_once(':') else {
                    return Err(Error::Credentials { path: self.path(), reason: format!("auths[{k:?}].auth is not user:password") });
                };
                return Ok(Some(Credentials { username: user.into(), secret: pass.into() }));
            }
            if let (Some(u), Some(p)) = (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str)) {
                return Ok(Some(Credentials { username: u.into(), secret: p.into() }));
            }
        }
        Ok(None)
    }

    /// Saves credentials for `registry`: in the configured helper if there is one, else inline.
    pub fn store(&self, registry: &str, creds: &Credentials) -> Result<()> {
        let mut config = self.read()?;
        let key = config_key(registry);
        if let Some(helper) = helper_for(&config, registry) {
            let input = json!({"ServerURL": key, "Username": creds.username, "Secret": creds.secret}).to_string();
            self.run_helper(&helper, "store", &input)?;
            // Docker records an empty entry so `auths` lists the registry.
            let auths = config.entry("auths").or_insert_with(|| json!({}));
            if let Some(a) = auths.as_object_mut() {
                a.insert(key, json!({}));
            }
        } else {
            let auths = config.entry("auths").or_insert_with(|| json!({}));
            let Some(a) = auths.as_object_mut() else {
                return Err(Error::Credentials { path: self.path(), reason: "\"auths\" is not an object".into() });
            };
            a.retain(|k, _| normalize_key(k) != normalize_key(&key));
            a.insert(key, json!({"auth": BASE64.encode(format!("{}:{}", creds.username, creds.secret))}));
        }
        self.write(&config)
    }

    /// Forgets the credentials for `registry`. Returns whether there were any.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let mut config = self.read()?;
        let key = config_key(registry);
        if let Some(helper) = helper_for(&config, registry) {
            let _ = self.run_helper(&helper, "erase", &key);
        }
        let mut removed = false;
        if let Some(Value::Object(a)) = config.get_mut("auths") {
            let before = a.len();
            a.retain(|k, _| normalize_key(k) != normalize_key(&key));
            removed = before != a.len();
        }
        if removed {
            self.write(&config)?;
        }
        Ok(removed)
    }

    fn helper_get(&self, helper: &str, key: &str) -> Result<Option<Credentials>> {
        match self.run_helper(helper, "get", key) {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out).map_err(|e| Error::Credentials {
                    path: PathBuf::from(format!("docker-credential-{helper}")),
                    reason: format!("helper printed invalid JSON: {e}"),
                })?;
                let user = v.get("Username").and_then(Value::as_str).unwrap_or_default();
                let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
                if secret.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Credentials { username: user.into(), secret: secret.into() }))
            }
            Err(Error::Credentials { reason, .. }) if reason.contains("credentials not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn run_helper(&self, helper: &str, action: &str, input: &str) -> Result<String> {
        let program = format!("docker-credential-{helper}");
        let err = |reason: String| Error::Credentials { path: PathBuf::from(&program), reason };
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run the credential helper ({e}); is it installed and on PATH?")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stdout).trim().to_string() + String::from_utf8_lossy(&out.stderr).trim();
            return Err(err(format!("`{program} {action}` failed: {msg}")));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The helper configured for `registry`: `credHelpers[registry]`, else `credsStore`.
fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
    let key = normalize_key(&config_key(registry));
    if let Some(Value::Object(helpers)) = config.get("credHelpers") {
        for (k, v) in helpers {
            if normalize_key(k) == key {
                return v.as_str().map(String::from);
            }
        }
    }
    config.get("credsStore").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from)
}

/// The `auths` key Docker writes for a registry.
pub fn config_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.into(),
        other => other.into(),
    }
}

/// `https://host:port/v1/` and `host:port` name the same registry.
fn normalize_key(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_written_by_us_is_read_back_and_logout_removes_it() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("config.json"), r#"{"psFormat":"table"}"#).expect("seed");
        let cfg = DockerConfig::locate(Some(dir.path()));
        let creds = Credentials { username: "alice".into(), secret: "pa:ss".into() };
        cfg.store("127.0.0.1:5000", &creds).expect("store");
        assert_eq!(cfg.credentials("127.0.0.1:5000").expect("read"), Some(creds));
        let text = std::fs::read_to_string(cfg.path()).expect("config");
        assert!(text.contains("psFormat"), "other settings are kept: {text}");
        assert!(cfg.erase("127.0.0.1:5000").expect("erase"));
        assert_eq!(cfg.credentials("127.0.0.1:5000").expect("read"), None);
    }

    #[test]
    fn docker_written_entries_are_understood() {
        let dir = tempfile::tempdir().expect("tmp");
        let auth = BASE64.encode("bob:secret");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"https://quay.io":{{"identitytoken":"tok"}}}}}}"#),
        )
        .expect("seed");
        let cfg = DockerConfig::locate(Some(dir.path()));
        assert_eq!(cfg.credentials("docker.io").expect("read").map(|c| c.username), Some("bob".into()));
        assert_eq!(cfg.credentials("quay.io").expect("read").map(|c| c.secret), Some("tok".into()));
        assert_eq!(cfg.credentials("ghcr.io").expect("read"), None);
    }

    #[test]
    fn malformed_config_names_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("config.json"), "{not json").expect("seed");
        let err = DockerConfig::locate(Some(dir.path())).credentials("x.io").expect_err("bad").to_string();
        assert!(err.contains("config.json") && err.contains("invalid JSON"), "{err}");
    }
}
