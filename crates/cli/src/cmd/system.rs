//! Cleaning up, as Docker's commands do: `image prune`, `system df`, `system prune`, and the
//! collection of unpacked snapshots nothing uses. Everything here runs with the build-wide
//! lock held exclusively (`cache/lock`, which every build holds shared), so a build from
//! another process never loses an image, blob or snapshot it is using; containers keep what
//! their records name, and anything younger than [`GRACE`] stays for a pull or run that has
//! not written its record yet.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use oci::{Digest, Store};
use snapshot::Snapshots;

use crate::Globals;
use crate::cmd::human_size;

/// How old an unreferenced blob or snapshot must be before it is removed.
const GRACE: std::time::Duration = api::local::GC_GRACE;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Remove unused images (`builder image prune`): dangling ones, or with -a every image no
    /// container uses; then the blobs and unpacked snapshots nothing uses.
    #[command(name = "image-prune", hide = true)]
    ImagePrune(ImagePruneArgs),
    /// Disk usage and clean-up (`builder system df`, `builder system prune`).
    #[command(subcommand)]
    System(SystemCommand),
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show disk usage: images, containers, volumes, build cache.
    Df {
        /// Show each image, container, volume and cache entry.
        #[arg(short, long)]
        verbose: bool,
        /// `table`, `json` or a Go template (fields Type, TotalCount, Active, Size, Reclaimable).
        #[arg(long)]
        format: Option<String>,
    },
    /// Remove stopped containers, dangling images (every unused one with -a), the build cache,
    /// and with --volumes unused anonymous volumes.
    Prune {
        /// Remove every image no container uses, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Remove unused anonymous volumes too.
        #[arg(long)]
        volumes: bool,
        /// Do not ask.
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask.
    #[arg(short, long)]
    force: bool,
    /// `until=DURATION|TIMESTAMP` (created before), `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`.
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        if globals.addr.is_some() {
            bail!("image prune and system commands work on the local --root; use `builder prune` and `builder du` for a server's build cache");
        }
        let root = globals.root();
        match self {
            Command::ImagePrune(a) => {
                let filters = PruneFilters::parse(&a.filters)?;
                let what = if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
                if !a.force && !confirm(&format!("WARNING! This will remove {what}."))? {
                    return Ok(ExitCode::SUCCESS);
                }
                let store = Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))?;
                let pruned = prune_images(&store, a.all, &filters)?;
                print_pruned_images(&pruned);
                println!("Total reclaimed space: {}", human_size(pruned.bytes));
                Ok(ExitCode::SUCCESS)
            }
            Command::System(SystemCommand::Df { verbose, format }) => df(&root, verbose, format.as_deref()),
            Command::System(SystemCommand::Prune { all, volumes, force }) => {
                if !force {
                    let mut lines = vec!["WARNING! This will remove:", "  - all stopped containers"];
                    if volumes {
                        lines.push("  - all anonymous volumes not used by at least one container");
                    }
                    lines.push(if all { "  - all images without at least one container associated to them" } else { "  - all dangling images" });
                    lines.push("  - all build cache");
                    if !confirm(&lines.join("\n"))? {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                system_prune(&root, all, volumes)
            }
        }
    }
}

fn confirm(warning: &str) -> anyhow::Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// `image prune --filter`.
#[derive(Default)]
struct PruneFilters {
    until: Option<chrono::DateTime<chrono::Utc>>,
    labels: Vec<(String, Option<String>, bool)>,
}

impl PruneFilters {
    fn parse(flags: &[String]) -> anyhow::Result<PruneFilters> {
        let mut f = PruneFilters::default();
        for flag in flags {
            if let Some(v) = flag.strip_prefix("label!=") {
                let (k, val) = v.split_once('=').map(|(k, v)| (k.to_string(), Some(v.to_string()))).unwrap_or((v.to_string(), None));
                f.labels.push((k, val, false));
                continue;
            }
            let Some((key, value)) = flag.split_once('=') else { bail!("bad format of filter {flag:?} (expected name=value)") };
            match key {
                "until" => f.until = Some(parse_until(value).with_context(|| format!("filter until={value}"))?),
                "label" => {
                    let (k, val) = value.split_once('=').map(|(k, v)| (k.to_string(), Some(v.to_string()))).unwrap_or((value.to_string(), None));
                    f.labels.push((k, val, true));
                }
                _ => bail!("invalid filter '{key}' (image prune takes until, label, label!)"),
            }
        }
        Ok(f)
    }

    fn matches(&self, created: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(until) = self.until {
            match chrono::DateTime::parse_from_rfc3339(created) {
                Ok(c) if c < until => {}
                _ => return false,
            }
        }
        self.labels.iter().all(|(k, v, want)| {
            let has = match (labels.get(k), v) {
                (Some(have), Some(v)) => have == v,
                (Some(_), None) => true,
                (None, _) => false,
            };
            has == *want
        })
    }
}

/// `until=`: a Go duration before now (`24h`, `90m`, `1h30m`), a Unix timestamp, or RFC 3339.
fn parse_until(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(secs) = s.parse::<i64>() {
        return chrono::DateTime::from_timestamp(secs, 0).context("timestamp out of range");
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or_default();
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, secs) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)].into_iter().find(|(u, _)| rest.starts_with(u)).with_context(|| format!("{s:?} is not a duration (24h, 90m), a Unix time or an RFC 3339 time"))?;
        let n: f64 = num.parse().with_context(|| format!("{s:?} is not a duration"))?;
        total += n * secs;
        num.clear();
        rest = &rest[unit.len()..];
    }
    if !num.is_empty() || total == 0.0 {
        bail!("{s:?} is not a duration (24h, 90m), a Unix time or an RFC 3339 time");
    }
    Ok(chrono::Utc::now() - chrono::Duration::milliseconds((total * 1000.0) as i64))
}

#[derive(Default)]
struct PrunedImages {
    untagged: Vec<String>,
    deleted: Vec<String>,
    bytes: u64,
}

fn print_pruned_images(p: &PrunedImages) {
    if p.untagged.is_empty() && p.deleted.is_empty() {
        return;
    }
    println!("Deleted Images:");
    for u in &p.untagged {
        println!("untagged: {u}");
    }
    for d in &p.deleted {
        println!("deleted: {d}");
    }
    println!();
}

/// Image IDs the containers of `root` were made from.
fn images_in_use(root: &std::path::Path) -> anyhow::Result<HashSet<String>> {
    Ok(container::Containers::open(root)?.list()?.into_iter().map(|c| c.image_id).collect())
}

/// Removes dangling images (every image no container uses, with `all`) that `filters` match,
/// then collects blobs and snapshots. Holds the build-wide lock throughout.
fn prune_images(store: &Store, all: bool, filters: &PruneFilters) -> anyhow::Result<PrunedImages> {
    let root = store.root().to_path_buf();
    let index = solver::cache::CacheIndex::open(&root)?;
    let _no_build = index.lock_exclusive()?;
    let used = images_in_use(&root)?;
    let mut pruned = PrunedImages::default();
    let mut deleted_ids = HashSet::new();
    let mut consider = |reference: Option<oci::Reference>, desc: &oci::spec::Descriptor, pruned: &mut PrunedImages| -> anyhow::Result<()> {
        let Ok(image) = store.image_from_descriptor(desc) else { return Ok(()) };
        let id = image.id().to_string();
        let labels: BTreeMap<String, String> = image.config.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default().into_iter().collect();
        if used.contains(&id) || !filters.matches(&image.config.created().clone().unwrap_or_default(), &labels) {
            return Ok(());
        }
        match &reference {
            Some(r) => {
                store.untag(r)?;
                pruned.untagged.push(r.familiar());
            }
            None => {
                let digest = Digest::try_from(desc.digest())?;
                store.remove_dangling(&digest)?;
            }
        }
        if store.tags_of(image.id())?.is_empty() && deleted_ids.insert(id.clone()) {
            pruned.deleted.push(id);
        }
        Ok(())
    };
    for desc in store.dangling()? {
        consider(None, &desc, &mut pruned)?;
    }
    if all {
        for (r, desc) in store.list()? {
            consider(Some(r), &desc, &mut pruned)?;
        }
    }
    pruned.bytes = collect_garbage(store, &index)?;
    Ok(pruned)
}

/// Removes the blobs and the unpacked snapshots that no image, container or cache entry uses
/// (and that are older than [`GRACE`]). The caller holds the build-wide lock. Returns the
/// bytes freed.
fn collect_garbage(store: &Store, index: &solver::cache::CacheIndex) -> anyhow::Result<u64> {
    let root = store.root().to_path_buf();
    let containers = container::Containers::open(&root)?.list()?;
    let mut blob_roots: Vec<Digest> = containers.iter().filter_map(|c| c.image_id.parse().ok()).collect();
    let cached: Vec<String> = index.referenced_blobs()?;
    blob_roots.extend(cached.iter().filter_map(|d| d.parse().ok()));
    let blobs = store.gc_older_than(&blob_roots, GRACE)?;

    // Snapshots: the layers of every image left (tagged or dangling), of every container, and
    // of every cache entry.
    let mut keep: HashSet<String> = HashSet::new();
    let tagged = store.list()?.into_iter().map(|(_, d)| d);
    for desc in tagged.chain(store.dangling()?) {
        if let Ok(image) = store.image_from_descriptor(&desc) {
            for (layer, _) in image.layers().unwrap_or_default() {
                keep.insert(Snapshots::id_of(&layer.to_string()));
            }
        }
    }
    for c in &containers {
        keep.extend(c.lowers.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()));
    }
    keep.extend(cached.iter().map(|d| Snapshots::id_of(d)));
    let snapshots = Snapshots::open(&root)?.collect(&keep, GRACE);
    tracing::debug!(blobs = blobs.removed_blobs, snapshots = snapshots.removed, "collected");
    Ok(blobs.freed_bytes + snapshots.freed_bytes)
}

fn system_prune(root: &std::path::Path, all: bool, volumes: bool) -> anyhow::Result<ExitCode> {
    let containers = container::Containers::open(root)?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in containers.list()?.into_iter().filter(|c| c.status != runtime::containers::Status::Running) {
        reclaimed += solver::cache::dir_size(&containers.dir_of(&c.id));
        containers.remove(&c, false, false)?;
        deleted.push(c.id);
    }
    if !deleted.is_empty() {
        println!("Deleted Containers:\n{}\n", deleted.join("\n"));
    }
    if volumes {
        let pruned = volume::Volumes::open(root)?.prune(&volume::Filters::default(), false)?;
        if !pruned.names.is_empty() {
            println!("Deleted Volumes:\n{}\n", pruned.names.join("\n"));
        }
        reclaimed += pruned.bytes;
    }
    let engine = api::local::LocalEngine::open(root, Vec::new())?;
    let cache = api::Engine::prune(&engine, true, None)?;
    reclaimed += cache.bytes_freed;
    let store = Store::open(root)?;
    let images = prune_images(&store, all, &PruneFilters::default())?;
    print_pruned_images(&images);
    if cache.records_removed > 0 {
        println!("Deleted build cache objects: {}\n", cache.records_removed);
    }
    println!("Total reclaimed space: {}", human_size(reclaimed + images.bytes));
    Ok(ExitCode::SUCCESS)
}

/// `system df`: one row per kind, as Docker prints it.
fn df(root: &std::path::Path, verbose: bool, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = Store::open(root)?;
    let containers = container::Containers::open(root)?.list()?;
    let used = images_in_use(root)?;
    let rows = crate::cmd::image::listing::local_rows(&store)?;
    let mut seen = HashSet::new();
    let images: Vec<&crate::cmd::image::listing::ImageRow> = rows.iter().filter(|r| seen.insert(r.id.clone())).collect();
    // Layers shared between images count once.
    let mut layer_sizes: BTreeMap<String, u64> = BTreeMap::new();
    let mut active_layers: HashSet<String> = HashSet::new();
    let mut image_layers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_id: BTreeMap<String, oci::LocalImage> = BTreeMap::new();
    for desc in store.list()?.into_iter().map(|(_, d)| d).chain(store.dangling()?) {
        if let Ok(image) = store.image_from_descriptor(&desc) {
            by_id.insert(image.id().to_string(), image);
        }
    }
    for r in &images {
        let Some(image) = by_id.get(&r.id) else { continue };
        let layers: Vec<String> = image.layers().unwrap_or_default().into_iter().map(|(d, _)| d.to_string()).collect();
        for (d, compressed) in image.layers().unwrap_or_default() {
            layer_sizes.entry(d.to_string()).or_insert_with(|| crate::cmd::image::listing::layer_size(&store, &d).unwrap_or(compressed));
            if used.contains(&r.id) {
                active_layers.insert(d.to_string());
            }
        }
        image_layers.insert(r.id.clone(), layers);
    }
    let images_size: u64 = layer_sizes.values().sum();
    let images_reclaimable: u64 = layer_sizes.iter().filter(|(d, _)| !active_layers.contains(*d)).map(|(_, s)| s).sum();
    let container_size = |id: &str| solver::cache::dir_size(&root.join("containers").join(id).join("upper"));
    let containers_size: u64 = containers.iter().map(|c| container_size(&c.id)).sum();
    let running = containers.iter().filter(|c| c.status == runtime::containers::Status::Running).count();
    let stopped_size: u64 = containers.iter().filter(|c| c.status != runtime::containers::Status::Running).map(|c| container_size(&c.id)).sum();
    let vols = volume::Volumes::open(root)?;
    let volume_list = vols.list().unwrap_or_default();
    let volume_size = |name: &str| solver::cache::dir_size(&vols.mount_source(name));
    let volumes_size: u64 = volume_list.iter().map(|v| volume_size(&v.name)).sum();
    let cache = solver::cache::CacheIndex::open(root)?.usage()?;
    let cache_size = cache.layer_bytes + cache.mount_bytes;
    let pct = |part: u64, whole: u64| if whole == 0 { String::new() } else { format!(" ({}%)", part * 100 / whole) };
    let row = |kind: &str, total: usize, active: usize, size: u64, reclaim: u64| {
        serde_json::json!({"Type": kind, "TotalCount": total.to_string(), "Active": active.to_string(), "Size": human_size(size), "Reclaimable": format!("{}{}", human_size(reclaim), pct(reclaim, size))})
    };
    let summary = vec![
        row("Images", images.len(), images.iter().filter(|r| used.contains(&r.id)).count(), images_size, images_reclaimable),
        row("Containers", containers.len(), running, containers_size, stopped_size),
        row("Local Volumes", volume_list.len(), 0, volumes_size, volumes_size),
        row("Build Cache", cache.records, 0, cache_size, cache_size),
    ];
    let mut out = std::io::stdout().lock();
    if !verbose {
        let f = crate::cmd::format::Format::parse(format, "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}")?;
        f.write(&mut out, &[("Type", "TYPE"), ("TotalCount", "TOTAL"), ("Active", "ACTIVE"), ("Size", "SIZE"), ("Reclaimable", "RECLAIMABLE")], &summary)?;
        return Ok(ExitCode::SUCCESS);
    }
    // -v: each image with its shared and unique sizes, each container, volume and cache entry.
    let mut users: BTreeMap<&String, usize> = BTreeMap::new();
    for layers in image_layers.values() {
        for l in layers {
            *users.entry(l).or_default() += 1;
        }
    }
    writeln!(out, "Images space usage:\n")?;
    let image_rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let layers = image_layers.get(&r.id).cloned().unwrap_or_default();
            let size_of = |l: &String| layer_sizes.get(l).copied().unwrap_or(0);
            let shared: u64 = layers.iter().filter(|l| users.get(l).copied().unwrap_or(0) > 1).map(size_of).sum();
            let total: u64 = layers.iter().map(size_of).sum();
            serde_json::json!({
                "Repository": r.repository.clone().unwrap_or_else(|| "<none>".into()),
                "Tag": r.tag.clone().unwrap_or_else(|| "<none>".into()),
                "ID": crate::cmd::image::listing::short_id(&r.id, false),
                "CreatedSince": crate::cmd::image::listing::ago_of(&r.created),
                "Size": human_size(total),
                "SharedSize": human_size(shared),
                "UniqueSize": human_size(total - shared),
                "Containers": containers.iter().filter(|c| c.image_id == r.id).count().to_string(),
            })
        })
        .collect();
    crate::cmd::format::Format::parse(None, "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}")?.write(
        &mut out,
        &[("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"), ("CreatedSince", "CREATED"), ("Size", "SIZE"), ("SharedSize", "SHARED SIZE"), ("UniqueSize", "UNIQUE SIZE"), ("Containers", "CONTAINERS")],
        &image_rows,
    )?;
    writeln!(out, "\nContainers space usage:\n")?;
    let container_rows: Vec<serde_json::Value> = containers
        .iter()
        .map(|c| serde_json::json!({"ID": &c.id[..12.min(c.id.len())], "Image": c.image, "Command": format!("{:?}", c.command.join(" ")), "Size": human_size(container_size(&c.id)), "CreatedSince": crate::cmd::image::listing::ago_of(&c.created), "Status": format!("{:?}", c.status), "Names": c.name}))
        .collect();
    crate::cmd::format::Format::parse(None, "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Size}}\t{{.CreatedSince}}\t{{.Status}}\t{{.Names}}")?.write(
        &mut out,
        &[("ID", "CONTAINER ID"), ("Image", "IMAGE"), ("Command", "COMMAND"), ("Size", "SIZE"), ("CreatedSince", "CREATED"), ("Status", "STATUS"), ("Names", "NAMES")],
        &container_rows,
    )?;
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    let volume_rows: Vec<serde_json::Value> = volume_list.iter().map(|v| serde_json::json!({"Name": v.name, "Size": human_size(volume_size(&v.name))})).collect();
    crate::cmd::format::Format::parse(None, "table {{.Name}}\t{{.Size}}")?.write(&mut out, &[("Name", "VOLUME NAME"), ("Size", "SIZE")], &volume_rows)?;
    writeln!(out, "\nBuild cache usage: {}\n", human_size(cache_size))?;
    let cache_rows: Vec<serde_json::Value> =
        cache.entries.iter().map(|e| serde_json::json!({"ID": &e.key[..12.min(e.key.len())], "Size": human_size(e.size), "Description": e.description})).collect();
    crate::cmd::format::Format::parse(None, "table {{.ID}}\t{{.Size}}\t{{.Description}}")?.write(&mut out, &[("ID", "CACHE ID"), ("Size", "SIZE"), ("Description", "DESCRIPTION")], &cache_rows)?;
    Ok(ExitCode::SUCCESS)
}

