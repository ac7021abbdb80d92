//! Commands of the build group: `build`, `prune`, `du`.

mod progress;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// Remove build cache.
    Prune(PruneArgs),
    /// Show disk usage of the build cache.
    Du(DuArgs),
    /// Internal: runs one RUN step's sandbox bundle from a fresh single-threaded process.
    #[command(name = "__build-exec", hide = true)]
    BuildExec { bundle: PathBuf },
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`) for the image; may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Set a build-time variable (`K=V`, or `K` to take it from the environment).
    #[arg(long = "build-arg", value_name = "K[=V]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache.
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Look up base images in the registry again even if they are in the local store.
    #[arg(long)]
    pull: bool,
    /// Target platform (`os/arch[/variant]`).
    #[arg(long)]
    platform: Option<String>,
    /// Set a label on the image (`K=V`).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    secrets: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh` and `git@` sources: `default` ($SSH_AUTH_SOCK),
    /// `ID=SOCKET`, or `ID=KEY[,KEY…]` (private key files, served by an ssh-agent of the build).
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY[,KEY…]]")]
    ssh: Vec<String>,
    /// Grant an entitlement: `security.insecure` (lets `RUN --security=insecure` run) or
    /// `network.host` (accepted; `RUN --network=host` is the default here).
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    allow: Vec<String>,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Write the build's result metadata (image digest, why steps missed the cache) as JSON.
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Progress output: auto, tty or plain.
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Where the result goes: type=image|oci|docker|local|tar[,dest=…][,name=…][,push=true]; a bare
    /// path means type=local,dest=PATH.
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Push the tagged image to its registry after building.
    #[arg(long)]
    push: bool,
    /// Layer compression: gzip (default for push and archives), zstd or uncompressed
    /// (default in the local store).
    #[arg(long, value_name = "ALGO")]
    compression: Option<String>,
    /// The network of RUN steps that do not name one: `default` or `host` (the host's network, as
    /// buildkitd without CNI) or `none` (loopback only).
    #[arg(long, value_name = "MODE")]
    network: Option<String>,
    /// Add a line to /etc/hosts of RUN steps (`NAME:IP`); may be repeated.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_hosts: Vec<String>,
    /// Import a shared build cache: `type=registry,ref=REF`, `REF` (a cache ref, or an image
    /// pushed with an inline cache), or `type=local,src=DIR`; may be repeated.
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Export the build cache: `type=registry,ref=REF`, `type=local,dest=DIR` or `type=inline`,
    /// with `mode=min|max`, `compression=gzip|zstd|uncompressed`, `ignore-error=true|false`.
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// How many steps may run at once (default: twice the CPUs, at least 4).
    #[arg(long = "max-parallelism", value_name = "N")]
    max_parallelism: Option<usize>,
    /// The build context: a directory; a git repository (`https://host/repo.git#ref:subdir`,
    /// `git://…`, `git@host:…`); an http(s) URL of a tar archive (the context) or of a Dockerfile
    /// alone; or `-` for stdin: a tar archive (plain, gzip, bzip2, xz or zstd) that is the whole
    /// context, or a Dockerfile alone and no context.
    #[arg(value_name = "CONTEXT")]
    context: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all build cache, not only entries unused for 48 hours.
    #[arg(short = 'a', long)]
    all: bool,
    /// Keep at most this much cache (e.g. 10GB, 512MB), removing the least recently used.
    #[arg(long = "keep-storage", value_name = "SIZE")]
    keep_storage: Option<String>,
    /// Do not ask for confirmation (accepted for Docker compatibility; prune never asks).
    #[arg(short = 'f', long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct DuArgs {
    /// List every cache entry.
    #[arg(short = 'v', long)]
    verbose: bool,
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        match self {
            Command::Build(a) => build(globals, *a),
            Command::Prune(a) => prune(globals, a),
            Command::Du(a) => du(globals, a),
            Command::BuildExec { bundle } => build_exec(&bundle),
        }
    }
}

use crate::cmd::human_size as human;

fn prune(globals: &Globals, a: PruneArgs) -> anyhow::Result<ExitCode> {
    let _ = a.force;
    let keep = a.keep_storage.as_deref().map(|s| units::parse_bytes(s).map_err(|e| anyhow!("invalid --keep-storage {s:?}: {}", e.reason))).transpose()?;
    if let Some(addr) = &globals.addr {
        let r = api::client::Remote::connect(&api::client::ClientConfig::from_env(addr)?)?.prune(a.all, keep)?;
        let count = |k: &str| r.details.get(k).cloned().unwrap_or_else(|| "0".into());
        println!("Deleted build cache objects: {} entries, {} layers, {} image blobs", r.records_removed, count("layers"), count("blobs"));
        println!("Total reclaimed space: {}", human(r.bytes_freed));
        return Ok(ExitCode::SUCCESS);
    }
    let engine = api::local::LocalEngine::open(&globals.root(), globals.insecure_registries.clone())?;
    let r = api::Engine::prune(&engine, a.all, keep)?;
    let count = |k: &str| r.details.get(k).cloned().unwrap_or_else(|| "0".into());
    println!("Deleted build cache objects: {} entries, {} layers, {} image blobs", r.records_removed, count("layers"), count("blobs"));
    println!("Total reclaimed space: {}", human(r.bytes_freed));
    Ok(ExitCode::SUCCESS)
}

fn du(globals: &Globals, a: DuArgs) -> anyhow::Result<ExitCode> {
    if let Some(addr) = &globals.addr {
        return du_remote(addr, a);
    }
    let index = solver::CacheIndex::open(&globals.root())?;
    let usage = index.usage()?;
    if a.verbose {
        println!("{:<14} {:>10} {:<20} DESCRIPTION", "ID", "SIZE", "LAST USED");
        for e in usage.entries.iter().rev() {
            let when: chrono::DateTime<chrono::Utc> = e.last_used.into();
            println!("{:<14} {:>10} {:<20} {}", &e.key[..12.min(e.key.len())], human(e.size), when.format("%Y-%m-%d %H:%M:%S"), e.description);
        }
        println!();
    }
    println!("Cache entries:\t{}", usage.records);
    println!("Layers:\t\t{}", human(usage.layer_bytes));
    println!("Cache mounts:\t{}", human(usage.mount_bytes));
    println!("Total:\t\t{}", human(usage.layer_bytes + usage.mount_bytes));
    Ok(ExitCode::SUCCESS)
}

/// `du` of a `builder serve`: the same report, from the server's cache.
fn du_remote(addr: &str, a: DuArgs) -> anyhow::Result<ExitCode> {
    let usage = api::client::Remote::connect(&api::client::ClientConfig::from_env(addr)?)?.disk_usage()?;
    if a.verbose {
        println!("{:<14} {:>10} {:<20} DESCRIPTION", "ID", "SIZE", "LAST USED");
        for e in usage.entries.iter().rev() {
            let when = chrono::DateTime::from_timestamp(e.last_used_unix, 0).unwrap_or_default();
            println!("{:<14} {:>10} {:<20} {}", &e.id[..12.min(e.id.len())], human(e.size), when.format("%Y-%m-%d %H:%M:%S"), e.description);
        }
        println!();
    }
    println!("Cache entries:\t{}", usage.entries.len());
    println!("Layers:\t\t{}", human(usage.layer_bytes));
    println!("Cache mounts:\t{}", human(usage.mount_bytes));
    println!("Total:\t\t{}", human(usage.layer_bytes + usage.mount_bytes));
    Ok(ExitCode::SUCCESS)
}

fn parse_secrets(specs: &[String]) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for s in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", _)) => {}
                _ => bail!("invalid --secret {s:?}: use id=ID,src=FILE or id=ID,env=VAR"),
            }
        }
        let id = id.or_else(|| env.clone()).or_else(|| src.as_ref().and_then(|p| Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned())));
        let id = id.ok_or_else(|| anyhow!("--secret {s:?} has no id"))?;
        let bytes = match (src, env) {
            (Some(p), _) => std::fs::read(&p).with_context(|| format!("reading secret {id} from {p}"))?,
            (None, Some(v)) => std::env::var(&v).with_context(|| format!("secret {id}: environment variable {v} is not set"))?.into_bytes(),
            (None, None) => std::env::var(&id).with_context(|| format!("secret {id}: give src=FILE or env=VAR"))?.into_bytes(),
        };
        out.insert(id, bytes);
    }
    Ok(out)
}

/// `--ssh` values. A remote build forwards these agents over its session (`api::ssh_forward`).
fn parse_ssh(specs: &[String], remote: bool) -> anyhow::Result<HashMap<String, solver::ssh::SshSource>> {
    let _ = remote;
    let sock = std::env::var("SSH_AUTH_SOCK").ok();
    let mut out = HashMap::new();
    for s in specs {
        let (id, source) = solver::ssh::parse_ssh_flag(s, sock.as_deref()).map_err(|e| anyhow!(e))?;
        out.insert(id, source);
    }
    Ok(out)
}

/// `--allow` values, checked.
fn parse_allow(values: &[String], remote: bool) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        match v {
            "security.insecure" | "network.host" => out.push(v.to_string()),
            other => bail!("invalid --allow {other:?}: use security.insecure or network.host"),
        }
    }
    // A server checks them against its own --allow-insecure-entitlement grants.
    let _ = remote;
    Ok(out)
}

fn build(globals: &Globals, a: BuildArgs) -> anyhow::Result<ExitCode> {
    // Every mount of the build lives in a private mount namespace: a killed build leaves none.
    // This must happen before any thread starts.
    if globals.addr.is_none()
        && let Err(e) = solver::view::enter_private_mount_namespace() {
            tracing::warn!("{e}");
        }

    // The context and the Dockerfile.
    let stdin_context = a.context == "-";
    let BuildContext { dir: context_dir, dockerfile: stdin_dockerfile, fetched } = prepare_context(&a.context)?;
    let (dockerfile, dockerfile_name, dockerfile_path) = match (&a.file, stdin_dockerfile) {
        (Some(f), None) if f == "-" => (read_stdin()?, "Dockerfile".to_string(), context_dir.join("Dockerfile")),
        (_, Some(bytes)) => (bytes, "Dockerfile".to_string(), context_dir.join("Dockerfile")),
        // In a context from stdin or a URL, -f names a file inside it.
        (Some(f), None) if fetched.is_some() => {
            let p = context_dir.join(f.trim_start_matches('/'));
            let from = if stdin_context { "the context archive on stdin" } else { a.context.as_str() };
            let bytes = std::fs::read(&p).with_context(|| format!("reading Dockerfile {f} from {from}"))?;
            (bytes, p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Dockerfile".into()), p)
        }
        (Some(f), None) => {
            let p = PathBuf::from(f);
            let bytes = std::fs::read(&p).with_context(|| format!("reading Dockerfile {f}"))?;
            (bytes, p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Dockerfile".into()), p)
        }
        (None, None) => {
            let p = context_dir.join("Dockerfile");
            let what = if stdin_context {
                "the context archive on stdin has no Dockerfile at its root (use -f)".to_string()
            } else if fetched.is_none() {
                format!("{} not found (use -f)", p.display())
            } else {
                format!("{} has no Dockerfile at its root (use -f)", a.context)
            };
            let bytes = std::fs::read(&p).with_context(|| format!("reading Dockerfile: {what}"))?;
            (bytes, "Dockerfile".to_string(), p)
        }
    };

    // Build args: --build-arg K takes K from the environment; SOURCE_DATE_EPOCH also may.
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(b) {
                    build_args.insert(b.clone(), v);
                }
            }
        }
    }
    if let Ok(e) = std::env::var("SOURCE_DATE_EPOCH")
        && !e.is_empty() {
            build_args.entry("SOURCE_DATE_EPOCH".into()).or_insert(e);
        }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let mut flags = api::BuildFlags { push: a.push, ..Default::default() };
    if let Some(c) = &a.compression {
        flags.compression = Some(snapshot::diff::Compression::parse(c).ok_or_else(|| anyhow!("invalid --compression {c:?}: use gzip, zstd or uncompressed"))?);
    }
    match a.network.as_deref() {
        None | Some("default") | Some("host") => {}
        Some("none") => flags.network_none = true,
        Some(other) => bail!("--network {other}: a build's RUN steps can use `default`, `host` or `none` (as with BuildKit)"),
    }
    flags.add_hosts = a.add_hosts.iter().map(|h| parse_add_host(h)).collect::<anyhow::Result<_>>()?;
    flags.cache_from = a.cache_from.iter().map(|c| remote_cache::CacheFrom::parse(c)).collect::<Result<_, _>>()?;
    flags.cache_to = a.cache_to.iter().map(|c| remote_cache::CacheTo::parse(c)).collect::<Result<_, _>>()?;
    let options = api::BuildOptions {
        dockerfile,
        dockerfile_name,
        build_args,
        target: a.target.clone(),
        tags: a.tags.clone(),
        outputs: a.outputs.clone(),
        secrets: parse_secrets(&a.secrets)?,
        no_cache: a.no_cache,
        platform: a.platform.clone(),
        labels,
        pull: a.pull,
        max_parallelism: a.max_parallelism.unwrap_or(0),
        ssh: parse_ssh(&a.ssh, globals.addr.is_some())?,
        allow: parse_allow(&a.allow, globals.addr.is_some())?,
        options: flags,
    };
    let mode = match a.progress.as_str() {
        _ if a.quiet => progress::Mode::Quiet,
        "plain" => progress::Mode::Plain,
        "tty" => progress::Mode::Tty,
        "auto" => {
            if std::io::stderr().is_terminal() {
                progress::Mode::Tty
            } else {
                progress::Mode::Plain
            }
        }
        other => bail!("invalid --progress {other:?}: use auto, tty or plain"),
    };

    let (sink, finish_progress) = progress::renderer(mode);
    let started = std::time::Instant::now();
    let outcome = match &globals.addr {
        Some(addr) => {
            // Ctrl-C closes the session at once, and the server cancels the build.
            let interrupt = api::client::Interrupt::default();
            {
                let i = interrupt.clone();
                // Should the client be stuck (walking a huge context), leave anyway.
                let _ = ctrlc::set_handler(move || {
                    i.trigger();
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    std::process::exit(130);
                });
            }
            api::client::build_until(addr, &options, &context_dir, &interrupt, |e| sink(e.clone())).map(|r| r.outcome).map_err(|e| anyhow!("{e}"))
        }
        None => {
            let root = globals.root();
            let engine = api::local::LocalEngine::open(&root, globals.insecure_registries.clone()).map_err(|e| anyhow!("opening {}: {e}", root.display()))?;
            let cancel = Arc::new(solver::Cancel::default());
            {
                let c = cancel.clone();
                let _ = ctrlc::set_handler(move || c.cancel());
            }
            let job = api::BuildJob { options, context_dir, dockerfile_path, progress: sink.clone(), cancel };
            engine.run_build(job).map_err(|e| anyhow!("{e}"))
        }
    };
    finish_progress();
    let outcome = outcome?;
    tracing::debug!("build finished in {:.2}s", started.elapsed().as_secs_f64());
    if let Some(f) = &a.metadata_file {
        write_metadata(f, &outcome)?;
    }
    if let Some(id) = outcome.metadata.get("image.id") {
        if let Some(f) = &a.iidfile {
            std::fs::write(f, id).with_context(|| format!("writing --iidfile {}", f.display()))?;
        }
        if a.quiet {
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--metadata-file`: the outcome's metadata as one JSON object (values that are JSON, such as
/// `cache.misses`, embedded as such), plus `containerimage.digest` as buildx writes it.
fn write_metadata(file: &Path, outcome: &api::BuildOutcome) -> anyhow::Result<()> {
    let mut m = serde_json::Map::new();
    if !outcome.image_digest.is_empty() {
        m.insert("containerimage.digest".into(), outcome.image_digest.clone().into());
    }
    for (k, v) in &outcome.metadata {
        let value = match serde_json::from_str::<serde_json::Value>(v) {
            Ok(j) if j.is_array() || j.is_object() => j,
            _ => v.clone().into(),
        };
        m.insert(k.clone(), value);
    }
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(m))?;
    std::fs::write(file, text + "\n").with_context(|| format!("writing --metadata-file {}", file.display()))
}

/// Runs the bundle's container in the foreground and exits with its exit code. Dies with the
/// build that started it.
fn build_exec(bundle: &Path) -> anyhow::Result<ExitCode> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).context("setting the parent-death signal")?;
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        bail!("the build that started this step is gone");
    }
    let spec = runtime::read_bundle(bundle).map_err(|e| anyhow!("{e}"))?;
    let status = runtime::run(bundle, &spec, runtime::Stdio::inherit()).map_err(|e| anyhow!("{e}"))?;
    Ok(ExitCode::from(status.code().clamp(0, 255) as u8))
}

/// Where a build's context is: a directory of the caller's, or one made for it.
struct BuildContext {
    dir: PathBuf,
    /// The Dockerfile, when what was given is a Dockerfile alone (stdin, a URL): no context then.
    dockerfile: Option<Vec<u8>>,
    /// The directory made for a context from stdin, a repository or a URL; deleted when dropped.
    fetched: Option<tempfile::TempDir>,
}

/// Reads the CONTEXT argument as `docker build` does: `-` is stdin (a tar archive, maybe
/// compressed, that is the whole context; or a Dockerfile alone), a git URL is cloned, an
/// http(s) URL is downloaded (an archive is the context; anything else is the Dockerfile), and
/// anything else is a directory.
fn prepare_context(context: &str) -> anyhow::Result<BuildContext> {
    let archive_or_dockerfile = |bytes: Vec<u8>, from: &str| -> anyhow::Result<BuildContext> {
        let fetched = tempfile::tempdir().context("creating a build context")?;
        let mut dockerfile = None;
        if snapshot::unpack::is_archive(&bytes) {
            unpack_context(&bytes, fetched.path()).with_context(|| format!("the context archive {from}"))?;
        } else {
            dockerfile = Some(bytes);
        }
        Ok(BuildContext { dir: fetched.path().to_path_buf(), dockerfile, fetched: Some(fetched) })
    };
    if context == "-" {
        return archive_or_dockerfile(read_stdin()?, "on stdin");
    }
    if let Some(op) = dockerfile::lower::git_source(context) {
        let fetched = tempfile::tempdir().context("creating a build context")?;
        let agent = std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from);
        let dir = solver::ops::git::clone_context(&op, &fetched.path().join("repo"), agent.as_deref()).with_context(|| format!("unable to prepare context from {context}"))?;
        return Ok(BuildContext { dir, dockerfile: None, fetched: Some(fetched) });
    }
    if context.starts_with("http://") || context.starts_with("https://") {
        let download = tempfile::NamedTempFile::new().context("creating a download file")?;
        solver::ops::http::fetch(context, download.path()).with_context(|| format!("unable to prepare context: downloading {context}"))?;
        let bytes = std::fs::read(download.path()).with_context(|| format!("reading {}", download.path().display()))?;
        return archive_or_dockerfile(bytes, &format!("at {context}"));
    }
    let p = PathBuf::from(context);
    if !p.is_dir() {
        bail!("unable to prepare context: path {context:?} not found or not a directory");
    }
    let dir = p.canonicalize().with_context(|| format!("resolving {context}"))?;
    Ok(BuildContext { dir, dockerfile: None, fetched: None })
}

/// `--add-host NAME:IP` (as Docker: the IP may be IPv6, with colons after the first; `NAME=IP`
/// and `[IPv6]` are accepted too) as (name, ip).
pub fn parse_add_host(h: &str) -> anyhow::Result<(String, String)> {
    Ok(container::config::parse_add_host(h)?)
}

/// Unpacks a build context archive (tar, maybe compressed) into `dest`; entries that would land
/// outside it are refused.
fn unpack_context(bytes: &[u8], dest: &Path) -> anyhow::Result<()> {
    let reader = snapshot::unpack::decompress(bytes).context("reading the context archive on stdin")?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    for entry in archive.entries().context("reading the context archive on stdin")? {
        let mut entry = entry.context("reading the context archive on stdin")?;
        let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        if !entry.unpack_in(dest).with_context(|| format!("unpacking {name:?} from the context archive on stdin"))? {
            bail!("the context archive on stdin has an entry outside the context: {name:?}");
        }
    }
    Ok(())
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    std::io::stdin().read_to_end(&mut b).context("reading the Dockerfile from stdin")?;
    let _ = std::io::stderr().flush();
    Ok(b)
}
