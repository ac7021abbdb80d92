//! `builder images` as Docker lists them: `--filter` (dangling, reference, label, before,
//! since), `--format` (Go templates, `table …`, `json`), `--digests`, `--no-trunc`, `-q`, and
//! SIZE as the unpacked size of the layers.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use oci::{Digest, LocalImage, Reference, Store};

use super::table::{ago, human_size};
use crate::cmd::format::Format;

/// One image as `--format` sees it: Docker's field names.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub repository: Option<String>,
    pub tag: Option<String>,
    /// `sha256:…`
    pub id: String,
    pub digest: Option<String>,
    /// RFC 3339.
    pub created: String,
    pub size: u64,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl ImageRow {
    fn json(&self, no_trunc: bool) -> serde_json::Value {
        let created = chrono::DateTime::parse_from_rfc3339(&self.created).ok();
        serde_json::json!({
            "Containers": "N/A",
            "CreatedAt": created.map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
            "CreatedSince": ago(&self.created),
            "Digest": self.digest.clone().unwrap_or_else(|| "<none>".into()),
            "ID": short_id(&self.id, no_trunc),
            "Repository": self.repository.clone().unwrap_or_else(|| "<none>".into()),
            "SharedSize": "N/A",
            "Size": human_size(self.size),
            "Tag": self.tag.clone().unwrap_or_else(|| "<none>".into()),
            "UniqueSize": "N/A",
            "VirtualSize": human_size(self.size),
        })
    }
}

/// `sha256:0123456789ab…` as Docker shows an image ID: 12 hex digits, or all of it with --no-trunc.
pub fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        return id.to_string();
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Column titles of the `images` fields.
pub const TITLES: &[(&str, &str)] = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// How `images` prints.
pub struct ListOptions<'a> {
    pub quiet: bool,
    pub format: Option<&'a str>,
    pub digests: bool,
    pub no_trunc: bool,
}

/// Every image of the local store: one row per tag, and one per dangling image.
pub fn local_rows(store: &Store) -> anyhow::Result<Vec<ImageRow>> {
    let mut rows = Vec::new();
    let tagged = store.list()?.into_iter().map(|(r, d)| (Some(r), d));
    let dangling = store.dangling()?.into_iter().map(|d| (None, d));
    for (reference, desc) in tagged.chain(dangling) {
        let image = match store.image_from_descriptor(&desc) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("skipping {}: {e}", reference.as_ref().map(|r| r.to_string()).unwrap_or_else(|| desc.digest().to_string()));
                continue;
            }
        };
        rows.push(row_of(store, reference.as_ref(), &image));
    }
    Ok(rows)
}

pub fn row_of(store: &Store, reference: Option<&Reference>, image: &LocalImage) -> ImageRow {
    ImageRow {
        repository: reference.map(|r| r.familiar_name()),
        tag: reference.map(|r| r.tag().unwrap_or("<none>").to_string()),
        id: image.id().to_string(),
        digest: Some(image.repo_digest.clone().unwrap_or_else(|| image.manifest_digest.clone()).to_string()),
        created: image.config.created().clone().unwrap_or_default(),
        size: unpacked_size(store, image),
        labels: image.config.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default().into_iter().collect(),
    }
}

/// The `--filter` of `images`: every key must match; values of one key are alternatives.
#[derive(Default, Debug)]
pub struct Filters {
    dangling: Option<bool>,
    references: Vec<globset::GlobMatcher>,
    labels: Vec<(String, Option<String>)>,
    before: Option<String>,
    since: Option<String>,
}

impl Filters {
    /// Parses `-f key=value` flags; `resolve` gives the creation time of an image named by
    /// `before`/`since`.
    pub fn parse(flags: &[String], resolve: impl Fn(&str) -> anyhow::Result<String>) -> anyhow::Result<Filters> {
        let mut f = Filters::default();
        for flag in flags {
            let Some((key, value)) = flag.split_once('=') else { bail!("bad format of filter {flag:?} (expected name=value)") };
            match key {
                "dangling" => {
                    f.dangling = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("invalid filter 'dangling={value}': dangling is true or false"),
                    })
                }
                "reference" => {
                    let glob = globset::GlobBuilder::new(value).literal_separator(true).build().with_context(|| format!("invalid filter 'reference={value}'"))?;
                    f.references.push(glob.compile_matcher());
                }
                "label" => f.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                }),
                "before" => f.before = Some(resolve(value).with_context(|| format!("filter before={value}"))?),
                "since" => f.since = Some(resolve(value).with_context(|| format!("filter since={value}"))?),
                _ => bail!("invalid filter '{key}' (images take dangling, reference, label, before, since)"),
            }
        }
        Ok(f)
    }

    pub fn matches(&self, row: &ImageRow) -> bool {
        if let Some(d) = self.dangling
            && d != row.repository.is_none() {
                return false;
            }
        if !self.references.is_empty() {
            let Some(repo) = &row.repository else { return false };
            let full = format!("{repo}:{}", row.tag.as_deref().unwrap_or(""));
            if !self.references.iter().any(|g| g.is_match(repo) || g.is_match(&full)) {
                return false;
            }
        }
        for (k, v) in &self.labels {
            match (row.labels.get(k), v) {
                (None, _) => return false,
                (Some(have), Some(want)) if have != want => return false,
                _ => {}
            }
        }
        let created = || chrono::DateTime::parse_from_rfc3339(&row.created).ok();
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
        if let Some(b) = &self.before
            && !matches!((created(), at(b)), (Some(c), Some(b)) if c < b) {
                return false;
            }
        if let Some(s) = &self.since
            && !matches!((created(), at(s)), (Some(c), Some(s)) if c > s) {
                return false;
            }
        true
    }
}

/// Prints the rows, newest first: IDs (`-q`), or the table / template of `--format`.
pub fn print(mut rows: Vec<ImageRow>, opts: &ListOptions<'_>) -> anyhow::Result<()> {
    rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.repository.cmp(&b.repository)).then(a.tag.cmp(&b.tag)));
    let mut out = std::io::stdout().lock();
    if opts.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(&r.id) {
                writeln!(out, "{}", short_id(&r.id, opts.no_trunc))?;
            }
        }
        return Ok(());
    }
    let default = if opts.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let format = Format::parse(opts.format, default)?;
    let json: Vec<serde_json::Value> = rows.iter().map(|r| r.json(opts.no_trunc)).collect();
    format.write(&mut out, TITLES, &json)
}

/// The size Docker shows for an image: the bytes of the files its layers unpack to (not the
/// compressed blobs). Each layer's count is kept in `<root>/sizes/` after the first time.
pub fn unpacked_size(store: &Store, image: &LocalImage) -> u64 {
    image.layers().unwrap_or_default().iter().map(|(d, compressed)| layer_size(store, d).unwrap_or(*compressed)).sum()
}

/// The unpacked size of one layer blob (regular files' bytes).
pub fn layer_size(store: &Store, layer: &Digest) -> Option<u64> {
    let dir = store.root().join("sizes");
    let path = dir.join(layer.hex());
    if let Some(n) = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()) {
        return Some(n);
    }
    let blob = store.open_blob(layer).ok()?;
    let n = count_tar_bytes(blob).ok()?;
    // A cache only: a failed write costs a recount next time.
    let _ = write_atomic(&dir, &path, n.to_string().as_bytes());
    Some(n)
}

fn count_tar_bytes(blob: impl Read) -> std::io::Result<u64> {
    let mut archive = tar::Archive::new(snapshot::unpack::decompress(std::io::BufReader::new(blob))?);
    let mut total = 0;
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            total += entry.header().size()?;
        }
    }
    Ok(total)
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// "3 minutes ago" of an RFC 3339 time, as the tables show creation.
pub fn ago_of(rfc3339: &str) -> String {
    ago(rfc3339)
}
