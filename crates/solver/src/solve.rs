//! The scheduler: runs every vertex whose inputs are ready, up to the parallelism limit, looks
//! each up in the cache first, and stops everything on the first failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use graph::{Definition, MountKind, Op, Vertex, VertexDigest};

use crate::cache::{CacheIndex, CacheKey, CacheRecord, LayerRef, Snapshot};
use crate::cancel::Cancel;
use crate::error::{Result, SolveError};
use crate::ops::local::StatCaches;
use crate::ops::{self, StepCtx, image, local};
use crate::progress::{Event, ProgressSink};
use crate::remote::CacheSource;
use crate::provenance::{Explanation, Provenance};

pub use crate::ops::image::ImageSource;
pub use crate::ops::{Output, Solved};

/// A request to build some vertices of a definition.
pub struct SolveRequest<'a> {
    pub definition: &'a Definition,
    pub targets: Vec<VertexDigest>,
    /// Local sources by name (`context`, named contexts).
    pub locals: HashMap<String, PathBuf>,
    pub secrets: HashMap<String, Vec<u8>>,
    pub max_parallelism: usize,
    pub progress: ProgressSink,
    pub cancel: Arc<Cancel>,
    /// An imported cache (`--cache-from`), consulted after a local miss; its hits download
    /// nothing until something needs their files (see [`crate::remote`]).
    pub cache_from: Option<Arc<dyn CacheSource>>,
}

/// What the user starting a build lends it beyond the definition, as BuildKit's session and
/// entitlements do: ssh agents (`--ssh`) and `--allow security.insecure`. Like secrets, none
/// of it is part of a cache key.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// Agents by id, for `RUN --mount=type=ssh,id=…` and `git@` sources (`default`).
    pub ssh: HashMap<String, crate::ssh::SshSource>,
    /// `RUN --security=insecure` may run.
    pub allow_insecure: bool,
}

/// The agent sockets of one solve by ssh id (key files get an agent started for the solve).
struct SshAgents {
    sockets: HashMap<String, PathBuf>,
    _started: Vec<crate::ssh::KeyAgent>,
    /// Where started agents keep their sockets (locked, so no other build cleans it up).
    _work: Option<crate::cache::WorkDir>,
}

/// What one solve shares between its workers.
struct Build {
    /// Stable step ids of the described vertices (see [`Provenance::step`]).
    step_ids: HashMap<VertexDigest, String>,
    /// Vertices that ran (missed the cache) in this solve, for "the step before it ran".
    ran: Mutex<HashSet<VertexDigest>>,
    /// Vertices whose result came from the imported cache.
    imported: Mutex<HashSet<VertexDigest>>,
}

/// The command that runs one sandbox bundle from a fresh, single-threaded process: the
/// `builder` binary's hidden `__build-exec BUNDLE` command. Creating a container clones the
/// calling process, which is only safe when no other thread of it can hold a lock.
pub const DEFAULT_EXEC_HELPER: [&str; 2] = ["/proc/self/exe", "__build-exec"];

/// A step being computed by one build; other builds wait on it for the result (or its error).
type InFlight = Arc<(Mutex<Option<std::result::Result<Solved, String>>>, Condvar)>;

/// The solver of one state root. Share one per process: identical vertices requested by
/// concurrent builds run once.
pub struct Solver {
    index: CacheIndex,
    images: Arc<dyn ImageSource>,
    stat: StatCaches,
    inflight: Mutex<HashMap<CacheKey, InFlight>>,
    exec_helper: Option<Vec<String>>,
}

impl Solver {
    pub fn new(state_root: &Path, images: Arc<dyn ImageSource>) -> Result<Solver> {
        let index = CacheIndex::open(state_root)?;
        index.clean_tmp();
        Ok(Solver {
            index,
            images,
            stat: StatCaches::default(),
            inflight: Mutex::new(HashMap::new()),
            // The runtime starts containers safely from a multi-threaded process: no helper.
            exec_helper: None,
        })
    }

    /// Sets a command RUN sandboxes are started from (see [`DEFAULT_EXEC_HELPER`]); `None`, the
    /// default, starts them from this process (saving an exec per RUN).
    pub fn set_exec_helper(&mut self, helper: Option<Vec<String>>) {
        self.exec_helper = helper;
    }

    pub fn index(&self) -> &CacheIndex {
        &self.index
    }

    /// Builds the targets; returns every solved vertex. On failure every running step is killed
    /// and the first error is returned.
    pub fn solve(&self, req: &SolveRequest<'_>) -> Result<HashMap<VertexDigest, Solved>> {
        self.solve_with(req, &Grants::default())
    }

    /// [`Solver::solve`] with what the user lends the build (ssh agents, entitlements). Steps
    /// that need something not granted fail before anything runs, naming the step.
    pub fn solve_with(&self, req: &SolveRequest<'_>, grants: &Grants) -> Result<HashMap<VertexDigest, Solved>> {
        req.definition.validate()?;
        let order = req.definition.topo_order(&req.targets);
        let ssh = self.check_grants(req.definition, &order, grants)?;
        let ssh = &ssh;
        let _shared = self.index.lock_shared()?;
        let build = Build { step_ids: crate::provenance::step_ids(req.definition, &order), ran: Mutex::default(), imported: Mutex::default() };
        let build = &build;
        let mut pending: HashMap<VertexDigest, usize> = HashMap::new();
        let mut dependents: HashMap<VertexDigest, Vec<VertexDigest>> = HashMap::new();
        let mut ready = VecDeque::new();
        for d in &order {
            let v = &req.definition.vertices[d];
            let mut uniq = v.inputs.clone();
            uniq.sort();
            uniq.dedup();
            pending.insert(*d, uniq.len());
            for i in &uniq {
                dependents.entry(*i).or_default().push(*d);
            }
            if uniq.is_empty() {
                ready.push_back(*d);
            }
        }
        struct State {
            ready: VecDeque<VertexDigest>,
            pending: HashMap<VertexDigest, usize>,
            done: HashMap<VertexDigest, Solved>,
            running: usize,
            error: Option<SolveError>,
            total: usize,
        }
        let state = Mutex::new(State { ready, pending, done: HashMap::new(), running: 0, error: None, total: order.len() });
        let cv = Condvar::new();
        let workers = req.max_parallelism.max(1).min(order.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let (d, inputs) = {
                            let mut st = match state.lock() {
                                Ok(g) => g,
                                Err(p) => p.into_inner(),
                            };
                            loop {
                                if st.error.is_some() || st.done.len() == st.total {
                                    return;
                                }
                                if req.cancel.is_cancelled() {
                                    st.error.get_or_insert(SolveError::Cancelled);
                                    cv.notify_all();
                                    return;
                                }
                                if let Some(d) = st.ready.pop_front() {
                                    st.running += 1;
                                    let v = &req.definition.vertices[&d];
                                    let inputs: Vec<Solved> = v.inputs.iter().map(|i| st.done[i].clone()).collect();
                                    break (d, inputs);
                                }
                                st = match cv.wait_timeout(st, std::time::Duration::from_millis(200)) {
                                    Ok((g, _)) => g,
                                    Err(p) => p.into_inner().0,
                                };
                            }
                        };
                        let v = &req.definition.vertices[&d];
                        let result = self.solve_vertex(req, ssh, build, d, v, &inputs);
                        let mut st = match state.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        st.running -= 1;
                        match result {
                            Ok(solved) => {
                                st.done.insert(d, solved);
                                for dep in dependents.get(&d).into_iter().flatten() {
                                    if let Some(n) = st.pending.get_mut(dep) {
                                        *n -= 1;
                                        if *n == 0 {
                                            st.ready.push_back(*dep);
                                        }
                                    }
                                }
                            }
                            Err(e) => {
                                if st.error.is_none() {
                                    st.error = Some(e.at(d));
                                }
                                // First failure: stop everything else that runs.
                                req.cancel.cancel();
                            }
                        }
                        cv.notify_all();
                    }
                });
            }
        });
        self.stat.save(&self.index);
        let st = match state.into_inner() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = st.error {
            return Err(e);
        }
        self.record_imports(build, &st.done);
        Ok(st.done)
    }

    /// Refuses steps the grants do not cover (an insecure RUN without `--allow`, a required ssh
    /// id not given) and starts agents for the key files the steps use.
    fn check_grants(&self, def: &Definition, order: &[VertexDigest], grants: &Grants) -> Result<SshAgents> {
        let mut agents = SshAgents { sockets: HashMap::new(), _started: Vec::new(), _work: None };
        for d in order {
            let v = &def.vertices[d];
            let step = if v.meta.description.is_empty() { format!("{} {}", v.op.kind(), d.short()) } else { v.meta.description.clone() };
            let mut ids: Vec<&str> = Vec::new();
            match &v.op {
                Op::Exec(e) => {
                    if e.security == graph::Security::Insecure && !grants.allow_insecure {
                        return Err(SolveError::step(step, "RUN --security=insecure needs the security.insecure entitlement: run the build with --allow security.insecure").at(*d));
                    }
                    for m in &e.mounts {
                        if let MountKind::Ssh { id, required, .. } = &m.kind {
                            if *required && !grants.ssh.contains_key(id) {
                                return Err(SolveError::step(step, format!("ssh agent {id:?} is required by RUN --mount=type=ssh but was not given: pass --ssh {id}[=SOCKET|KEY]")).at(*d));
                            }
                            ids.push(id);
                        }
                    }
                }
                Op::Git(g) if !g.remote.contains("://") || g.remote.starts_with("ssh://") => ids.push("default"),
                _ => {}
            }
            for id in ids {
                if agents.sockets.contains_key(id) {
                    continue;
                }
                match grants.ssh.get(id) {
                    Some(crate::ssh::SshSource::Agent(p)) => {
                        agents.sockets.insert(id.to_string(), p.clone());
                    }
                    Some(crate::ssh::SshSource::Keys(keys)) => {
                        if agents._work.is_none() {
                            agents._work = Some(self.index.work_dir()?);
                        }
                        let work = agents._work.as_ref().map(|w| w.path().to_path_buf()).unwrap_or_default();
                        let agent = crate::ssh::KeyAgent::start(id, keys, &work)?;
                        agents.sockets.insert(id.to_string(), agent.socket().to_path_buf());
                        agents._started.push(agent);
                    }
                    None => {}
                }
            }
        }
        Ok(agents)
    }

    fn solve_vertex(&self, req: &SolveRequest<'_>, ssh: &SshAgents, build: &Build, d: VertexDigest, v: &Vertex, inputs: &[Solved]) -> Result<Solved> {
        let step = if v.meta.description.is_empty() { format!("{} {}", v.op.kind(), d.short()) } else { v.meta.description.clone() };
        let visible = !v.meta.description.is_empty();
        let _span = tracing::debug_span!("vertex", step = %step, digest = %d.short()).entered();
        let start = Instant::now();
        let progress = &req.progress;
        let report_start = || {
            if visible {
                progress(Event::Started { vertex: d, description: v.meta.description.clone() });
            }
        };
        let result = (|| -> Result<(Solved, bool)> {
            match &v.op {
                Op::Scratch => Ok((image::scratch(), false)),
                Op::Local(l) => Ok((local::solve(l, &req.locals, &step)?, false)),
                Op::Image(img) => {
                    report_start();
                    image::solve(&*self.images, img)
                }
                Op::Http(op) => {
                    report_start();
                    Ok((ops::http::download(&self.index, op, &step)?, false))
                }
                Op::Git(g) => {
                    report_start();
                    ops::git::checkout(&self.index, g, &step, v.meta.ignore_cache, ssh.sockets.get("default").map(PathBuf::as_path), &req.secrets, &req.cancel)
                }
                Op::Exec(_) | Op::File(_) | Op::Merge => {
                    report_start();
                    let step_id = build.step_ids.get(&d).map(String::as_str).unwrap_or_default();
                    let ctx = self.step_ctx(req, ssh, d, &step, step_id);
                    let (key, prov) = ops::cache_key(&ctx, &v.op, inputs)?;
                    if let Some(mut hit) = ops::probe(&self.index, &key, v.meta.ignore_cache) {
                        self.index.remember_step(&key, &prov);
                        hit.provenance = Some(Arc::new(prov));
                        return Ok((hit, true));
                    }
                    if let Some(hit) = self.imported_hit(req, &key, prov.clone(), v, inputs) {
                        if let Ok(mut imported) = build.imported.lock() {
                            imported.insert(d);
                        }
                        return Ok((hit, true));
                    }
                    if visible
                        && let Some(e) = self.explain_miss(req, build, v, &prov) {
                            progress(Event::CacheMiss { vertex: d, reason: e.reason, earlier: e.earlier });
                        }
                    self.run_once(&ctx, key, &prov, v, inputs)
                }
            }
        })();
        match result {
            Ok((solved, cached)) => {
                if !cached
                    && let Ok(mut ran) = build.ran.lock() {
                        ran.insert(d);
                    }
                if visible {
                    if cached {
                        progress(Event::Cached { vertex: d });
                    } else {
                        progress(Event::Done { vertex: d, elapsed: start.elapsed() });
                    }
                }
                Ok(solved)
            }
            Err(e) => {
                if visible && !matches!(e, SolveError::Cancelled) {
                    progress(Event::Failed { vertex: d, error: e.to_string(), elapsed: start.elapsed() });
                }
                Err(e)
            }
        }
    }

    /// Runs a vertex once per key: concurrent builds in this process wait for the first, other
    /// processes wait on the key's file lock and then find the record.
    /// Returns the result and whether it came from the cache (another build made it meanwhile).
    fn run_once(&self, ctx: &StepCtx<'_>, key: CacheKey, prov: &Provenance, v: &Vertex, inputs: &[Solved]) -> Result<(Solved, bool)> {
        let (slot, first) = {
            let mut m = match self.inflight.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            match m.get(&key) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = Arc::new((Mutex::new(None), Condvar::new()));
                    m.insert(key, s.clone());
                    (s, true)
                }
            }
        };
        if !first {
            let (lock, cv) = &*slot;
            let mut g = match lock.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            while g.is_none() {
                g = match cv.wait(g) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
            return match g.as_ref() {
                Some(Ok(s)) => Ok((s.clone(), true)),
                Some(Err(e)) => Err(SolveError::step(ctx.step, e.clone())),
                None => Err(SolveError::Cancelled),
            };
        }
        let result = (|| {
            let _file_lock = self.index.lock_key(&key)?;
            if let Some(hit) = ops::probe(&self.index, &key, v.meta.ignore_cache) {
                return Ok((hit, true));
            }
            ops::execute(ctx, key, prov, &v.op, inputs).map(|s| (s, false))
        })();
        {
            let (lock, cv) = &*slot;
            if let Ok(mut g) = lock.lock() {
                *g = Some(result.as_ref().map(|s| s.0.clone()).map_err(|e| e.to_string()));
            }
            cv.notify_all();
        }
        if let Ok(mut m) = self.inflight.lock() {
            m.remove(&key);
        }
        result
    }

    /// Why a step that missed runs: `--no-cache`, or what changed since the nearest result of
    /// the same step the cache remembers. None when the cache never saw this step.
    fn explain_miss(&self, req: &SolveRequest<'_>, build: &Build, v: &Vertex, prov: &Provenance) -> Option<Explanation> {
        if v.meta.ignore_cache {
            return Some(Explanation { reason: "--no-cache".into(), earlier: None });
        }
        let mut seen: Vec<Provenance> = self.index.step_history(&prov.step);
        if let Some(src) = &req.cache_from {
            seen.extend(src.by_step(&prov.step));
        }
        let before = crate::provenance::nearest(prov, seen.iter())?;
        let earlier = |name: &str| -> Option<(VertexDigest, bool)> {
            let i = if name == "parent" { 0 } else { name.strip_prefix("input:")?.parse().ok()? };
            let d = *v.inputs.get(i)?;
            let ran = build.ran.lock().map(|r| r.contains(&d)).unwrap_or(false);
            Some((d, ran))
        };
        crate::provenance::explain(prov, before, &earlier)
    }

    /// A hit in the imported cache: the entry's layers as blobs, nothing downloaded. `None`
    /// when there is no imported cache, the step ignores the cache, or the key is not there.
    fn imported_hit(&self, req: &SolveRequest<'_>, key: &CacheKey, prov: Provenance, v: &Vertex, inputs: &[Solved]) -> Option<Solved> {
        if v.meta.ignore_cache {
            return None;
        }
        let entry = req.cache_from.as_ref()?.lookup(&key.hex())?;
        let layers: Vec<LayerRef> = entry.layers.iter().map(|b| crate::remote::lazy_layer(&self.index, b)).collect();
        let below = match inputs.first().map(|i| &i.output) {
            Some(Output::Snapshot { snapshot, .. }) => snapshot.layers.len(),
            _ => 0,
        };
        let new_layers = layers.len().saturating_sub(below);
        tracing::debug!(step = %prov.description, key = ?key, layers = layers.len(), "hit in the imported cache");
        Some(Solved { key: *key, output: Output::Snapshot { snapshot: Snapshot { layers }, new_layers, created: entry.created }, provenance: Some(Arc::new(prov)) })
    }

    /// Imported hits join the local cache, so the next build on this machine finds them
    /// without an import. Layers not fetched in this solve stay blobs there: the image store
    /// recorded where they come from, and the next build that needs their files fetches them.
    fn record_imports(&self, build: &Build, done: &HashMap<VertexDigest, Solved>) {
        let imported = match build.imported.lock() {
            Ok(i) => i.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for d in imported {
            let Some(Solved { key, output: Output::Snapshot { snapshot, new_layers, created }, provenance }) = done.get(&d) else { continue };
            let description = provenance.as_ref().map(|p| p.description.clone()).unwrap_or_default();
            let rec = CacheRecord { snapshot: snapshot.clone(), new_layers: *new_layers, size: 0, description, created: *created, provenance: provenance.as_deref().cloned() };
            if self.index.put(key, &rec).is_ok()
                && let Some(p) = provenance {
                    self.index.remember_step(key, p);
                }
        }
    }

    /// Fetches the layers of `snapshot` that are known only as blobs of an imported cache
    /// (before a file output reads it); returns how many were fetched.
    pub fn materialize(&self, snapshot: &Snapshot, cache_from: Option<&dyn CacheSource>) -> Result<usize> {
        crate::remote::materialize(&self.index, cache_from, snapshot)
    }

    fn step_ctx<'a>(&'a self, req: &'a SolveRequest<'_>, ssh: &'a SshAgents, vertex: VertexDigest, step: &'a str, step_id: &'a str) -> StepCtx<'a> {
        StepCtx {
            index: &self.index,
            step,
            vertex,
            secrets: &req.secrets,
            ssh: &ssh.sockets,
            cancel: &req.cancel,
            progress: &req.progress,
            exec_helper: self.exec_helper.as_deref(),
            stat: &self.stat,
            def: req.definition,
            step_id,
            cache_from: req.cache_from.as_deref(),
        }
    }
}
