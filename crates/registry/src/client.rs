//! The client: options, the HTTP machinery every request goes through (scheme choice, auth
//! challenges, retries with backoff), and the blocking wrappers.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::auth::{AuthCache, Authorization, Challenge, TokenResponse, parse_challenge};
use crate::docker_config::{Credentials, DockerConfig};
use crate::error::{Error, Result};

/// How the client behaves. `Default` suits the CLI.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (host[:port]) that may be reached over plain HTTP. Loopback ones always may.
    pub insecure_registries: Vec<String>,
    /// Where `config.json` is (default `$DOCKER_CONFIG`, else `~/.docker`).
    pub docker_config_dir: Option<PathBuf>,
    /// Blobs moved at the same time per pull or push.
    pub max_concurrent_transfers: usize,
    /// How often a failed request (connection error, 5xx, 429) is retried.
    pub retries: u32,
    /// The first retry waits this long; each next one twice as long.
    pub retry_delay: Duration,
    /// Upload every blob in PATCH chunks of this many bytes (default: one PUT per blob).
    pub chunk_size: Option<u64>,
    /// Blobs larger than this are uploaded in chunks even without `chunk_size`.
    pub chunked_upload_threshold: u64,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            insecure_registries: Vec::new(),
            docker_config_dir: None,
            max_concurrent_transfers: 4,
            retries: 4,
            retry_delay: Duration::from_millis(200),
            chunk_size: None,
            chunked_upload_threshold: 1 << 30,
        }
    }
}

/// A registry client. Cheap to share by reference across threads.
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) options: ClientOptions,
    docker_config: DockerConfig,
    auth: AuthCache,
    /// Credentials to use instead of `config.json` (for `login` before it is written).
    override_credentials: Mutex<HashMap<String, Credentials>>,
    runtime: OnceLock<std::io::Result<tokio::runtime::Runtime>>,
    /// Blob bytes moved by this client (manifests and configs count too: they are blobs).
    pub(crate) counters: Counters,
}

/// Bytes of blobs downloaded and uploaded, for "moved only manifests and configs" checks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub downloaded: std::sync::atomic::AtomicU64,
    pub uploaded: std::sync::atomic::AtomicU64,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client> {
        // reqwest is built without a default TLS provider; ring is the one we ship.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("builder/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Connection { url: "(client setup)".into(), reason: error_chain(&e) })?;
        Ok(Client {
            http,
            docker_config: DockerConfig::locate(options.docker_config_dir.as_deref()),
            options,
            auth: AuthCache::default(),
            override_credentials: Mutex::new(HashMap::new()),
            runtime: OnceLock::new(),
            counters: Counters::default(),
        })
    }

    /// Blob bytes this client has downloaded and uploaded so far (blobs that existed already or
    /// were mounted across repositories count nothing).
    pub fn transferred(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.counters.downloaded.load(Relaxed), self.counters.uploaded.load(Relaxed))
    }

    /// The docker config this client reads credentials from.
    pub fn docker_config(&self) -> &DockerConfig {
        &self.docker_config
    }

    /// Runs a future to completion on the client's own runtime (the blocking API). Called from
    /// inside another tokio runtime (a server's task), it runs on a helper thread instead of
    /// panicking, blocking only the calling thread.
    pub(crate) fn block_on<F>(&self, f: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self
            .runtime
            .get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("registry-io").enable_all().build());
        let rt = match rt {
            Ok(rt) => rt,
            Err(e) => return Err(Error::Runtime(std::io::Error::new(e.kind(), e.to_string()))),
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(rt.block_on(f));
        }
        std::thread::scope(|s| s.spawn(|| rt.block_on(f)).join())
            .map_err(|_| Error::Runtime(std::io::Error::other("registry I/O thread panicked")))
    }

    /// `http` for loopback and `--insecure-registry` registries, else `https`.
    pub(crate) fn scheme(&self, registry: &str) -> &'static str {
        if oci::Reference::parse(&format!("{registry}/x")).is_ok_and(|r| r.is_loopback_registry())
            || self.options.insecure_registries.iter().any(|r| r == registry)
        {
            "http"
        } else {
            "https"
        }
    }

    /// `scheme://host/v2/`.
    pub(crate) fn base_url(&self, reference: &oci::Reference) -> String {
        format!("{}://{}/v2/", self.scheme(reference.registry()), reference.api_host())
    }

    /// Credentials for a registry: a pending login's, else `config.json`'s.
    fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.override_credentials.lock().ok().and_then(|m| m.get(registry).cloned()) {
            return Ok(Some(c));
        }
        self.docker_config.credentials(registry)
    }

    pub(crate) fn set_override_credentials(&self, registry: &str, creds: Credentials) {
        if let Ok(mut m) = self.override_credentials.lock() {
            m.insert(registry.to_string(), creds);
        }
    }

    /// Sends a request built by `make`, handling auth challenges and retrying connection errors,
    /// 5xx and 429 with exponential backoff. `scope` is the token scope the request needs
    /// (`repository:NAME:pull`). Returns whatever other status the registry answered.
    pub(crate) async fn send(
        &self,
        registry: &str,
        scope: &str,
        make: impl Fn(&reqwest::Client) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let mut auth = self.auth.get(registry, scope);
        let mut authorized_now = false;
        let mut attempt = 0u32;
        loop {
            let mut builder = make(&self.http)?;
            if let Some(a) = &auth {
                builder = builder.header(AUTHORIZATION, a.header());
            }
            let request = builder.build().map_err(|e| Error::Connection { url: "(request)".into(), reason: error_chain(&e) })?;
            let (method, url) = (request.method().to_string(), request.url().clone());
            tracing::debug!(%method, %url, attempt, "registry request");
            let response = match self.http.execute(request).await {
                Ok(r) => r,
                Err(e) => {
                    if attempt < self.options.retries {
                        self.backoff(attempt, &format!("{method} {url}: {}", error_chain(&e))).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(Error::Connection { url: redact(&url), reason: error_chain(&e) });
                }
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !authorized_now {
                let challenge = response.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).map(String::from);
                let Some(challenge) = challenge.as_deref().and_then(parse_challenge) else {
                    return Err(Error::Unauthorized {
                        registry: registry.into(),
                        reason: "HTTP 401 without a usable WWW-Authenticate challenge".into(),
                    });
                };
                let new_auth = self.authorize(registry, scope, challenge).await?;
                self.auth.put(registry, scope, new_auth.clone());
                auth = Some(new_auth);
                authorized_now = true;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let message = registry_message(response).await;
                let reason = match self.credentials(registry)? {
                    Some(c) => {
                        format!("the registry rejected the credentials of user {:?} (HTTP {}): {message}", c.username, status.as_u16())
                    }
                    // Refused outright (a policy, a front that denies this client): its words.
                    None if status == StatusCode::FORBIDDEN => format!("access denied (HTTP 403): {message}"),
                    None => format!("the registry requires a login (HTTP {}); run `builder login {registry}`", status.as_u16()),
                };
                return Err(Error::Unauthorized { registry: registry.into(), reason });
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) && attempt < self.options.retries {
                // A rate limit may say how long to wait (in seconds); honour it, within reason.
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs.min(60)));
                match retry_after {
                    Some(wait) => {
                        tracing::info!("{method} {url}: HTTP {}; retrying in {wait:?} as the registry asks", status.as_u16());
                        tokio::time::sleep(wait).await;
                    }
                    None => self.backoff(attempt, &format!("{method} {url}: HTTP {}", status.as_u16())).await,
                }
                attempt += 1;
                continue;
            }
            return Ok(response);
        }
    }

    pub(crate) async fn backoff(&self, attempt: u32, why: &str) {
        let delay = self.options.retry_delay * 2u32.saturating_pow(attempt.min(6));
        tracing::info!("retrying in {delay:?} after {why}");
        tokio::time::sleep(delay).await;
    }

    /// Answers a challenge: basic credentials, or a bearer token from the realm.
    async fn authorize(&self, registry: &str, scope: &str, challenge: Challenge) -> Result<Authorization> {
        let creds = self.credentials(registry)?;
        let basic = creds.as_ref().map(|c| base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.secret)));
        match challenge {
            Challenge::Basic => match basic {
                Some(b) => Ok(Authorization::Basic(b)),
                None => Err(Error::Unauthorized {
                    registry: registry.into(),
                    reason: format!("the registry requires a login (HTTP 401); run `builder login {registry}`"),
                }),
            },
            Challenge::Bearer { realm, service, scope: _ } => {
                let mut url = reqwest::Url::parse(&realm).map_err(|e| Error::Unauthorized {
                    registry: registry.into(),
                    reason: format!("token realm {realm:?} is not a URL: {e}"),
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    for s in scope.split(' ').filter(|s| !s.is_empty()) {
                        q.append_pair("scope", s);
                    }
                }
                let identity_token = creds.as_ref().filter(|c| c.username == "<token>").map(|c| c.secret.clone());
                let req = match identity_token {
                    // An identity token (from `docker login` to some registries) is an OAuth2
                    // refresh token: exchanged with a form POST, as docker does.
                    Some(refresh) => {
                        let mut form = reqwest::Url::parse("http://form/")
                            .map_err(|e| Error::Unauthorized { registry: registry.into(), reason: e.to_string() })?;
                        {
                            let mut f = form.query_pairs_mut();
                            f.append_pair("grant_type", "refresh_token")
                                .append_pair("refresh_token", &refresh)
                                .append_pair("client_id", "builder");
                            if let Some(s) = &service {
                                f.append_pair("service", s);
                            }
                            if !scope.is_empty() {
                                f.append_pair("scope", scope);
                            }
                        }
                        let mut realm_url = url.clone();
                        realm_url.set_query(None);
                        self.http
                            .post(realm_url)
                            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body(form.query().unwrap_or("").to_string())
                    }
                    None => {
                        let mut req = self.http.get(url.clone());
                        if let Some(b) = &basic {
                            req = req.header(AUTHORIZATION, format!("Basic {b}"));
                        }
                        req
                    }
                };
                let resp = req.send().await.map_err(|e| Error::Connection { url: realm.clone(), reason: error_chain(&e) })?;
                if !resp.status().is_success() {
                    let status = resp.status().as_u16();
                    let message = registry_message(resp).await;
                    let who = creds.as_ref().map_or("anonymous".to_string(), |c| format!("user {:?}", c.username));
                    return Err(Error::Unauthorized {
                        registry: registry.into(),
                        reason: format!("token request to {realm} as {who} failed with HTTP {status}: {message}"),
                    });
                }
                let token: TokenResponse = resp.json().await.map_err(|e| Error::Unauthorized {
                    registry: registry.into(),
                    reason: format!("token response from {realm} is not valid JSON: {e}"),
                })?;
                let ttl = Duration::from_secs(token.expires_in.unwrap_or(60).max(10));
                let Some(token) = token.token.or(token.access_token) else {
                    return Err(Error::Unauthorized { registry: registry.into(), reason: format!("{realm} returned no token") });
                };
                Ok(Authorization::Bearer { token, expires: std::time::Instant::now() + ttl })
            }
        }
    }

    /// Checks that `creds` work for `registry` (GET /v2/ with them), without saving anything.
    pub async fn check_login_async(&self, registry: &str, creds: &Credentials) -> Result<()> {
        self.set_override_credentials(registry, creds.clone());
        let reference = oci::Reference::parse(&format!("{registry}/login-check"))?;
        let url = self.base_url(&reference);
        let resp = self.send(registry, "", |http| Ok(http.get(&url))).await?;
        if !resp.status().is_success() {
            return Err(status_error("GET", &url, resp).await);
        }
        Ok(())
    }

    /// Verifies `creds` against `registry`, then saves them in `config.json` (or its helper).
    pub fn login(&self, registry: &str, creds: &Credentials) -> Result<()> {
        self.block_on(self.check_login_async(registry, creds))??;
        self.docker_config.store(registry, creds)
    }

    /// Removes saved credentials for `registry`. Returns whether there were any.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        self.docker_config.erase(registry)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Dropping a runtime inside async code panics; let it wind down in the background.
        if let Some(Ok(rt)) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The message of a registry error body (`{"errors":[{"code","message"}]}`), or its text.
pub(crate) async fn registry_message(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(body) = serde_json::from_str::<Body>(&text) {
        let parts: Vec<String> = body
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (c, m) => c.clone().or(m.clone()).unwrap_or_default(),
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = text.trim();
    if text.is_empty() { "(no details)".into() } else { text.chars().take(300).collect() }
}

/// An error for an unexpected status.
pub(crate) async fn status_error(method: &str, url: &str, response: Response) -> Error {
    let status = response.status().as_u16();
    Error::Status { method: method.into(), url: url.into(), status, message: registry_message(response).await }
}

/// An error and its causes on one line (reqwest hides the useful part in `source()`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// A URL without its query (upload URLs carry state tokens).
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_insecure_registries() {
        let c =
            Client::new(ClientOptions { insecure_registries: vec!["build-cache.lan:5000".into()], ..Default::default() }).expect("client");
        for http in ["localhost:5000", "127.0.0.1:5000", "127.3.4.5", "[::1]:5000", "build-cache.lan:5000"] {
            assert_eq!(c.scheme(http), "http", "{http}");
        }
        for https in ["docker.io", "quay.io", "build-cache.lan", "10.0.0.1:5000", "localhost.example.com"] {
            assert_eq!(c.scheme(https), "https", "{https}");
        }
    }
}
