//! Export: the final snapshot and the image spec become an image in the store (config,
//! manifest, layer blobs), or a plain directory / tarball of the filesystem.

use std::collections::HashMap;
use std::path::Path;

use graph::VertexDigest;
use graph::image::{History, ImageSpec};
use serde::Serialize;
use snapshot::diff::{Compression, DiffOptions};

use crate::cache::{BlobDesc, CacheIndex, Snapshot};
use crate::error::{Result, SolveError};
use crate::ops::{Output, Solved};

#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub compression: Compression,
    pub source_date_epoch: Option<i64>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct ExportedImage {
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub layers: Vec<BlobDesc>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    /// MAINTAINER, as BuildKit writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    os: &'a str,
    config: &'a graph::image::ContainerConfig,
    rootfs: RootFs<'a>,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Desc<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Desc<'a>,
    layers: Vec<Desc<'a>>,
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The blob of every layer of `snapshot`, making (and remembering) the ones not made yet.
pub fn layer_blobs(index: &CacheIndex, store: &oci::Store, snapshot: &Snapshot, opts: &ExportOptions, note: &dyn Fn(String)) -> Result<Vec<BlobDesc>> {
    let tag = match opts.source_date_epoch {
        Some(e) => format!("{}-sde{e}", opts.compression.name()),
        None => opts.compression.name().to_string(),
    };
    // Known blobs first; the rest are made below, several at once.
    let mut out: Vec<Option<BlobDesc>> = Vec::with_capacity(snapshot.layers.len());
    for l in &snapshot.layers {
        if let Some(b) = &l.blob {
            out.push(Some(b.clone()));
            continue;
        }
        let known = index.layer_blob(&l.dir, &tag).filter(|b| b.digest.parse::<oci::Digest>().is_ok_and(|d| store.has_blob(&d)));
        out.push(known);
    }
    let missing: Vec<usize> = (0..out.len()).filter(|i| out[*i].is_none()).collect();
    // Each layer is compressed on several cores already; two layers at once overlap their I/O.
    let workers = missing.len().clamp(1, 2);
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Per layer index: its blob and the progress note about it.
    type Made = Vec<(usize, Result<(BlobDesc, String)>)>;
    let made: std::sync::Mutex<Made> = std::sync::Mutex::new(Vec::new());
    let make = |i: usize| -> Result<(BlobDesc, String)> {
        let l = &snapshot.layers[i];
        let dir = index.abs(&l.dir);
        let lowers: Vec<_> = snapshot.layers[..i].iter().rev().map(|l| index.abs(&l.dir)).collect();
        let started = std::time::Instant::now();
        let mut w = store.blob_writer().map_err(|e| SolveError::Other(format!("writing layer blob: {e}")))?;
        let diff_opts = DiffOptions { compression: opts.compression, source_date_epoch: opts.source_date_epoch, lowers, ..Default::default() };
        let b = if opts.compression == Compression::Uncompressed {
            // The blob is the tar: the store's writer hashes it once, and that is the diffID.
            let (w, _) = snapshot::diff::write_tar_unhashed(&dir, w, &diff_opts)?;
            let info = w.commit(None).map_err(|e| SolveError::Other(format!("storing layer blob of {}: {e}", dir.display())))?;
            let digest = info.digest.to_string();
            BlobDesc { diff_id: digest.clone(), digest, size: info.size, media_type: Compression::Uncompressed.media_type().to_string() }
        } else {
            let diff = snapshot::diff::write_layer(&dir, &mut w, &diff_opts)?;
            let digest: oci::Digest = diff.digest.parse().map_err(|e| SolveError::Other(format!("{e}")))?;
            w.commit(Some(&digest)).map_err(|e| SolveError::Other(format!("storing layer blob {digest}: {e}")))?;
            BlobDesc { digest: diff.digest.clone(), size: diff.size, media_type: diff.media_type().to_string(), diff_id: diff.diff_id.clone() }
        };
        index.set_layer_blob(&l.dir, &tag, &b)?;
        Ok((b.clone(), format!("exporting layer {} {:.1}s", &b.digest[..19], started.elapsed().as_secs_f64())))
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(&i) = missing.get(n) else { break };
                    let r = make(i);
                    if let Ok(mut m) = made.lock() {
                        m.push((i, r));
                    }
                }
            });
        }
    });
    let mut made = made.into_inner().unwrap_or_else(|p| p.into_inner());
    made.sort_by_key(|(i, _)| *i);
    for (i, r) in made {
        let (b, message) = r?;
        note(message);
        out[i] = Some(b);
    }
    out.into_iter().enumerate().map(|(i, b)| b.ok_or_else(|| SolveError::Other(format!("layer {i} was not exported")))).collect()
}

/// Writes the image (layers, config, manifest) to the store. `new_layers` says, per vertex,
/// how many layers it added, to mark history entries `empty_layer`.
pub fn export_image(
    index: &CacheIndex,
    store: &oci::Store,
    snapshot: &Snapshot,
    spec: &ImageSpec,
    new_layers: &HashMap<VertexDigest, usize>,
    opts: &ExportOptions,
    note: &dyn Fn(String),
) -> Result<ExportedImage> {
    export_image_with_times(index, store, snapshot, spec, new_layers, &HashMap::new(), opts, note)
}

/// Like [`export_image`], with the time each vertex's result was first made (`Output::Snapshot`'s
/// `created`): history entries and the config's `created` take those times, so rebuilding from
/// the cache gives the very same image.
#[allow(clippy::too_many_arguments)]
pub fn export_image_with_times(
    index: &CacheIndex,
    store: &oci::Store,
    snapshot: &Snapshot,
    spec: &ImageSpec,
    new_layers: &HashMap<VertexDigest, usize>,
    made_at: &HashMap<VertexDigest, u64>,
    opts: &ExportOptions,
    note: &dyn Fn(String),
) -> Result<ExportedImage> {
    let blobs = layer_blobs(index, store, snapshot, opts, note)?;
    // Each step's time: its vertex's, else the previous step's, else the next known one.
    let known: Vec<Option<i64>> = spec.steps.iter().map(|s| s.vertex.and_then(|v| made_at.get(&v)).filter(|t| **t > 0).map(|t| *t as i64)).collect();
    let first_known = known.iter().flatten().next().copied();
    let mut times = Vec::with_capacity(known.len());
    let mut last = first_known;
    for k in &known {
        if k.is_some() {
            last = *k;
        }
        times.push(last);
    }
    let latest = times.iter().flatten().max().copied();
    let created_secs = opts.source_date_epoch.or(latest).unwrap_or_else(now_secs);
    let created = rfc3339(created_secs);
    let mut history = spec.base_history.clone();
    if let Some(epoch) = opts.source_date_epoch {
        // Inherited entries newer than the epoch are clamped too, so the config is reproducible.
        for h in &mut history {
            if let Some(c) = &h.created
                && chrono::DateTime::parse_from_rfc3339(c).map(|t| t.timestamp() > epoch).unwrap_or(false) {
                    h.created = Some(rfc3339(epoch));
                }
        }
    }
    for (i, step) in spec.steps.iter().enumerate() {
        let added = step.vertex.and_then(|v| new_layers.get(&v).copied()).unwrap_or(0);
        let when = match opts.source_date_epoch {
            Some(_) => created.clone(),
            None => times[i].map(rfc3339).unwrap_or_else(|| created.clone()),
        };
        history.push(History {
            created: Some(when),
            created_by: Some(step.created_by.clone()),
            author: None,
            comment: step.comment.clone(),
            empty_layer: added == 0,
        });
    }
    let config = ConfigFile {
        created: Some(created),
        author: spec.author.as_deref().filter(|a| !a.is_empty()),
        architecture: &spec.architecture,
        variant: spec.variant.as_deref(),
        os: &spec.os,
        config: &spec.config,
        rootfs: RootFs { kind: "layers", diff_ids: blobs.iter().map(|b| b.diff_id.clone()).collect() },
        history,
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|e| SolveError::Other(format!("encoding image config: {e}")))?;
    let cfg = store.put_bytes(&config_bytes).map_err(|e| SolveError::Other(format!("storing image config: {e}")))?;
    let cfg_digest = cfg.digest.to_string();
    let manifest = Manifest {
        schema_version: 2,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        config: Desc { media_type: "application/vnd.oci.image.config.v1+json", digest: &cfg_digest, size: cfg.size },
        layers: blobs.iter().map(|b| Desc { media_type: &b.media_type, digest: &b.digest, size: b.size }).collect(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| SolveError::Other(format!("encoding manifest: {e}")))?;
    let m = store.put_bytes(&manifest_bytes).map_err(|e| SolveError::Other(format!("storing manifest: {e}")))?;
    Ok(ExportedImage { manifest_digest: m.digest.to_string(), manifest_size: m.size, config_digest: cfg_digest, layers: blobs })
}

/// Copies the merged filesystem of `snapshot` into `dest` (`--output type=local`).
pub fn export_local(index: &CacheIndex, snapshot: &Snapshot, dest: &Path) -> Result<()> {
    let work = index.work_dir()?;
    let layers: Vec<_> = snapshot.layers.iter().map(|l| index.abs(&l.dir)).collect();
    let view = crate::view::View::open(&layers, &work.path().join("view"))?;
    std::fs::create_dir_all(dest).map_err(SolveError::io("create", dest))?;
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg("--no-preserve=ownership")
        .arg(format!("{}/.", view.path().display()))
        .arg(dest)
        .status()
        .map_err(SolveError::io("run cp into", dest))?;
    if !st.success() {
        return Err(SolveError::Other(format!("copying the result into {} failed", dest.display())));
    }
    // A single-layer view is the layer itself: drop whiteout devices it may hold.
    Ok(())
}

/// Writes the merged filesystem of `snapshot` as a tar stream (`--output type=tar`).
pub fn export_tar(index: &CacheIndex, snapshot: &Snapshot, out: impl std::io::Write + Send, epoch: Option<i64>) -> Result<()> {
    let work = index.work_dir()?;
    let layers: Vec<_> = snapshot.layers.iter().map(|l| index.abs(&l.dir)).collect();
    let view = crate::view::View::open(&layers, &work.path().join("view"))?;
    snapshot::diff::write_layer(view.path(), out, &DiffOptions { compression: Compression::Uncompressed, source_date_epoch: epoch, ..Default::default() })?;
    Ok(())
}

/// The entries a cache export (`--cache-to …,mode=min|max`) carries after a solve — with `Min`
/// the target and the steps it is built on, with `Max` every exec, file and merge step the
/// build ran or found cached, of every stage — each with its layer chain as blobs in
/// `opts.compression`. A layer is compressed once: an image exported with the same options has
/// made its blobs already, so exporting the cache after the image makes (and uploads) nothing
/// twice. Layers of imported results stay blobs (nothing is fetched).
pub fn cache_entries(
    index: &CacheIndex,
    store: &oci::Store,
    def: &graph::Definition,
    solved: &HashMap<VertexDigest, Solved>,
    target: VertexDigest,
    (mode, opts): (remote_cache::Mode, &ExportOptions),
    note: &dyn Fn(String),
) -> Result<Vec<remote_cache::CacheEntry>> {
    let is_step = |d: &VertexDigest| def.vertices.get(d).is_some_and(|v| matches!(v.op, graph::Op::Exec(_) | graph::Op::File(_) | graph::Op::Merge));
    let mut chosen: Vec<VertexDigest> = match mode {
        remote_cache::Mode::Min => {
            let mut chain = Vec::new();
            let mut at = Some(target);
            while let Some(d) = at.filter(|d| is_step(d)) {
                chain.push(d);
                at = def.vertices.get(&d).and_then(|v| v.inputs.first().copied());
            }
            chain
        }
        remote_cache::Mode::Max => solved.keys().filter(|d| is_step(d)).copied().collect(),
    };
    chosen.sort();
    let mut out = Vec::new();
    for d in chosen {
        let Some(Solved { key, output: Output::Snapshot { snapshot, created, .. }, provenance: Some(prov) }) = solved.get(&d) else { continue };
        let layers = layer_blobs(index, store, snapshot, opts, note)?.iter().map(layer_blob).collect::<Result<Vec<_>>>()?;
        out.push(remote_cache::CacheEntry { key: key.hex(), layers, provenance: (**prov).clone(), created: *created });
    }
    Ok(out)
}

/// A layer as the cache artifact names it.
fn layer_blob(b: &BlobDesc) -> Result<remote_cache::LayerBlob> {
    let parse = |d: &str| d.parse::<oci::Digest>().map_err(|e| SolveError::Other(format!("layer digest {d:?}: {e}")));
    Ok(remote_cache::LayerBlob { digest: parse(&b.digest)?, diff_id: parse(&b.diff_id)?, size: b.size, media_type: b.media_type.clone() })
}
