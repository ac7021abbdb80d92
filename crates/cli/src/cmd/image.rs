//! Commands of the image group: the local store (import, images, tag, inspect, history, rmi,
//! save, load) and registries (pull, push, login, logout).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use oci::{LocalImage, Reference, Store};

use crate::Globals;

/// Transfer progress rendering for pull and push.
pub(crate) mod progress;
/// pull, push, login, logout.
mod remote;
/// Tables and human-readable sizes and times.
mod table;
/// `images`: rows, filters, formats and unpacked sizes.
pub mod listing;

use remote::{login, logout, pull, push};
use table::{ago, human_size, print_table};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an image from a root filesystem tarball (plain or gzip; - for stdin), like `docker import`.
    Import {
        /// The tarball.
        file: PathBuf,
        /// Name of the new image.
        reference: String,
    },
    /// List local images (like `docker images`).
    Images(ImagesArgs),
    /// Give an image another name.
    Tag {
        /// Image to tag (name or ID).
        source: String,
        /// New name.
        target: String,
    },
    /// Show low-level information about containers or images, as JSON (like `docker inspect`):
    /// a name is looked up as a container first, then as an image.
    Inspect {
        /// Format the output with a Go template (`{{.State.Status}}`, `{{json .Config}}`), or json.
        #[arg(short, long)]
        format: Option<String>,
        /// Only look for this kind of object.
        #[arg(long = "type", value_enum)]
        kind: Option<super::inspect::Kind>,
        /// Add the container's sizes (SizeRw, SizeRootFs).
        #[arg(short, long)]
        size: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show the history of an image.
    History {
        image: String,
        /// Do not truncate output.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Download an image from a registry.
    Pull {
        /// Only print the image reference.
        #[arg(short, long)]
        quiet: bool,
        /// Platform to pick from a multi-platform image (os/arch[/variant]); default: this machine's.
        #[arg(long)]
        platform: Option<String>,
        reference: String,
    },
    /// Upload an image to a registry.
    Push {
        /// Only print the digest.
        #[arg(short, long)]
        quiet: bool,
        /// Upload blobs in chunks of this many MiB (default: one request per blob).
        #[arg(long, value_name = "MIB")]
        chunk_size: Option<u64>,
        reference: String,
    },
    /// Save credentials for a registry in the docker config (~/.docker/config.json).
    Login {
        #[arg(short, long)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Registry host[:port] (default: docker.io).
        registry: Option<String>,
    },
    /// Remove saved credentials for a registry.
    Logout { registry: Option<String> },
    /// Write images to a tar archive (docker format, or --format oci).
    Save {
        /// Output file (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ArchiveFormat::Docker)]
        format: ArchiveFormat,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load images from a tar archive (docker or OCI format).
    Load {
        /// Input file (default: standard input).
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Only print the loaded image names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (untag; delete blobs no other image uses).
    Rmi {
        /// Remove even if a container uses the image, and remove every tag of an ID.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save` format (manifest.json + OCI layout), what `docker load` reads.
    Docker,
    /// An OCI image layout in a tar.
    Oci,
}

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show all images (builder keeps no intermediate images, so the same list).
    #[arg(short, long)]
    all: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Filter: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE.
    #[arg(short, long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// `table`, `table TEMPLATE`, `json`, or a Go template (`{{.Repository}}:{{.Tag}}`).
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (REPOSITORY[:TAG]).
    repository: Option<String>,
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        // With --addr / $BUILDER_HOST, `images` and `push` work on the server's store.
        if let Some(addr) = &globals.addr {
            match self {
                Command::Images(a) => return images_remote(addr, &a),
                Command::Push { quiet, chunk_size: _, reference } => return remote::push_remote(globals, addr, quiet, &reference),
                other => return other.run_local(globals),
            }
        }
        self.run_local(globals)
    }

    fn run_local(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        let root = globals.root();
        let store = Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))?;
        match self {
            Command::Import { file, reference } => import(&store, &file, &reference),
            Command::Images(a) => images(&store, &a),
            Command::Tag { source, target } => tag(&store, &source, &target),
            Command::Inspect { format, kind, size, names } => {
                let containers = super::container::open(globals)?;
                super::inspect::inspect(&containers, &store, kind, format.as_deref(), size, &names)
            }
            Command::History { image, no_trunc } => history(&store, &image, no_trunc),
            Command::Rmi { force, images } => rmi(&store, force, &images),
            Command::Pull { quiet, platform, reference } => pull(globals, &store, quiet, platform.as_deref(), &reference),
            Command::Push { quiet, chunk_size, reference } => push(globals, &store, quiet, chunk_size, &reference),
            Command::Login { username, password, password_stdin, registry } => {
                login(globals, username, password, password_stdin, registry.as_deref())
            }
            Command::Logout { registry } => logout(globals, registry.as_deref()),
            Command::Save { output, format, images } => save(globals, &store, output.as_deref(), format, &images),
            Command::Load { input, quiet } => load(&store, input.as_deref(), quiet),
        }
    }
}

fn parse_ref(s: &str) -> anyhow::Result<Reference> {
    Ok(Reference::parse(s)?)
}

fn find(store: &Store, name: &str) -> anyhow::Result<(Option<Reference>, LocalImage)> {
    Ok(store.find_image(name)?)
}

fn import(store: &Store, file: &std::path::Path, reference: &str) -> anyhow::Result<ExitCode> {
    let reference = parse_ref(reference)?;
    let source = file.display().to_string();
    let image = if source == "-" {
        oci::import::import_rootfs(store, std::io::stdin().lock(), &reference, "-")?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        oci::import::import_rootfs(store, f, &reference, &source).with_context(|| format!("importing {}", file.display()))?
    };
    events::record(store.root(), "image", "import", &image.id().to_string(), &[("name", &reference.familiar())]);
    println!("{}", image.id());
    Ok(ExitCode::SUCCESS)
}

/// `images` of a `builder serve`: the same rows, from the server's store (sizes as it reports them).
fn images_remote(addr: &str, a: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let remote = api::client::Remote::connect(&api::client::ClientConfig::from_env(addr)?)?;
    let mut rows = Vec::new();
    for summary in remote.images()? {
        let reference = (!summary.reference.is_empty()).then(|| parse_ref(&summary.reference)).transpose()?;
        rows.push(listing::ImageRow {
            repository: reference.as_ref().map(|r| r.familiar_name()),
            tag: reference.as_ref().map(|r| r.tag().unwrap_or("<none>").to_string()),
            id: summary.id,
            digest: Some(summary.manifest_digest),
            created: chrono::DateTime::from_timestamp(summary.created_unix, 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
            size: summary.size,
            labels: Default::default(),
        });
    }
    print_images(rows, a)
}

fn images(store: &Store, a: &ImagesArgs) -> anyhow::Result<ExitCode> {
    print_images(listing::local_rows(store)?, a)
}

fn print_images(rows: Vec<listing::ImageRow>, a: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let _ = a.all;
    let created: std::collections::HashMap<String, String> = rows.iter().flat_map(|r| {
        let mut names = vec![r.id.clone(), listing::short_id(&r.id, false)];
        if let (Some(repo), Some(tag)) = (&r.repository, &r.tag) {
            names.push(format!("{repo}:{tag}"));
            if tag == "latest" {
                names.push(repo.clone());
            }
        }
        names.into_iter().map(|n| (n, r.created.clone()))
    }).collect();
    let filters = listing::Filters::parse(&a.filters, |name| {
        let name = name.strip_prefix("docker.io/library/").unwrap_or(name);
        created.get(name).cloned().ok_or_else(|| anyhow::anyhow!("no such image: {name}"))
    })?;
    let wanted = a.repository.as_deref().map(parse_ref).transpose()?;
    let rows: Vec<listing::ImageRow> = rows
        .into_iter()
        .filter(|r| filters.matches(r))
        .filter(|r| match &wanted {
            None => true,
            Some(w) => r.repository.as_deref() == Some(w.familiar_name().as_str()) && (a.repository.as_deref().is_some_and(|s| !s.rsplit('/').next().unwrap_or(s).contains(':')) || r.tag.as_deref() == w.tag()),
        })
        .collect();
    listing::print(rows, &listing::ListOptions { quiet: a.quiet, format: a.format.as_deref(), digests: a.digests, no_trunc: a.no_trunc })?;
    Ok(ExitCode::SUCCESS)
}

fn tag(store: &Store, source: &str, target: &str) -> anyhow::Result<ExitCode> {
    let target = parse_ref(target)?;
    if target.digest().is_some() {
        bail!("cannot tag with a digest reference {target}: a tag name is needed");
    }
    let (_, image) = find(store, source)?;
    let desc = match &image.index_digest {
        Some(index) => store.manifest_descriptor(index)?,
        None => store.manifest_descriptor(&image.manifest_digest)?,
    };
    store.tag(&target, desc)?;
    events::record(store.root(), "image", "tag", &image.id().to_string(), &[("name", &target.familiar())]);
    Ok(ExitCode::SUCCESS)
}

/// The `docker image inspect` shape.
pub(crate) fn inspect_json(store: &Store, image: &LocalImage) -> anyhow::Result<serde_json::Value> {
    let tags = store.tags_of(image.id())?;
    let repo_tags: Vec<String> = tags.iter().filter(|r| r.tag().is_some()).map(|r| r.familiar()).collect();
    let mut repo_digests: Vec<String> =
        tags.iter().map(|r| format!("{}@{}", r.familiar_name(), image.repo_digest.as_ref().unwrap_or(&image.manifest_digest))).collect();
    repo_digests.sort();
    repo_digests.dedup();
    let c = &image.config;
    let mut v = serde_json::json!({
        "Id": image.id().to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": c.history().as_ref().and_then(|h| h.last()).and_then(|h| h.comment().clone()).unwrap_or_default(),
        "Created": c.created().clone().unwrap_or_default(),
        "Author": c.author().clone().unwrap_or_default(),
        "Architecture": c.architecture().to_string(),
        "Variant": c.variant().clone(),
        "Os": c.os().to_string(),
        "Size": image.size(),
        "Config": c.config(),
        "RootFS": { "Type": c.rootfs().typ(), "Layers": c.rootfs().diff_ids() },
        "Descriptor": {
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.to_string(),
            "size": store.blob_size(&image.manifest_digest).unwrap_or(0),
        },
    });
    if c.variant().is_none()
        && let Some(obj) = v.as_object_mut() {
            obj.remove("Variant");
        }
    Ok(v)
}

fn history(store: &Store, name: &str, no_trunc: bool) -> anyhow::Result<ExitCode> {
    let (_, image) = find(store, name)?;
    let layers = image.layers()?;
    let mut sizes = layers.iter().map(|(_, s)| *s);
    let entries = image.config.history().clone().unwrap_or_default();
    let mut rows: Vec<[String; 5]> = Vec::new();
    for (i, h) in entries.iter().enumerate() {
        let size = if h.empty_layer().unwrap_or(false) { 0 } else { sizes.next().unwrap_or(0) };
        let is_top = i + 1 == entries.len();
        let id = if is_top { if no_trunc { image.id().to_string() } else { image.id().short().to_string() } } else { "<missing>".into() };
        let mut created_by = h.created_by().clone().unwrap_or_default();
        if !no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        rows.push([id, ago(h.created().as_deref().unwrap_or("")), created_by, human_size(size), h.comment().clone().unwrap_or_default()]);
    }
    rows.reverse();
    print_table(&mut std::io::stdout().lock(), ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn rmi(store: &Store, force: bool, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for name in names {
        if let Err(e) = rmi_one(store, force, name) {
            eprintln!("error: {name}: {e:#}");
            failed = true;
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn rmi_one(store: &Store, force: bool, name: &str) -> anyhow::Result<()> {
    let (by_ref, image) = find(store, name)?;
    let tags = store.tags_of(image.id())?;
    let to_untag: Vec<Reference> = match &by_ref {
        Some(r) if tags.contains(r) => vec![r.clone()],
        _ if tags.len() > 1 && !force => {
            bail!(
                "image {} is referenced by {} tags ({}); remove them one by one or use -f",
                image.id().short(),
                tags.len(),
                tags.iter().map(|t| t.familiar()).collect::<Vec<_>>().join(", ")
            )
        }
        _ => tags.clone(),
    };
    let last_tag = to_untag.len() == tags.len();
    if last_tag && !force
        && let Some(container) = container_using(store.root(), &image) {
            bail!("image {} is used by container {container}; remove the container first or use -f", image.id().short());
        }
    for r in &to_untag {
        store.untag(r)?;
        events::record(store.root(), "image", "untag", &image.id().to_string(), &[("name", &r.familiar())]);
        println!("Untagged: {}", r.familiar());
    }
    if last_tag {
        let stats = store.remove_if_unreferenced(&image.blobs()?, &[])?;
        println!("Deleted: {} ({} blobs, {})", image.id(), stats.removed_blobs, human_size(stats.freed_bytes));
        events::record(store.root(), "image", "delete", &image.id().to_string(), &[]);
    }
    Ok(())
}

/// The first container (as "name (short id)") whose record, `root/containers/<id>/state.json`
/// as the runtime writes it, names the image by ID. Read as plain JSON so this module does not
/// depend on the runtime's types.
fn container_using(root: &std::path::Path, image: &LocalImage) -> Option<String> {
    let id = image.id().to_string();
    let mut users: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("containers")).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("state.json")) else { continue };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if state.get("image_id").and_then(|v| v.as_str()) == Some(id.as_str()) {
            let cid = entry.file_name().to_string_lossy().into_owned();
            let name = state.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string();
            users.insert(cid.clone(), format!("{name} ({})", &cid[..cid.len().min(12)]));
        }
    }
    users.into_values().next()
}

fn save(globals: &Globals, store: &Store, output: Option<&std::path::Path>, format: ArchiveFormat, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut images = Vec::new();
    for name in names {
        let (reference, image) = find(store, name)?;
        images.push((reference, image));
    }
    // Layers of images made from an imported build cache are fetched now (verified).
    for (reference, image) in &images {
        remote::fetch_missing_layers(globals, store, image).with_context(|| match reference {
            Some(r) => format!("fetching the layers of {}", r.familiar()),
            None => format!("fetching the layers of {}", image.id()),
        })?;
    }
    let format = match format {
        ArchiveFormat::Docker => oci::archive::Format::Docker,
        ArchiveFormat::Oci => oci::archive::Format::Oci,
    };
    match output {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = std::io::BufWriter::new(file);
            oci::archive::save(store, &images, format, &mut w)?;
            let file = w.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", tmp.display()))?;
            file.sync_all().with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect standard output");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            oci::archive::save(store, &images, format, &mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(store: &Store, input: Option<&std::path::Path>, quiet: bool) -> anyhow::Result<ExitCode> {
    let loaded = match input {
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            oci::archive::load(store, f, &path.display().to_string())?
        }
        None => oci::archive::load(store, std::io::stdin().lock(), "-")?,
    };
    for l in loaded {
        match l.reference {
            Some(r) if quiet => println!("{r}"),
            Some(r) => println!("Loaded image: {}", r.familiar()),
            None => println!("Loaded image ID: {}", l.image_id),
        }
    }
    Ok(ExitCode::SUCCESS)
}
