//! Commands of the serve group: `builder serve`, the gRPC build service.
//!
//! The server runs the same engine a local build runs (`api::local::LocalEngine` on `--root`);
//! clients reach it with `builder --addr tcp://HOST:PORT …` or `$BUILDER_HOST`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the build service: builds, images, push, prune and du over gRPC.
    Serve(ServeArgs),
    /// Show the version of builder, and of the server with --addr (like `docker version`).
    Version,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: tcp://ADDR:PORT or unix:///PATH.
    #[arg(long, value_name = "ADDR", default_value = "tcp://127.0.0.1:8765")]
    listen: String,
    /// Server certificate (PEM); turns TLS on. Needs --tls-key.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key of the server certificate (PEM).
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept only clients with a certificate signed by this CA (mutual TLS).
    #[arg(long = "tls-client-ca", value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Require `authorization: Bearer <token>` on every call; the token is this file's content.
    #[arg(long = "token-file", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Builds that may run at once; more are refused with a "server busy" error.
    #[arg(long = "max-concurrent-builds", value_name = "N", default_value_t = 4)]
    max_concurrent_builds: usize,
    /// Let builds use this entitlement when they ask for it with `--allow`: security.insecure
    /// (`RUN --security=insecure`) or network.host. May be repeated.
    #[arg(long = "allow-insecure-entitlement", value_name = "ENTITLEMENT")]
    entitlements: Vec<String>,
    /// Cap on the build cache: SIZE (e.g. 20GB) or a share of the state root's filesystem
    /// (e.g. 10%); least recently used entries go first, checked after every build. 0: no cap.
    #[arg(long = "cache-max-size", value_name = "SIZE|N%", default_value = "10%")]
    cache_max_size: String,
    /// The shared cache every build imports when it names no `--cache-from` (a farm sets this
    /// once: `--cache-from REGISTRY/cache:main`). May be repeated.
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Where every build exports its cache when it names no `--cache-to`
    /// (`type=registry,ref=REGISTRY/cache:main,mode=max`). May be repeated.
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Seconds running builds get to finish after SIGTERM before they are cancelled.
    #[arg(long = "shutdown-grace", value_name = "SECS", default_value_t = 30)]
    shutdown_grace: u64,
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        match self {
            Command::Serve(a) => serve(globals, a),
            Command::Version => version(globals),
        }
    }
}

/// `--cache-max-size`: bytes, or a percentage of the filesystem holding `root`; `None` for 0.
fn cache_cap(value: &str, root: &std::path::Path) -> anyhow::Result<Option<u64>> {
    let v = value.trim();
    let bytes = match v.strip_suffix('%') {
        Some(p) => {
            let share: f64 = p.trim().parse().ok().filter(|s: &f64| (0.0..=100.0).contains(s)).ok_or_else(|| anyhow::anyhow!("invalid --cache-max-size {value:?}: a percentage is 0% to 100%"))?;
            let fs = nix::sys::statvfs::statvfs(root).with_context(|| format!("--cache-max-size {value}: reading the size of the filesystem of {}", root.display()))?;
            (fs.blocks() as f64 * fs.fragment_size() as f64 * share / 100.0) as u64
        }
        None => units::parse_bytes(v).map_err(|e| anyhow::anyhow!("invalid --cache-max-size {value:?}: {}", e.reason))?,
    };
    Ok((bytes > 0).then_some(bytes))
}

fn version(globals: &Globals) -> anyhow::Result<ExitCode> {
    println!("Client:");
    println!(" Version:\t{}", env!("CARGO_PKG_VERSION"));
    println!(" OS/Arch:\t{}", dockerfile::lower::build_platform());
    let Some(addr) = &globals.addr else { return Ok(ExitCode::SUCCESS) };
    let info = api::client::Remote::connect(&api::client::ClientConfig::from_env(addr)?)?.info()?;
    println!();
    println!("Server: {addr}");
    println!(" Version:\t{}", info.version);
    let platforms: Vec<&str> = info.workers.iter().flat_map(|w| w.platforms.iter().map(String::as_str)).collect();
    println!(" Platforms:\t{}", platforms.join(", "));
    println!(" Builds:\t{} running, {} at most", info.running_builds, info.max_concurrent_builds);
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn serve(globals: &Globals, a: ServeArgs) -> anyhow::Result<ExitCode> {
    // Every mount of every build lives in a private mount namespace, so a killed server leaves
    // none behind. This must happen before any thread starts.
    if let Err(e) = solver::view::enter_private_mount_namespace() {
        tracing::warn!("{e}");
    }
    let listen = api::Address::parse(&a.listen)?;
    if a.max_concurrent_builds == 0 {
        bail!("--max-concurrent-builds must be at least 1");
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(api::server::ServerTls {
            cert_pem: read(c, "--tls-cert")?,
            key_pem: read(k, "--tls-key")?,
            client_ca_pem: a.tls_client_ca.as_deref().map(|p| read(p, "--tls-client-ca")).transpose()?,
        }),
        _ => None,
    };
    let token = match &a.token_file {
        Some(f) => {
            let t = String::from_utf8(read(f, "--token-file")?).with_context(|| format!("--token-file {}: not UTF-8 text", f.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("--token-file {} is empty", f.display());
            }
            Some(t)
        }
        None => None,
    };
    let root = globals.root();
    let mut engine = api::local::LocalEngine::open(&root, globals.insecure_registries.clone()).map_err(|e| anyhow::anyhow!("opening {}: {e}", root.display()))?;
    engine.set_cache_max_size(cache_cap(&a.cache_max_size, &root)?);
    let cache_from = a.cache_from.iter().map(|c| remote_cache::CacheFrom::parse(c)).collect::<Result<_, _>>()?;
    let cache_to = a.cache_to.iter().map(|c| remote_cache::CacheTo::parse(c)).collect::<Result<_, _>>()?;
    engine.set_cache_defaults(cache_from, cache_to);
    let opts = api::server::ServeOptions {
        listen,
        state_root: root,
        tls,
        token,
        max_concurrent_builds: a.max_concurrent_builds,
        shutdown_grace: Duration::from_secs(a.shutdown_grace),
        entitlements: a.entitlements.iter().flat_map(|e| e.split(',')).map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect(),
    };
    if let Some(e) = opts.entitlements.iter().find(|e| !matches!(e.as_str(), "security.insecure" | "network.host")) {
        bail!("invalid --allow-insecure-entitlement {e:?}: use security.insecure or network.host");
    }
    api::server::run_until_signal(opts, Arc::new(engine), |bound| {
        // Scripts (and the tests) read the bound address from this line, e.g. with port 0.
        println!("builder serve: listening on {bound}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })?;
    eprintln!("builder serve: stopped");
    Ok(ExitCode::SUCCESS)
}
