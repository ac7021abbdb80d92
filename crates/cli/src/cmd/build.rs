//! Commands of the build group: `build`, `prune`, `du`.

mod progress;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use dockerfile::lower::{ImageResolver, LowerOptions, ResolvedImage};
use snapshot::diff::Compression;

use crate::Globals;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile.
    Build(BuildArgs),
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
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
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
    /// How many steps may run at once (default: twice the CPUs, at least 4).
    #[arg(long = "max-parallelism", value_name = "N")]
    max_parallelism: Option<usize>,
    /// The build context: a directory, or `-` for a Dockerfile on stdin and no context.
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
            Command::Build(a) => build(globals, a),
            Command::Prune(a) => prune(globals, a),
            Command::Du(a) => du(globals, a),
            Command::BuildExec { bundle } => build_exec(&bundle),
        }
    }
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let mul: f64 = match unit.trim().trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        _ => bail!("invalid size {s:?}: use a number with B, KB, MB, GB or TB"),
    };
    Ok((n * mul) as u64)
}

fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{bytes}B") } else { format!("{v:.3}{}", units[u]) }
}

fn prune(globals: &Globals, a: PruneArgs) -> anyhow::Result<ExitCode> {
    let _ = a.force;
    let keep = a.keep_storage.as_deref().map(parse_size).transpose()?;
    let index = solver::CacheIndex::open(&globals.root())?;
    let stats = index.prune(a.all, keep)?;
    println!("Deleted build cache objects: {} entries, {} layers", stats.records, stats.layers);
    println!("Total reclaimed space: {}", human(stats.bytes));
    Ok(ExitCode::SUCCESS)
}

fn du(globals: &Globals, a: DuArgs) -> anyhow::Result<ExitCode> {
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

/// Where the build result goes.
#[derive(Debug, Clone)]
enum Output {
    Image { names: Vec<String>, push: bool },
    Archive { format: oci::archive::Format, dest: String },
    Local { dest: PathBuf },
    Tar { dest: String },
}

fn parse_output(spec: &str, tags: &[String], push: bool) -> anyhow::Result<Output> {
    if !spec.contains('=') {
        return Ok(if spec == "-" { Output::Tar { dest: "-".into() } } else { Output::Local { dest: PathBuf::from(spec) } });
    }
    let mut kv: HashMap<String, String> = HashMap::new();
    for part in spec.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| anyhow!("invalid --output {spec:?}: {part:?} is not key=value"))?;
        kv.insert(k.trim().to_string(), v.trim().to_string());
    }
    let kind = kv.get("type").map(String::as_str).unwrap_or("local");
    let dest = kv.get("dest").cloned();
    Ok(match kind {
        "image" | "registry" => {
            let mut names: Vec<String> = kv.get("name").map(|n| n.split(',').map(str::to_string).collect()).unwrap_or_default();
            if names.is_empty() {
                names = tags.to_vec();
            }
            Output::Image { names, push: push || kind == "registry" || kv.get("push").is_some_and(|v| v == "true") }
        }
        "oci" => Output::Archive { format: oci::archive::Format::Oci, dest: dest.ok_or_else(|| anyhow!("--output type=oci needs dest=FILE"))? },
        "docker" => Output::Archive { format: oci::archive::Format::Docker, dest: dest.ok_or_else(|| anyhow!("--output type=docker needs dest=FILE"))? },
        "local" => Output::Local { dest: PathBuf::from(dest.ok_or_else(|| anyhow!("--output type=local needs dest=DIR"))?) },
        "tar" => Output::Tar { dest: dest.unwrap_or_else(|| "-".into()) },
        other => bail!("unknown output type {other:?}: use image, oci, docker, local or tar"),
    })
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

/// Finds base images in the local store, pulling them when missing (or always with `--pull`).
struct StoreResolver<'a> {
    store: &'a oci::Store,
    globals: &'a Globals,
    pull: bool,
    quiet: bool,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&mut self, reference: &str, platform: &str) -> Result<ResolvedImage, String> {
        let r = oci::Reference::parse(reference).map_err(|e| e.to_string())?;
        let local = if self.pull { None } else { self.store.image(&r).ok() };
        let image = match local {
            Some(i) => i,
            None => {
                let client = registry::Client::new(registry::ClientOptions { insecure_registries: self.globals.insecure_registries.clone(), ..Default::default() })
                    .map_err(|e| e.to_string())?;
                let progress: Box<dyn registry::Progress> = if self.quiet { Box::new(registry::NoProgress) } else { Box::new(registry::LineProgress) };
                client.pull(&r, Some(platform), self.store, progress.as_ref()).map_err(|e| format!("image not found locally and pulling it failed: {e}"))?;
                self.store.image(&r).map_err(|e| e.to_string())?
            }
        };
        // The config as stored: Docker fields such as OnBuild are not in the OCI types.
        let raw = self.store.read_blob(&image.config_digest).map_err(|e| e.to_string())?;
        let cfg: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| format!("image config of {reference}: {e}"))?;
        let config = cfg.get("config").cloned().map(serde_json::from_value).transpose().map_err(|e| format!("image config of {reference}: {e}"))?.unwrap_or_default();
        let history = cfg.get("history").cloned().map(serde_json::from_value).transpose().map_err(|e| format!("image history of {reference}: {e}"))?.unwrap_or_default();
        let s = |k: &str| cfg.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Ok(ResolvedImage {
            reference: r.to_string(),
            manifest_digest: image.manifest_digest.to_string(),
            config,
            history,
            architecture: s("architecture"),
            os: s("os"),
            variant: cfg.get("variant").and_then(|v| v.as_str()).map(str::to_string),
        })
    }
}

fn host_platform() -> String {
    oci::Platform::host().to_string()
}

fn build(globals: &Globals, a: BuildArgs) -> anyhow::Result<ExitCode> {
    // Every mount of the build lives in a private mount namespace: a killed build leaves none.
    // This must happen before any thread starts.
    if let Err(e) = solver::view::enter_private_mount_namespace() {
        tracing::warn!("{e}");
    }
    let root = globals.root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating state directory {}", root.display()))?;

    // The context and the Dockerfile.
    let stdin_context = a.context == "-";
    let empty_ctx;
    let context_dir: PathBuf = if stdin_context {
        empty_ctx = tempfile::tempdir().context("creating an empty build context")?;
        empty_ctx.path().to_path_buf()
    } else {
        let p = PathBuf::from(&a.context);
        if !p.is_dir() {
            bail!("unable to prepare context: path {:?} not found or not a directory", a.context);
        }
        p.canonicalize().with_context(|| format!("resolving {}", a.context))?
    };
    let (dockerfile_bytes, dockerfile_name) = match (&a.file, stdin_context) {
        (Some(f), _) if f == "-" => (read_stdin()?, "Dockerfile".to_string()),
        (None, true) => (read_stdin()?, "Dockerfile".to_string()),
        (Some(f), _) => {
            let p = PathBuf::from(f);
            let bytes = std::fs::read(&p).with_context(|| format!("reading Dockerfile {f}"))?;
            (bytes, p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Dockerfile".into()))
        }
        (None, false) => {
            let p = context_dir.join("Dockerfile");
            let bytes = std::fs::read(&p).with_context(|| format!("reading Dockerfile: {} not found (use -f)", p.display()))?;
            (bytes, "Dockerfile".to_string())
        }
    };
    let df = dockerfile::Dockerfile::parse(&dockerfile_bytes, &dockerfile_name).map_err(|e| anyhow!("{e}"))?;
    let ignore = dockerfile::ignore::DockerIgnore::load(&context_dir, &dockerfile_name).map_err(|e| anyhow!("{e}"))?;

    // Build args: --build-arg K takes K from the environment.
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
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    // SOURCE_DATE_EPOCH from the build args or the environment.
    let source_date_epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().with_context(|| format!("SOURCE_DATE_EPOCH {s:?} is not a number of seconds")))
        .transpose()?;
    if let Some(e) = source_date_epoch {
        build_args.entry("SOURCE_DATE_EPOCH".into()).or_insert_with(|| e.to_string());
    }
    let platform = a.platform.clone().unwrap_or_else(host_platform);
    let store = oci::Store::open(&root)?;
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
    let lowered = {
        let mut resolver = StoreResolver { store: &store, globals, pull: a.pull, quiet: a.quiet };
        let opts = LowerOptions {
            build_args,
            target: a.target.clone(),
            platform: platform.clone(),
            no_cache: a.no_cache,
            labels,
            context_excludes: ignore.patterns(),
        };
        dockerfile::lower::lower(&df, &opts, &mut resolver).map_err(|e| anyhow!("{e}"))?
    };

    let mut outputs: Vec<Output> = a.outputs.iter().map(|o| parse_output(o, &a.tags, a.push)).collect::<anyhow::Result<_>>()?;
    if outputs.is_empty() {
        outputs.push(Output::Image { names: a.tags.clone(), push: a.push });
    }
    let compression = match &a.compression {
        Some(c) => Some(Compression::parse(c).ok_or_else(|| anyhow!("invalid --compression {c:?}: use gzip, zstd or uncompressed"))?),
        None => None,
    };
    let secrets = parse_secrets(&a.secrets)?;

    let (sink, finish_progress) = progress::renderer(mode);
    let cancel = Arc::new(solver::exec::Cancel::default());
    {
        let c = cancel.clone();
        let _ = ctrlc::set_handler(move || c.cancel());
    }
    let images = Arc::new(solver::base::StoreImages::new(store.clone(), &root));
    let solver = solver::Solver::new(&root, images)?;
    let mut locals = HashMap::new();
    locals.insert("context".to_string(), context_dir.clone());
    let req = solver::SolveRequest {
        definition: &lowered.definition,
        targets: vec![lowered.target],
        locals,
        secrets,
        max_parallelism: a.max_parallelism.unwrap_or_else(default_parallelism),
        progress: sink.clone(),
        cancel: cancel.clone(),
    };
    let started = std::time::Instant::now();
    let solved = solver.solve(&req);
    let solved = match solved {
        Ok(s) => s,
        Err(e) => {
            finish_progress();
            if matches!(e, solver::SolveError::Cancelled) {
                bail!("build cancelled");
            }
            let loc = failing_location(&lowered.definition, &e);
            return Err(anyhow!("{e}{loc}"));
        }
    };
    let Some(solver::Solved { output: solver::Output::Snapshot { snapshot, .. }, .. }) = solved.get(&lowered.target).cloned() else {
        bail!("the build produced no filesystem");
    };
    let new_layers: HashMap<graph::VertexDigest, usize> = solved
        .iter()
        .filter_map(|(d, s)| match &s.output {
            solver::Output::Snapshot { new_layers, .. } => Some((*d, *new_layers)),
            _ => None,
        })
        .collect();
    let made_at: HashMap<graph::VertexDigest, u64> = solved
        .iter()
        .filter_map(|(d, s)| match &s.output {
            solver::Output::Snapshot { created, .. } => Some((*d, *created)),
            _ => None,
        })
        .collect();
    let note = |m: String| sink(solver::Event::Note { message: m });
    let mut image_id = None;
    for out in &outputs {
        match out {
            Output::Image { names, push } => {
                let comp = compression.unwrap_or(if *push { Compression::Gzip } else { Compression::Uncompressed });
                let opts = solver::export::ExportOptions { compression: comp, source_date_epoch };
                let exported = solver::export::export_image_with_times(solver.index(), &store, &snapshot, &lowered.image, &new_layers, &made_at, &opts, &note)?;
                note(format!("writing image {} done", exported.config_digest));
                let desc = store.manifest_descriptor(&exported.manifest_digest.parse()?)?;
                for n in names {
                    let r = oci::Reference::parse(n).with_context(|| format!("invalid tag {n:?}"))?;
                    store.tag(&r, desc.clone())?;
                    note(format!("naming to {r} done"));
                }
                if *push {
                    if names.is_empty() {
                        bail!("--push needs a name: give -t NAME");
                    }
                    let client = registry::Client::new(registry::ClientOptions { insecure_registries: globals.insecure_registries.clone(), ..Default::default() })?;
                    for n in names {
                        let r = oci::Reference::parse(n)?;
                        let progress: Box<dyn registry::Progress> = if a.quiet { Box::new(registry::NoProgress) } else { Box::new(registry::LineProgress) };
                        let d = client.push(&store, &r, &r, progress.as_ref()).with_context(|| format!("pushing {r}"))?;
                        note(format!("pushing {r} done ({d})"));
                    }
                }
                image_id = Some(exported.config_digest.clone());
            }
            Output::Archive { format, dest } => {
                let comp = compression.unwrap_or(Compression::Gzip);
                let opts = solver::export::ExportOptions { compression: comp, source_date_epoch };
                let exported = solver::export::export_image_with_times(solver.index(), &store, &snapshot, &lowered.image, &new_layers, &made_at, &opts, &note)?;
                let desc = store.manifest_descriptor(&exported.manifest_digest.parse()?)?;
                let image = store.image_from_descriptor(&desc)?;
                let name = a.tags.first().map(|t| oci::Reference::parse(t)).transpose()?;
                if dest == "-" {
                    oci::archive::save(&store, &[(name, image)], *format, std::io::stdout().lock())?;
                } else {
                    let tmp = format!("{dest}.tmp{}", std::process::id());
                    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {tmp}"))?;
                    oci::archive::save(&store, &[(name, image)], *format, std::io::BufWriter::new(f))?;
                    std::fs::rename(&tmp, dest).with_context(|| format!("writing {dest}"))?;
                }
                note(format!("exporting to {dest} done"));
                image_id = Some(exported.config_digest.clone());
            }
            Output::Local { dest } => {
                solver::export::export_local(solver.index(), &snapshot, dest)?;
                note(format!("copying files to {} done", dest.display()));
            }
            Output::Tar { dest } => {
                if dest == "-" {
                    solver::export::export_tar(solver.index(), &snapshot, std::io::stdout(), source_date_epoch)?;
                } else {
                    let f = std::fs::File::create(dest).with_context(|| format!("creating {dest}"))?;
                    solver::export::export_tar(solver.index(), &snapshot, std::io::BufWriter::new(f), source_date_epoch)?;
                }
                note(format!("sending tarball to {dest} done"));
            }
        }
    }
    finish_progress();
    tracing::debug!("build finished in {:.2}s", started.elapsed().as_secs_f64());
    if let Some(id) = &image_id {
        if let Some(f) = &a.iidfile {
            std::fs::write(f, id).with_context(|| format!("writing --iidfile {}", f.display()))?;
        }
        if a.quiet {
            println!("{id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `\n  at Dockerfile:LINE` for the step that failed, when the error names it.
fn failing_location(def: &graph::Definition, e: &solver::SolveError) -> String {
    let msg = e.to_string();
    for v in def.vertices.values() {
        if !v.meta.description.is_empty() && msg.starts_with(&v.meta.description) {
            if let Some(l) = &v.meta.location {
                return format!("\n  at {l}");
            }
        }
    }
    String::new()
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

/// Twice the CPUs, at least 4: most steps wait on I/O, the network or `sleep`, and BuildKit
/// puts no limit at all.
fn default_parallelism() -> usize {
    (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2).max(4)
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    std::io::stdin().read_to_end(&mut b).context("reading the Dockerfile from stdin")?;
    let _ = std::io::stderr().flush();
    Ok(b)
}
