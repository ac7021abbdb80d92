//! The client against registries that misbehave: each test states what a user would see.

mod fake;

use std::time::Duration;

use fake::{FakeServer, Reply, TestImage};
use oci::{Reference, Store};
use registry::{Client, ClientOptions, Error, NoProgress};

fn client(retries: u32) -> Client {
    let config_dir = tempfile::tempdir().expect("tmp").keep();
    Client::new(ClientOptions {
        retries,
        retry_delay: Duration::from_millis(10),
        docker_config_dir: Some(config_dir),
        ..Default::default()
    })
    .expect("client")
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("store");
    (dir, store)
}

fn reference(server: &FakeServer, repo_tag: &str) -> Reference {
    Reference::parse(&format!("{}/{repo_tag}", server.addr)).expect("reference")
}

fn blob_count(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256")).expect("blobs").count()
}

#[test]
fn honest_registry_is_pulled_and_tagged() {
    let image = TestImage::new();
    let server = {
        let image = TestImage { manifest: image.manifest.clone(), config: image.config.clone(), layer: image.layer.clone() };
        FakeServer::start(move |req, _| image.serve(req, "app").unwrap_or(Reply::status(404)))
    };
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    let pulled = client(0).pull(&r, None, &store, &NoProgress).expect("pull");
    assert_eq!(pulled.manifest_digest, image.manifest_digest());
    assert_eq!(store.image(&r).expect("tagged").config_digest, image.config_digest());
    let accept = server
        .seen
        .lock()
        .expect("lock")
        .iter()
        .find(|s| s.path.contains("/manifests/"))
        .and_then(|s| s.header("accept").map(String::from));
    let accept = accept.expect("Accept sent");
    for t in ["oci.image.index.v1", "manifest.list.v2", "oci.image.manifest.v1", "distribution.manifest.v2"] {
        assert!(accept.contains(t), "Accept lacks {t}: {accept}");
    }
}

#[test]
fn blob_that_does_not_match_its_digest_is_rejected_and_nothing_is_stored() {
    let image = TestImage::new();
    let layer_path = format!("/v2/app/blobs/{}", image.layer_digest());
    let server = FakeServer::start(move |req, _| {
        if req.path == layer_path {
            // Same size, different bytes.
            let mut lie = image.layer.clone();
            lie[100] ^= 0xff;
            return Reply::ok("application/octet-stream", lie);
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    let err = client(0).pull(&r, None, &store, &NoProgress).expect_err("must be rejected");
    assert!(matches!(err, Error::BadBlob { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("does not match its digest"), "{msg}");
    assert!(store.resolve(&r).expect("resolve").is_none(), "no tag for a rejected image");
    let layer = TestImage::new().layer_digest();
    assert!(!store.has_blob(&layer));
    assert_eq!(std::fs::read_dir(store.tmp_dir()).expect("tmp").count(), 0, "no temp file left");
}

#[test]
fn registry_failing_twice_with_500_then_answering_is_pulled() {
    let image = TestImage::new();
    let server = FakeServer::start(move |req, n| {
        if req.path.contains("/manifests/") && n < 2 {
            return Reply::status(500);
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    client(4).pull(&r, None, &store, &NoProgress).expect("pull succeeds after retries");
    assert_eq!(server.count("GET", "/v2/app/manifests/"), 3);
    assert!(store.image(&r).is_ok());
}

#[test]
fn registry_that_keeps_failing_gives_up_with_the_status() {
    let server = FakeServer::start(|req, _| if req.path == "/v2/" { Reply::status(200) } else { Reply::status(503) });
    let (_d, store) = store();
    let err = client(2).pull(&reference(&server, "app:1"), None, &store, &NoProgress).expect_err("fails");
    let msg = err.to_string();
    assert!(msg.contains("HTTP 503") && msg.contains("/v2/app/manifests/1"), "{msg}");
    assert_eq!(server.count("GET", "/v2/app/manifests/"), 3, "1 try + 2 retries");
}

#[test]
fn malformed_manifest_gives_a_clear_error() {
    let server = FakeServer::start(|req, _| {
        if req.path.contains("/manifests/") {
            return Reply::ok("application/vnd.oci.image.manifest.v1+json", b"{\"schemaVersion\": 2, \"layers\": [ oops".to_vec());
        }
        Reply::status(404)
    });
    let (_d, store) = store();
    let err = client(0).pull(&reference(&server, "app:1"), None, &store, &NoProgress).expect_err("fails");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("bad manifest for {}/app:1: not valid JSON", server.addr)), "{msg}");
    assert_eq!(blob_count(&store), 0);
}

#[test]
fn manifest_whose_digest_differs_from_the_requested_one_is_refused() {
    let image = TestImage::new();
    let server = FakeServer::start(move |req, _| image.serve(req, "app").unwrap_or(Reply::status(404)));
    let (_d, store) = store();
    let wrong = oci::Digest::sha256_of(b"not this");
    let r = Reference::parse(&format!("{}/app@{wrong}", server.addr)).expect("ref");
    let err = client(0).pull(&r, None, &store, &NoProgress).expect_err("fails");
    assert!(err.to_string().contains(&format!("not the requested {wrong}")), "{err}");
}

#[test]
fn interrupted_pull_can_be_rerun_and_completes() {
    let image = TestImage::new();
    let layer_path = format!("/v2/app/blobs/{}", image.layer_digest());
    let server = FakeServer::start(move |req, n| {
        if req.path == layer_path && n == 0 {
            return Reply::Truncated { body: image.layer.clone(), send: image.layer.len() / 2 };
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    // Without retries the first run fails on the broken connection…
    let err = client(0).pull(&r, None, &store, &NoProgress).expect_err("connection closed mid-blob");
    assert!(err.to_string().contains("broke off"), "{err}");
    assert!(store.resolve(&r).expect("resolve").is_none());
    // …and running it again completes, with the right content.
    let pulled = client(0).pull(&r, None, &store, &NoProgress).expect("re-run completes");
    assert_eq!(pulled.manifest_digest, TestImage::new().manifest_digest());
    assert!(store.has_blob(&TestImage::new().layer_digest()));
}

#[test]
fn broken_download_resumes_with_a_range_request() {
    let image = TestImage::new();
    let half = image.layer.len() / 2;
    let layer_path = format!("/v2/app/blobs/{}", image.layer_digest());
    let server = FakeServer::start(move |req, n| {
        if req.path == layer_path && n == 0 {
            return Reply::Truncated { body: image.layer.clone(), send: half };
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    client(3).pull(&r, None, &store, &NoProgress).expect("pull resumes");
    let ranges: Vec<String> = server.seen.lock().expect("lock").iter().filter_map(|s| s.header("range").map(String::from)).collect();
    assert_eq!(ranges, vec![format!("bytes={half}-")]);
}

#[test]
fn bearer_token_is_fetched_with_the_repository_scope_and_used() {
    let image = TestImage::new();
    let addr_cell = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let addr2 = std::sync::Arc::clone(&addr_cell);
    let server = FakeServer::start(move |req, _| {
        if req.path.starts_with("/token?") {
            return Reply::ok("application/json", br#"{"token":"t0k3n","expires_in":300}"#.to_vec());
        }
        if req.header("authorization") != Some("Bearer t0k3n") {
            let realm = format!("http://{}/token", addr2.get().map(String::as_str).unwrap_or(""));
            return Reply::status(401)
                .with_header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}",service="fake",scope="repository:app:pull""#));
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    addr_cell.set(server.addr.clone()).expect("set");
    let (_d, store) = store();
    client(0).pull(&reference(&server, "app:1"), None, &store, &NoProgress).expect("pull with token");
    let seen = server.seen.lock().expect("lock");
    let token_requests: Vec<&str> = seen.iter().filter(|s| s.path.starts_with("/token?")).map(|s| s.path.as_str()).collect();
    assert_eq!(token_requests.len(), 1, "the token is cached: {token_requests:?}");
    assert!(
        token_requests[0].contains("service=fake") && token_requests[0].contains("scope=repository%3Aapp%3Apull"),
        "{}",
        token_requests[0]
    );
}

#[test]
fn bad_credentials_give_a_clear_401_error() {
    // Accepts nobody: every request, with or without credentials, gets a basic challenge.
    let server = FakeServer::start(|_, _| Reply::status(401).with_header("WWW-Authenticate", r#"Basic realm="fake""#));
    let c = client(0);
    let creds = registry::Credentials { username: "alice".into(), secret: "wrong".into() };
    let err = c.login(&server.addr, &creds).expect_err("rejected");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("authentication to {} failed", server.addr)) && msg.contains("\"alice\"") && msg.contains("HTTP 401"),
        "{msg}"
    );
    assert!(!c.docker_config().path().exists(), "nothing saved for a failed login");
}

#[test]
fn redirected_blob_download_does_not_carry_credentials_to_another_host() {
    let image = TestImage::new();
    let layer = image.layer.clone();
    let cdn = FakeServer::start(move |_, _| Reply::ok("application/octet-stream", layer.clone()));
    let cdn_addr = cdn.addr.clone();
    let layer_path = format!("/v2/app/blobs/{}", image.layer_digest());
    let server = FakeServer::start(move |req, _| {
        if req.header("authorization") != Some("Basic YWxpY2U6czNjcmV0") {
            return Reply::status(401).with_header("WWW-Authenticate", r#"Basic realm="fake""#);
        }
        if req.path == layer_path {
            return Reply::status(307).with_header("Location", &format!("http://{cdn_addr}/storage/layer"));
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let dir = tempfile::tempdir().expect("tmp");
    registry::DockerConfig::locate(Some(dir.path()))
        .store(&server.addr, &registry::Credentials { username: "alice".into(), secret: "s3cret".into() })
        .expect("save creds");
    let c =
        Client::new(ClientOptions { retries: 0, docker_config_dir: Some(dir.path().to_path_buf()), ..Default::default() }).expect("client");
    let (_d, store) = store();
    c.pull(&reference(&server, "app:1"), None, &store, &NoProgress).expect("pull through redirect");
    let cdn_seen = cdn.seen.lock().expect("lock");
    assert_eq!(cdn_seen.len(), 1);
    assert_eq!(cdn_seen[0].header("authorization"), None, "credentials leaked to {}", cdn.addr);
}

#[test]
fn platform_is_chosen_from_a_multi_platform_index() {
    let image = TestImage::new();
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let host = oci::Platform::host();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{other}","size":10,"platform":{{"architecture":"s390x","os":"linux"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{}","os":"linux"}}}}]}}"#,
        image.manifest_digest(),
        image.manifest.len(),
        host.architecture
    )
    .into_bytes();
    let index_digest = oci::Digest::sha256_of(&index);
    let by_digest = format!("/v2/app/manifests/{}", image.manifest_digest());
    let server = FakeServer::start(move |req, _| {
        if req.path == "/v2/app/manifests/multi" {
            return Reply::ok("application/vnd.oci.image.index.v1+json", index.clone());
        }
        if req.path.contains("/manifests/") && req.path != by_digest {
            return Reply::status(404);
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let (_d, store) = store();
    let r = reference(&server, "app:multi");
    let pulled = client(0).pull(&r, None, &store, &NoProgress).expect("host platform is in the index");
    assert_eq!(pulled.manifest_digest, TestImage::new().manifest_digest());
    assert_eq!(pulled.index_digest, Some(index_digest.clone()));
    assert_eq!(store.image(&r).expect("tagged").repo_digest, Some(index_digest));

    let err = client(0).pull(&r, Some("linux/riscv64"), &store, &NoProgress).expect_err("not in the index");
    let msg = err.to_string();
    assert!(msg.contains("no manifest for platform linux/riscv64") && msg.contains("linux/s390x"), "{msg}");
}

#[test]
fn blocking_pull_works_when_called_from_async_code() {
    let image = TestImage::new();
    let server = FakeServer::start(move |req, _| image.serve(req, "app").unwrap_or(Reply::status(404)));
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    let outer = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let pulled = outer.block_on(async {
        // A server's request handler calling the blocking API, then dropping the client.
        let c = client(0);
        c.pull(&r, None, &store, &NoProgress)
    });
    assert_eq!(pulled.expect("pull").manifest_digest, TestImage::new().manifest_digest());
}

#[test]
fn identity_token_is_exchanged_with_an_oauth2_refresh_grant() {
    let image = TestImage::new();
    let addr_cell = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let addr2 = std::sync::Arc::clone(&addr_cell);
    let server = FakeServer::start(move |req, _| {
        if req.path == "/token" && req.method == "POST" {
            let form = String::from_utf8_lossy(&req.body);
            if form.contains("grant_type=refresh_token") && form.contains("refresh_token=r3fr3sh") {
                return Reply::ok("application/json", br#"{"access_token":"acc3ss","expires_in":300}"#.to_vec());
            }
            return Reply::status(401);
        }
        if req.header("authorization") != Some("Bearer acc3ss") {
            let realm = format!("http://{}/token", addr2.get().map(String::as_str).unwrap_or(""));
            return Reply::status(401).with_header("WWW-Authenticate", &format!(r#"Bearer realm="{realm}",service="fake""#));
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    addr_cell.set(server.addr.clone()).expect("set");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("config.json"), format!(r#"{{"auths":{{"{}":{{"identitytoken":"r3fr3sh"}}}}}}"#, server.addr))
        .expect("config");
    let c =
        Client::new(ClientOptions { retries: 0, docker_config_dir: Some(dir.path().to_path_buf()), ..Default::default() }).expect("client");
    let (_d, store) = store();
    c.pull(&reference(&server, "app:1"), None, &store, &NoProgress).expect("pull with an identity token");
    assert_eq!(server.count("POST", "/token"), 1);
}

#[test]
fn rate_limited_request_is_retried_after_the_time_the_registry_asks() {
    let image = TestImage::new();
    let server = FakeServer::start(move |req, n| {
        if req.path.contains("/manifests/") && n == 0 {
            return Reply::status(429).with_header("Retry-After", "1");
        }
        image.serve(req, "app").unwrap_or(Reply::status(404))
    });
    let (_d, store) = store();
    let r = reference(&server, "app:1");
    client(2).pull(&r, None, &store, &NoProgress).expect("pull after the rate limit");
    assert_eq!(server.count("GET", "/v2/app/manifests/"), 2);
}
