//! The solver with an imported cache: the entries one root exports (`cache_entries`, written
//! as a real `type=local` cache directory by `remote-cache`) are hits on another root that
//! download nothing, until a step needs the files; then exactly the layers it builds on are
//! fetched, and they join the local cache. Real solver, layer blobs and overlay mounts.

use std::collections::HashMap;
use std::sync::Arc;

use graph::{Definition, DefinitionBuilder, FileAction, FileOp, MkfileAction, Op, VertexDigest, VertexMeta};
use remote_cache::{CacheExport, CacheFrom, CacheImport, Mode};
use solver::export::ExportOptions;
use solver::remote::{CacheSource, ImportedCache};
use solver::{Cancel, SolveRequest, Solved, Solver};

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
    let entries = solver::export::cache_entries(a.solver.index(), &a.store, &def, &solved_a, top, (Mode::Max, &GZIP), &|_| {}).expect("entries");
    assert_eq!(entries.len(), 2, "both steps: {entries:?}");
    assert!(entries.iter().all(|e| e.key.len() == 64 && !e.provenance.step.is_empty() && e.created > 0));
    let mut blobs: Vec<oci::Digest> = entries.iter().flat_map(|e| e.layers.iter().map(|l| l.digest.clone())).collect();
    blobs.sort_by_key(|d| d.to_string());
    blobs.dedup();
    assert_eq!(blobs.len(), 2);
    let dir = tempfile::tempdir().expect("cache dir");
    CacheExport::new(entries).to_local(dir.path(), "latest", &a.store).expect("export");

    // Another root: every step is a hit, and nothing is downloaded.
    let b = root();
    let client = Arc::new(registry::Client::new(registry::ClientOptions::default()).expect("client"));
    let client_b = client.clone();
    let import = CacheImport::load(&[CacheFrom::Local { src: dir.path().to_path_buf(), tag: "latest".into() }], client, &b.store);
    assert!(import.warnings().is_empty(), "{:?}", import.warnings());
    let source: Arc<dyn CacheSource> = Arc::new(ImportedCache::new(Some(Arc::new(import)), b.store.clone(), client_b));
    let fetched = || blobs.iter().filter(|d| b.store.has_blob(d)).count();
    let (solved_b, cached) = solve(&b, &def, top, Some(source.clone()));
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(solved_b[&top].key, solved_a[&top].key, "the same keys on both roots");
    assert_eq!(fetched(), 0, "a hit downloads nothing");
    assert_eq!(b.solver.index().record_count(), 2, "the hits join the local cache, their layers still unfetched");
    assert_eq!(fetched(), 0);
    let created = |s: &Solved| match &s.output {
        solver::Output::Snapshot { created, .. } => *created,
        _ => 0,
    };
    assert_eq!(created(&solved_b[&top]), created(&solved_a[&top]), "a hit keeps the time its result was made");

    // A step on top runs: exactly the two layers below it are fetched, and its files are right.
    let (def2, top2) = definition(true);
    let (solved, cached) = solve(&b, &def2, top2, Some(source.clone()));
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(fetched(), 2);
    let out = b.dir.path().join("out");
    let solver::Output::Snapshot { snapshot, .. } = &solved[&top2].output else { panic!("not a snapshot") };
    solver::export::export_local(b.solver.index(), snapshot, &out).expect("export");
    for (f, body) in [("a", "one\n"), ("b", "two\n"), ("c", "three\n")] {
        assert_eq!(std::fs::read_to_string(out.join(f)).expect(f), body);
    }

    // The fetched results are local now: no import needed, nothing fetched again.
    let (_, cached) = solve(&b, &def2, top2, None);
    assert_eq!(cached.len(), 3, "{cached:?}");

    // An image written from imported results names their blobs without fetching them; making it
    // whole on a machine (a local image, not a push) fetches exactly those.
    let c = root();
    let client = Arc::new(registry::Client::new(registry::ClientOptions::default()).expect("client"));
    let client_c = client.clone();
    let import = CacheImport::load(&[CacheFrom::Local { src: dir.path().to_path_buf(), tag: "latest".into() }], client, &c.store);
    let source: Arc<dyn CacheSource> = Arc::new(ImportedCache::new(Some(Arc::new(import)), c.store.clone(), client_c));
    let (solved_c, _) = solve(&c, &def, top, Some(source.clone()));
    let solver::Output::Snapshot { snapshot, .. } = &solved_c[&top].output else { panic!("not a snapshot") };
    let image = solver::export::export_image(c.solver.index(), &c.store, snapshot, &graph::image::ImageSpec::default(), &HashMap::new(), &GZIP, &|_| {}).expect("image");
    let mut layers: Vec<oci::Digest> = image.layers.iter().map(|l| l.digest.parse().expect("digest")).collect();
    layers.sort_by_key(|d| d.to_string());
    assert_eq!(layers, blobs, "the image's layers are the cache's blobs");
    assert!(!layers.iter().any(|d| c.store.has_blob(d)), "writing the image fetched nothing");
    assert_eq!(solver::remote::fetch_missing_blobs(&c.store, Some(source.as_ref()), &image.layers).expect("fetch"), 2);
    assert!(layers.iter().all(|d| c.store.has_blob(d)));
    assert_eq!(solver::remote::fetch_missing_blobs(&c.store, None, &image.layers).expect("again"), 0, "nothing twice");
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
    assert_eq!(keys(Mode::Min), ["[final 1/2] COPY <<EOF /app", "[final 2/2] COPY --link --from=tools /tool /"]);
    assert_eq!(keys(Mode::Max).len(), 3, "the tools stage too");
}
