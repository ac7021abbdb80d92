//! The scheduler: runs every vertex whose inputs are ready, up to the parallelism limit, looks
//! each up in the cache first, and stops everything on the first failure.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use graph::{Definition, FileAction, ImageOp, MountKind, Op, Vertex, VertexDigest};
use snapshot::checksum::{StatCache, TreeHasher};

use crate::cache::{CacheIndex, CacheKey, CacheRecord, KeyHasher, LayerRef, Snapshot, now_secs};
use crate::context::{Excludes, LocalSource};
use crate::error::{Result, SolveError};
use crate::exec::{Cancel, ExecRequest, MountSource};
use crate::fileop::{FileCtx, Source};
use crate::progress::{Event, ProgressSink};
use crate::view::View;

/// Provides the layers of base images (unpacked, as overlay lower dirs).
pub trait ImageSource: Send + Sync {
    /// The snapshot of the image `op` names, and whether it was already unpacked.
    fn snapshot(&self, op: &ImageOp) -> Result<(Snapshot, bool)>;
}

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
}

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
    stat: Mutex<HashMap<PathBuf, Arc<StatCache>>>,
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
            stat: Mutex::new(HashMap::new()),
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

    fn stat_cache(&self, dir: &Path) -> Arc<StatCache> {
        let mut m = match self.stat.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(dir.to_path_buf()).or_insert_with(|| Arc::new(StatCache::load(&self.index.stat_file(dir)))).clone()
    }

    fn save_stat_caches(&self) {
        if let Ok(m) = self.stat.lock() {
            for (dir, s) in m.iter() {
                let _ = s.save(&self.index.stat_file(dir));
            }
        }
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
                        let result = self.solve_vertex(req, ssh, d, v, &inputs);
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
        self.save_stat_caches();
        let st = match state.into_inner() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = st.error {
            return Err(e);
        }
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

    fn solve_vertex(&self, req: &SolveRequest<'_>, ssh: &SshAgents, d: VertexDigest, v: &Vertex, inputs: &[Solved]) -> Result<Solved> {
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
                Op::Scratch => {
                    let mut h = KeyHasher::new();
                    h.field("scratch", b"");
                    Ok((Solved { key: h.finish(), output: Output::Snapshot { snapshot: Snapshot::default(), new_layers: 0, created: 0 } }, false))
                }
                Op::Local(l) => {
                    let dir = req.locals.get(&l.name).ok_or_else(|| SolveError::step(&step, format!("no local source named {:?} was given", l.name)))?;
                    let mut h = KeyHasher::new();
                    h.field("local", l.name.as_bytes());
                    Ok((Solved { key: h.finish(), output: Output::Local(LocalSource { dir: dir.clone(), excludes: Excludes::new(&l.excludes) }) }, false))
                }
                Op::Image(img) => {
                    report_start();
                    let (snapshot, had) = self.images.snapshot(img)?;
                    let mut h = KeyHasher::new();
                    h.field("image", img.manifest_digest.as_bytes());
                    Ok((Solved { key: h.finish(), output: Output::Snapshot { new_layers: snapshot.layers.len(), snapshot, created: 0 } }, had))
                }
                Op::Http(op) => {
                    report_start();
                    let solved = crate::http::download(&self.index, op, &step)?;
                    Ok((solved, false))
                }
                Op::Git(g) => {
                    report_start();
                    crate::git::checkout(&self.index, g, &step, v.meta.ignore_cache, ssh.sockets.get("default").map(PathBuf::as_path), &req.secrets, &req.cancel)
                }
                Op::Exec(_) | Op::File(_) | Op::Merge => {
                    report_start();
                    let key = self.cache_key(v, inputs, &step)?;
                    if !v.meta.ignore_cache {
                        if let Some(rec) = self.index.get(&key) {
                            return Ok((Solved { key, output: Output::Snapshot { snapshot: rec.snapshot, new_layers: rec.new_layers, created: rec.created } }, true));
                        }
                    }
                    self.run_once(req, ssh, key, v, inputs, &step)
                }
            }
        })();
        match result {
            Ok((solved, cached)) => {
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
    fn run_once(&self, req: &SolveRequest<'_>, ssh: &SshAgents, key: CacheKey, v: &Vertex, inputs: &[Solved], step: &str) -> Result<(Solved, bool)> {
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
                Some(Err(e)) => Err(SolveError::step(step, e.clone())),
                None => Err(SolveError::Cancelled),
            };
        }
        let result = (|| {
            let _file_lock = self.index.lock_key(&key)?;
            if !v.meta.ignore_cache {
                if let Some(rec) = self.index.get(&key) {
                    return Ok((Solved { key, output: Output::Snapshot { snapshot: rec.snapshot, new_layers: rec.new_layers, created: rec.created } }, true));
                }
            }
            self.execute(req, ssh, key, v, inputs, step).map(|s| (s, false))
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

    fn cache_key(&self, v: &Vertex, inputs: &[Solved], step: &str) -> Result<CacheKey> {
        let mut h = KeyHasher::new();
        let op_json = serde_json::to_vec(&v.op).map_err(|e| SolveError::CacheKey { step: step.into(), message: e.to_string() })?;
        h.field("op", &op_json);
        for (i, inp) in inputs.iter().enumerate() {
            match &inp.output {
                // A local source counts by the content of what is read from it (below).
                Output::Local(_) => h.field("input-local", &(i as u64).to_le_bytes()),
                _ => h.field("input", &inp.key.0),
            };
        }
        let local = |i: usize| -> Option<&LocalSource> {
            match inputs.get(i).map(|s| &s.output) {
                Some(Output::Local(l)) => Some(l),
                _ => None,
            }
        };
        match &v.op {
            Op::File(f) => {
                for (n, a) in f.actions.iter().enumerate() {
                    if let FileAction::Copy(c) = a {
                        if let Some(l) = local(c.source_input) {
                            let stat = self.stat_cache(&l.dir);
                            let mut th = TreeHasher::new();
                            l.checksum_sources(&c.sources, &Excludes::new(&c.excludes), &stat, &mut th)?;
                            h.field(&format!("copy-{n}"), th.finish().as_bytes());
                        }
                    }
                }
            }
            Op::Exec(e) => {
                for (n, m) in e.mounts.iter().enumerate() {
                    if let MountKind::Bind { input, source, .. } = &m.kind {
                        if let Some(l) = local(*input) {
                            let stat = self.stat_cache(&l.dir);
                            let mut th = TreeHasher::new();
                            l.checksum_sources(std::slice::from_ref(source), &Excludes::default(), &stat, &mut th)?;
                            h.field(&format!("bind-{n}"), th.finish().as_bytes());
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(h.finish())
    }

    fn layer_dirs(&self, s: &Snapshot) -> Vec<PathBuf> {
        s.layers.iter().map(|l| self.index.abs(&l.dir)).collect()
    }

    fn execute(&self, req: &SolveRequest<'_>, ssh: &SshAgents, key: CacheKey, v: &Vertex, inputs: &[Solved], step: &str) -> Result<Solved> {
        if req.cancel.is_cancelled() {
            return Err(SolveError::Cancelled);
        }
        let work = self.index.work_dir()?;
        let snapshot_of = |i: usize| -> Result<&Snapshot> {
            match inputs.get(i).map(|s| &s.output) {
                Some(Output::Snapshot { snapshot, .. }) => Ok(snapshot),
                _ => Err(SolveError::step(step, format!("input {i} is not a filesystem"))),
            }
        };
        let (base, layer_dir): (Snapshot, Option<PathBuf>) = match &v.op {
            Op::Merge => {
                let mut layers = Vec::new();
                for i in 0..inputs.len() {
                    layers.extend(snapshot_of(i)?.layers.iter().cloned());
                }
                let base = snapshot_of(0)?.clone();
                let new = layers.len() - base.layers.len();
                let snapshot = Snapshot { layers };
                let created = now_secs();
                self.index.put(&key, &CacheRecord { snapshot: snapshot.clone(), new_layers: new, size: 0, description: step.into(), created })?;
                return Ok(Solved { key, output: Output::Snapshot { snapshot, new_layers: new, created } });
            }
            Op::File(f) => {
                let base = snapshot_of(0)?.clone();
                let lowers = self.layer_dirs(&base);
                let dest_view = View::open(&lowers, &work.path().join("dest"))?;
                let mut views: Vec<Option<View>> = Vec::new();
                for (i, inp) in inputs.iter().enumerate() {
                    match &inp.output {
                        Output::Snapshot { snapshot, .. } if i > 0 => {
                            views.push(Some(View::open(&self.layer_dirs(snapshot), &work.path().join(format!("src{i}")))?));
                        }
                        _ => views.push(None),
                    }
                }
                let mut sources: Vec<Option<Source<'_>>> = Vec::new();
                for (i, inp) in inputs.iter().enumerate() {
                    sources.push(match (&inp.output, &views[i]) {
                        (Output::Local(l), _) => Some(Source::Local(l)),
                        (Output::Http { dir, .. }, _) => Some(Source::Tree(dir.as_path())),
                        (_, Some(view)) => Some(Source::Tree(view.path())),
                        _ => None,
                    });
                }
                let layer = work.path().join("layer");
                std::fs::create_dir(&layer).map_err(SolveError::io("create", &layer))?;
                let ctx = FileCtx { step, dest_view: dest_view.path(), sources, layer: &layer };
                for a in &f.actions {
                    ctx.apply(a)?;
                }
                (base, Some(layer))
            }
            Op::Exec(e) => {
                let base = snapshot_of(0)?.clone();
                let lowers = self.layer_dirs(&base);
                let mut views = Vec::new();
                let mut proxies = Vec::new();
                let mut mount_sources = Vec::new();
                for (n, m) in e.mounts.iter().enumerate() {
                    let src = match &m.kind {
                        MountKind::Bind { input, source, .. } => {
                            let dir = match inputs.get(*input).map(|s| &s.output) {
                                Some(Output::Local(l)) => l.dir.clone(),
                                Some(Output::Http { dir, .. }) => dir.clone(),
                                Some(Output::Snapshot { snapshot, .. }) => {
                                    let view = View::open(&self.layer_dirs(snapshot), &work.path().join(format!("mnt{n}")))?;
                                    let p = view.path().to_path_buf();
                                    views.push(view);
                                    p
                                }
                                None => return Err(SolveError::step(step, "bind mount input is missing")),
                            };
                            // Symlinks in the source path stay inside the source.
                            MountSource::Dir(crate::fileop::resolve_in_root(&dir, source))
                        }
                        MountKind::Cache { id, sharing, from, source, uid, gid, mode, .. } => {
                            let seed = match from.and_then(|i| inputs.get(i)).map(|s| &s.output) {
                                Some(Output::Snapshot { snapshot, .. }) => {
                                    let view = View::open(&self.layer_dirs(snapshot), &work.path().join(format!("mnt{n}")))?;
                                    let p = view.path().join(crate::context::clean(source));
                                    views.push(view);
                                    Some(p)
                                }
                                Some(Output::Local(l)) => Some(l.dir.join(crate::context::clean(source))),
                                _ => None,
                            };
                            let (dir, lock) = crate::exec::cache_mount_dir(&self.index.mount_dir(id), *sharing, *uid, *gid, *mode, seed.as_deref())?;
                            MountSource::Cache { dir, lock }
                        }
                        MountKind::Tmpfs { .. } => MountSource::Tmpfs,
                        MountKind::Ssh { id, required, uid, gid, mode } => match ssh.sockets.get(id) {
                            Some(agent) => {
                                // A socket of this step's own, relayed to the agent.
                                let sock = work.path().join(format!("ssh-{n}.sock"));
                                proxies.push(crate::ssh::AgentProxy::start(agent, &sock, *uid, *gid, *mode)?);
                                MountSource::Socket(sock)
                            }
                            None if *required => return Err(SolveError::step(step, format!("ssh agent {id:?} not given: pass --ssh {id}[=SOCKET|KEY]"))),
                            None => MountSource::Nothing,
                        },
                        MountKind::Secret { id, required, .. } => match req.secrets.get(id) {
                            Some(b) => MountSource::Secret(b.clone()),
                            None if *required => return Err(SolveError::step(step, format!("secret {id} not found: pass it with --secret id={id},src=FILE"))),
                            None => MountSource::Nothing,
                        },
                    };
                    mount_sources.push(src);
                }
                let d = v.digest();
                let progress = req.progress.clone();
                let on_output = move |b: &[u8]| progress(Event::Log { vertex: d, bytes: b.to_vec() });
                let upper = crate::exec::run(ExecRequest { step, op: e, lowers, mount_sources, work: work.path(), cancel: &req.cancel, on_output: &on_output, helper: self.exec_helper.as_deref() })?;
                drop(views);
                drop(proxies);
                (base, Some(upper))
            }
            _ => return Err(SolveError::step(step, "not an executable op")),
        };
        let finishing = Instant::now();
        let mut snapshot = base.clone();
        let mut new_layers = 0;
        let mut size = 0;
        if let Some(dir) = layer_dir {
            let lowers = self.layer_dirs(&base);
            if !snapshot::diff::is_empty_diff(&dir, &lowers)? {
                size = crate::cache::dir_size(&dir);
                let rel = self.index.commit_layer(&key, &dir)?;
                snapshot.layers.push(LayerRef { dir: rel, blob: None });
                new_layers = 1;
            }
        }
        let created = now_secs();
        self.index.put(&key, &CacheRecord { snapshot: snapshot.clone(), new_layers, size, description: step.into(), created })?;
        tracing::debug!(step, new_layers, size, commit_ms = finishing.elapsed().as_millis() as u64, "step committed to the cache");
        Ok(Solved { key, output: Output::Snapshot { snapshot, new_layers, created } })
    }
}
