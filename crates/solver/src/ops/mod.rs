//! The ops, one module each as BuildKit's are: every module computes its op's cache key next to
//! the code that runs it. The scheduler (`solve`) only orders steps, probes the cache with
//! [`probe`] and calls into these modules.

pub mod exec;
pub mod file;
pub mod git;
pub mod http;
pub mod image;
pub mod local;
pub mod merge;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use graph::{Definition, Op, VertexDigest};

use crate::cache::{CacheIndex, CacheKey, CacheRecord, KeyHasher, LayerRef, Snapshot, now_secs};
use crate::cancel::Cancel;
use crate::error::{Result, SolveError};
use crate::progress::ProgressSink;
use crate::provenance::Provenance;
use local::{LocalSource, StatCaches};

/// What one vertex produced.
#[derive(Clone)]
pub enum Output {
    /// `created`: when the step's result was first made (seconds since the epoch; 0 for
    /// scratch and base images), so a cached rebuild writes the same image.
    Snapshot { snapshot: Snapshot, new_layers: usize, created: u64 },
    Local(LocalSource),
    /// A downloaded file in a directory of its own.
    Http { dir: PathBuf, file: String },
}

#[derive(Clone)]
pub struct Solved {
    pub key: CacheKey,
    pub output: Output,
    /// What went into the key (exec, file and merge steps): for explanations and cache export.
    pub provenance: Option<Arc<Provenance>>,
}

impl Solved {
    fn from_record(key: CacheKey, rec: CacheRecord) -> Solved {
        Solved { key, output: Output::Snapshot { snapshot: rec.snapshot, new_layers: rec.new_layers, created: rec.created }, provenance: rec.provenance.map(Arc::new) }
    }
}

/// The one cache probe: the recorded result of `key`, unless the step ignores the cache
/// (`--no-cache`, `--no-cache-filter`).
pub(crate) fn probe(index: &CacheIndex, key: &CacheKey, ignore_cache: bool) -> Option<Solved> {
    if ignore_cache {
        return None;
    }
    index.get(key).map(|rec| Solved::from_record(*key, rec))
}

/// What a step gets from the build that runs it.
pub(crate) struct StepCtx<'a> {
    pub index: &'a CacheIndex,
    /// The step's name for messages (`[build 2/4] RUN make`).
    pub step: &'a str,
    pub vertex: VertexDigest,
    pub secrets: &'a HashMap<String, Vec<u8>>,
    /// The build's ssh agent sockets by id.
    pub ssh: &'a HashMap<String, PathBuf>,
    pub cancel: &'a Cancel,
    pub progress: &'a ProgressSink,
    pub exec_helper: Option<&'a [String]>,
    pub stat: &'a StatCaches,
    pub def: &'a Definition,
    /// The step's stable id (see [`Provenance::step`]); empty for internal steps.
    pub step_id: &'a str,
    /// The imported cache lazy layers are fetched from.
    pub cache_from: Option<&'a dyn crate::remote::CacheSource>,
}

impl StepCtx<'_> {
    /// The layer directories of `s`, bottom first, fetching layers of imported cache results
    /// that are not on this machine yet: this is where a lazy layer becomes files.
    fn layer_dirs(&self, s: &Snapshot) -> Result<Vec<PathBuf>> {
        crate::remote::materialize(self.index, self.cache_from, s)?;
        Ok(s.layers.iter().map(|l| self.index.abs(&l.dir)).collect())
    }
}

/// The cache key of an exec, file or merge step — the op itself, the keys of its inputs, and
/// what the op reads from local sources (by content) — with its [`Provenance`].
pub(crate) fn cache_key(ctx: &StepCtx<'_>, op: &Op, inputs: &[Solved]) -> Result<(CacheKey, Provenance)> {
    let mut h = KeyHasher::new();
    let op_json = serde_json::to_vec(op).map_err(|e| SolveError::CacheKey { step: ctx.step.into(), message: e.to_string() })?;
    h.field("op", &op_json);
    let vertex = ctx.def.vertices.get(&ctx.vertex);
    let mut prov = Provenance { step: ctx.step_id.to_string(), description: ctx.step.to_string(), inputs: Default::default() };
    prov.inputs.insert("op".into(), crate::provenance::digest_of(&op_json));
    for (k, v) in vertex.map(|v| &v.meta.build_args).into_iter().flatten() {
        prov.inputs.insert(format!("arg:{k}"), v.clone());
    }
    let names = vertex.map(|v| crate::provenance::input_names(ctx.def, &v.inputs)).unwrap_or_default();
    for (i, inp) in inputs.iter().enumerate() {
        match &inp.output {
            // A local source counts by the content of what is read from it (below).
            Output::Local(_) => h.field("input-local", &(i as u64).to_le_bytes()),
            _ => h.field("input", &inp.key.0),
        };
        if let Some(Some(name)) = names.get(i) {
            let digest = match vertex.and_then(|v| v.inputs.get(i)).and_then(|d| ctx.def.vertices.get(d)).map(|v| &v.op) {
                Some(Op::Image(img)) => img.manifest_digest.clone(),
                _ => inp.key.hex(),
            };
            prov.inputs.insert(name.clone(), digest);
        }
    }
    match op {
        Op::File(f) => file::add_to_key(ctx, f, inputs, &mut h, &mut prov)?,
        Op::Exec(e) => exec::add_to_key(ctx, e, inputs, &mut h, &mut prov)?,
        _ => {}
    }
    Ok((h.finish(), prov))
}

/// Runs an exec, file or merge step whose key missed the cache, and records its result.
pub(crate) fn execute(ctx: &StepCtx<'_>, key: CacheKey, prov: &Provenance, op: &Op, inputs: &[Solved]) -> Result<Solved> {
    if ctx.cancel.is_cancelled() {
        return Err(SolveError::Cancelled);
    }
    match op {
        Op::Merge => merge::execute(ctx, key, prov, inputs),
        Op::File(f) => {
            let work = ctx.index.work_dir()?;
            let base = snapshot_of(ctx.step, inputs, 0)?.clone();
            let layer = file::execute(ctx, f, inputs, work.path())?;
            commit(ctx, key, prov, base, Some(layer))
        }
        Op::Exec(e) => {
            let work = ctx.index.work_dir()?;
            let base = snapshot_of(ctx.step, inputs, 0)?.clone();
            let upper = exec::execute(ctx, e, inputs, work.path())?;
            commit(ctx, key, prov, base, Some(upper))
        }
        _ => Err(SolveError::step(ctx.step, "not an executable op")),
    }
}

/// The filesystem of input `i`.
pub(crate) fn snapshot_of<'a>(step: &str, inputs: &'a [Solved], i: usize) -> Result<&'a Snapshot> {
    match inputs.get(i).map(|s| &s.output) {
        Some(Output::Snapshot { snapshot, .. }) => Ok(snapshot),
        _ => Err(SolveError::step(step, format!("input {i} is not a filesystem"))),
    }
}

/// Input `i` when it is a local source.
pub(crate) fn local_of(inputs: &[Solved], i: usize) -> Option<&LocalSource> {
    match inputs.get(i).map(|s| &s.output) {
        Some(Output::Local(l)) => Some(l),
        _ => None,
    }
}

/// Records a step's result: `base` plus the layer in `layer_dir` (none when it changed nothing).
fn commit(ctx: &StepCtx<'_>, key: CacheKey, prov: &Provenance, base: Snapshot, layer_dir: Option<PathBuf>) -> Result<Solved> {
    let finishing = Instant::now();
    let mut snapshot = base.clone();
    let mut new_layers = 0;
    let mut size = 0;
    if let Some(dir) = layer_dir {
        let lowers = ctx.layer_dirs(&base)?;
        if !snapshot::diff::is_empty_diff(&dir, &lowers)? {
            size = crate::cache::dir_size(&dir);
            let rel = ctx.index.commit_layer(&key, &dir)?;
            snapshot.layers.push(LayerRef { dir: rel, blob: None });
            new_layers = 1;
        }
    }
    let created = now_secs();
    ctx.index.put(&key, &CacheRecord { snapshot: snapshot.clone(), new_layers, size, description: ctx.step.into(), created, provenance: Some(prov.clone()) })?;
    ctx.index.remember_step(&key, prov);
    tracing::debug!(step = ctx.step, new_layers, size, commit_ms = finishing.elapsed().as_millis() as u64, "step committed to the cache");
    Ok(Solved { key, output: Output::Snapshot { snapshot, new_layers, created }, provenance: Some(Arc::new(prov.clone())) })
}
