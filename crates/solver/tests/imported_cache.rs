//! The solver with an imported cache: the entries one machine exports (`cache_entries`) are
//! hits on another root that download nothing, until a step needs the files; then exactly the
//! layers it builds on are fetched, and they join the local cache.
//!
//! The imported cache here reads the blobs straight out of the first root's image store (what a
//! `type=local` cache directory is), so the real solver, real layer blobs and real overlay
//! mounts are exercised; the registry transport is `remote-cache`'s and tested there.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use graph::{Definition, DefinitionBuilder, FileAction, FileOp, MkfileAction, Op, VertexDigest, VertexMeta};
use sha2::Digest as _;
use solver::cache::BlobDesc;
use solver::export::{CacheEntryOut, CacheMode, ExportOptions};
use solver::provenance::Provenance;
use solver::remote::{CacheSource, ImportedEntry};
use solver::{Cancel, SolveRequest, Solved, Solver};

/// Blobs of another root's image store, with the entries that root exported.
struct StoreSource {
    store: oci::Store,
    entries: Vec<CacheEntryOut>,
    fetched: AtomicUsize,
}

impl CacheSource for StoreSource {
    fn lookup(&self, key: &str) -> Option<ImportedEntry> {
        self.entries.iter().find(|e| e.key == key).map(|e| ImportedEntry { layers: e.layers.clone(), provenance: e.provenance.clone(), created: e.created })
    }
    fn by_step(&self, step: &str) -> Vec<Provenance> {
        self.entries.iter().filter(|e| e.provenance.step == step).map(|e| e.provenance.clone()).collect()
    }
    fn fetch_blob(&self, blob: &BlobDesc, dest: &Path) -> Result<(), String> {
        let digest: oci::Digest = blob.digest.parse().map_err(|e| format!("{e}"))?;
        let mut bytes = Vec::new();
        self.store.open_blob(&digest).map_err(|e| e.to_string())?.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        if format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))) != blob.digest {
            return Err(format!("blob {} does not match its digest", blob.digest));
        }
        std::fs::write(dest, bytes).map_err(|e| e.to_string())?;
        self.fetched.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn mkfile(path: &str, data: &str) -> Op {
    Op::File(FileOp { actions: vec![FileAction::Mkfile(MkfileAction { path: path.into(), data: data.into(), mode: 0o644, chown: None })] })
}

fn meta(description: &str, line: u32) -> VertexMeta {
    VertexMeta { description: description.into(), location: Some(format!("Dockerfile:{line}")), ..Default::default() }
}

/// scratch -> /a -> /b, plus /c on top when `extra`.
fn definition(extra: bool) -> (Definition, VertexDigest) {
    let mut b = DefinitionBuilder::new();
    let scratch = b.add(Op::Scratch, vec![], VertexMeta::default());
    let a = b.add(mkfile("/a", "one\n"), vec![scratch], meta("[1/3] COPY <<EOF /a", 2));
    let mut top = b.add(mkfile("/b", "two\n"), vec![a], meta("[2/3] COPY <<EOF /b", 3));
    if extra {
        top = b.add(mkfile("/c", "three\n"), vec![top], meta("[3/3] COPY <<EOF /c", 4));
    }
    (b.finish(), top)
}

struct Root {
    dir: tempfile::TempDir,
    store: oci::Store,
    solver: Solver,
}

fn root() -> Root {
    let dir = tempfile::tempdir().expect("tmp");
    let store = oci::Store::open(dir.path()).expect("store");
    let solver = Solver::new(dir.path(), Arc::new(solver::ops::image::StoreImages::new(store.clone(), dir.path()))).expect("solver");
    Root { dir, store, solver }
}

fn solve(r: &Root, def: &Definition, target: VertexDigest, cache_from: Option<Arc<dyn CacheSource>>) -> (HashMap<VertexDigest, Solved>, Vec<String>) {
    let cached = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = cached.clone();
    let descriptions: HashMap<VertexDigest, String> = def.vertices.iter().map(|(d, v)| (*d, v.meta.description.clone())).collect();
    let req = SolveRequest {
        definition: def,
        targets: vec![target],
        locals: HashMap::new(),
        secrets: HashMap::new(),
        max_parallelism: 2,
        progress: Arc::new(move |e| {
            if let solver::Event::Cached { vertex } = e {
                seen.lock().expect("lock").push(descriptions[&vertex].clone());
            }
        }),
        cancel: Arc::new(Cancel::default()),
        cache_from,
    };
    let solved = r.solver.solve(&req).expect("solve");
    let cached = cached.lock().expect("lock").clone();
    (solved, cached)
}

const GZIP: ExportOptions = ExportOptions { compression: snapshot::diff::Compression::Gzip, source_date_epoch: None };

#[test]
fn imported_hits_download_nothing_until_a_step_builds_on_them_and_then_join_the_local_cache() {
    let a = root();
    let (def, top) = definition(false);
    let (solved_a, _) = solve(&a, &def, top, None);
    let entries = solver::export::cache_entries(a.solver.index(), &a.store, &def, &solved_a, top, (CacheMode::Max, &GZIP), &|_| {}).expect("entries");
    assert_eq!(entries.len(), 2, "both steps: {entries:?}");
    assert!(entries.iter().all(|e| e.key.len() == 64 && !e.provenance.step.is_empty()));
    let source = Arc::new(StoreSource { store: a.store.clone(), entries, fetched: AtomicUsize::new(0) });

    // Another root: every step is a hit, and nothing is downloaded.
    let b = root();
    let (solved_b, cached) = solve(&b, &def, top, Some(source.clone()));
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(solved_b[&top].key, solved_a[&top].key, "the same keys on both roots");
    assert_eq!(source.fetched.load(Ordering::SeqCst), 0, "a hit downloads nothing");
    assert_eq!(b.solver.index().record_count(), 0, "unfetched results stay out of the local cache");

    // A step on top runs: exactly the two layers below it are fetched, and its files are right.
    let (def2, top2) = definition(true);
    let (solved, cached) = solve(&b, &def2, top2, Some(source.clone()));
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(source.fetched.load(Ordering::SeqCst), 2);
    let out = b.dir.path().join("out");
    let solver::Output::Snapshot { snapshot, .. } = &solved[&top2].output else { panic!("not a snapshot") };
    solver::export::export_local(b.solver.index(), snapshot, &out).expect("export");
    for (f, body) in [("a", "one\n"), ("b", "two\n"), ("c", "three\n")] {
        assert_eq!(std::fs::read_to_string(out.join(f)).expect(f), body);
    }

    // The fetched results are local now: no import needed, nothing fetched again.
    let (_, cached) = solve(&b, &def2, top2, None);
    assert_eq!(cached.len(), 3, "{cached:?}");
    assert_eq!(source.fetched.load(Ordering::SeqCst), 2);
}

#[test]
fn mode_min_exports_the_final_images_steps_and_mode_max_every_stage() {
    let r = root();
    let mut b = DefinitionBuilder::new();
    let scratch = b.add(Op::Scratch, vec![], VertexMeta::default());
    let other = b.add(mkfile("/tool", "t\n"), vec![scratch], meta("[tools 1/1] COPY <<EOF /tool", 2));
    let base = b.add(mkfile("/app", "a\n"), vec![scratch], meta("[final 1/2] COPY <<EOF /app", 4));
    // COPY --link --from=tools: the final image stacks the other stage's layer.
    let top = b.add(Op::Merge, vec![base, other], meta("[final 2/2] COPY --link --from=tools /tool /", 5));
    let def = b.finish();
    let (solved, _) = solve(&r, &def, top, None);
    let keys = |mode| {
        let e = solver::export::cache_entries(r.solver.index(), &r.store, &def, &solved, top, (mode, &GZIP), &|_| {}).expect("entries");
        let mut d: Vec<String> = e.into_iter().map(|e| e.provenance.description).collect();
        d.sort();
        d
    };
    assert_eq!(keys(CacheMode::Min), ["[final 1/2] COPY <<EOF /app", "[final 2/2] COPY --link --from=tools /tool /"]);
    assert_eq!(keys(CacheMode::Max).len(), 3, "the tools stage too");
}
