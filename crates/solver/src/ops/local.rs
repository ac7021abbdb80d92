//! Local ops (the build context, named contexts): exclusion patterns with .dockerignore
//! semantics, COPY source expansion (wildcards), and content checksums of what a COPY reads.
//! A local source's own key is only its name: the steps that read it add the content of what
//! they read to their keys, so an unrelated file's change misses nothing.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use dockerignore::DockerIgnore;
use snapshot::checksum::{StatCache, TreeHasher, checksum_path};

use graph::LocalOp;

use super::{Output, Solved};
use crate::cache::{CacheIndex, KeyHasher};
use crate::error::{Result, SolveError};

/// The local source `op` names, from the directories the build was given.
pub(crate) fn solve(op: &LocalOp, locals: &HashMap<String, PathBuf>, step: &str) -> Result<Solved> {
    let dir = locals.get(&op.name).ok_or_else(|| SolveError::step(step, format!("no local source named {:?} was given", op.name)))?;
    let mut h = KeyHasher::new();
    h.field("local", op.name.as_bytes());
    Ok(Solved { key: h.finish(), output: Output::Local(LocalSource { name: op.name.clone(), dir: dir.clone(), excludes: Excludes::new(&op.excludes) }), provenance: None })
}

/// The stat caches of the local directories builds read (path, size, mtime, inode -> digest),
/// so a no-op rebuild does not read file contents again. They speed up checksums only: nothing
/// of them goes into a key.
#[derive(Default)]
pub struct StatCaches(Mutex<HashMap<PathBuf, Arc<StatCache>>>);

impl StatCaches {
    pub(crate) fn get(&self, index: &CacheIndex, dir: &Path) -> Arc<StatCache> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(dir.to_path_buf()).or_insert_with(|| Arc::new(StatCache::load(&index.stat_file(dir)))).clone()
    }

    pub(crate) fn save(&self, index: &CacheIndex) {
        if let Ok(m) = self.0.lock() {
            for (dir, s) in m.iter() {
                let _ = s.save(&index.stat_file(dir));
            }
        }
    }
}

/// Exclusion patterns with `.dockerignore` rules (the context's excludes, COPY `--exclude`):
/// the frontend's own [`DockerIgnore`], so the files a build reads are the ones the Dockerfile
/// frontend and the remote client's context walk agree on.
#[derive(Clone, Default)]
pub struct Excludes {
    rules: DockerIgnore,
}

impl Excludes {
    /// Patterns as the frontend lowered them (cleaned, `!` kept). They were checked when the
    /// Dockerfile was lowered; one that still does not compile is left out rather than failing a
    /// build that never names a file it would match.
    pub fn new(patterns: &[String]) -> Excludes {
        let rules = match DockerIgnore::from_patterns(&patterns.join("\n")) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("exclude patterns: {e}; skipping the patterns that do not compile");
                let valid: Vec<&str> = patterns.iter().map(String::as_str).filter(|p| DockerIgnore::from_patterns(p).is_ok()).collect();
                DockerIgnore::from_patterns(&valid.join("\n")).unwrap_or_default()
            }
        };
        Excludes { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `rel` (a clean relative path) is excluded.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.rules.is_excluded(rel)
    }

    /// Whether a walk must look inside an excluded directory at all (some `!` pattern may
    /// re-include something).
    pub fn may_reinclude(&self) -> bool {
        self.rules.may_reinclude_under("")
    }

    /// Whether a `!` pattern may re-include something below the excluded directory `rel_dir`.
    pub fn may_reinclude_under(&self, rel_dir: &str) -> bool {
        self.rules.may_reinclude_under(rel_dir)
    }
}

/// `p` as a clean path relative to its root: Go's `path.Clean` of `/p` without the `/` (so `..`
/// stops at the root, as BuildKit resolves sources inside the context).
pub fn clean(p: &str) -> String {
    dockerignore::clean_path(&format!("/{p}")).trim_start_matches('/').to_string()
}

/// Whether `p` escapes its root with `..`.
fn escapes(p: &str) -> bool {
    let mut depth: i64 = 0;
    for c in Path::new(p).components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Why a COPY source gave nothing.
#[derive(Debug)]
pub enum SourceProblem {
    OutsideContext,
    NotFound,
    Excluded,
}

/// Expands one COPY source (a path or wildcard pattern relative to `root`) into the paths it
/// names, sorted. Excluded paths are not there.
pub fn expand_source(root: &Path, source: &str, excludes: &Excludes) -> std::result::Result<Vec<String>, SourceProblem> {
    let trimmed = source.trim_start_matches('/');
    if escapes(trimmed) {
        return Err(SourceProblem::OutsideContext);
    }
    let cleaned = clean(trimmed);
    if !has_glob(&cleaned) {
        if !cleaned.is_empty() && excludes.is_excluded(&cleaned) {
            return Err(SourceProblem::Excluded);
        }
        let path = if cleaned.is_empty() { root.to_path_buf() } else { root.join(&cleaned) };
        return match fs::symlink_metadata(&path) {
            Ok(_) => {
                if !cleaned.is_empty() && through_symlink(root, &cleaned) {
                    return Err(SourceProblem::OutsideContext);
                }
                Ok(vec![cleaned])
            }
            Err(_) => Err(SourceProblem::NotFound),
        };
    }
    let comps: Vec<&str> = cleaned.split('/').collect();
    let mut current = vec![String::new()];
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for base in &current {
            let dir = if base.is_empty() { root.to_path_buf() } else { root.join(base) };
            if has_glob(comp) {
                let Ok(g) = globset::GlobBuilder::new(comp).literal_separator(true).build() else { continue };
                let m = g.compile_matcher();
                let Ok(rd) = fs::read_dir(&dir) else { continue };
                let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                names.sort();
                for n in names {
                    if m.is_match(&n) {
                        let rel = if base.is_empty() { n } else { format!("{base}/{n}") };
                        if !last && !root.join(&rel).is_dir() {
                            continue;
                        }
                        next.push(rel);
                    }
                }
            } else {
                let rel = if base.is_empty() { comp.to_string() } else { format!("{base}/{comp}") };
                if fs::symlink_metadata(root.join(&rel)).is_ok() {
                    next.push(rel);
                }
            }
        }
        current = next;
    }
    let mut out: Vec<String> = current.into_iter().filter(|r| !excludes.is_excluded(r)).collect();
    out.sort();
    Ok(out)
}

/// Whether a parent component of `rel` under `root` is a symlink (which could lead outside).
fn through_symlink(root: &Path, rel: &str) -> bool {
    let mut p = root.to_path_buf();
    let comps: Vec<&str> = rel.split('/').collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        p.push(c);
        if fs::symlink_metadata(&p).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
            return true;
        }
    }
    false
}

/// A local directory as a COPY source: the directory plus its exclusions.
#[derive(Clone)]
pub struct LocalSource {
    /// `context`, or a named context.
    pub name: String,
    pub dir: PathBuf,
    pub excludes: Excludes,
}

impl LocalSource {
    /// Adds the content checksum of everything `sources` name to `h`: names, content, modes,
    /// link targets. Excluded files do not count, nor do owners (a copy from a local source
    /// makes everything root's, and a checkout's owners differ between machines).
    pub fn checksum_sources(&self, sources: &[String], extra_excludes: &Excludes, stat: &StatCache, h: &mut TreeHasher) -> Result<()> {
        for s in sources {
            h.add_marker(&format!("source {s}"));
            match expand_source(&self.dir, s, &self.excludes) {
                Ok(paths) => {
                    for rel in paths {
                        let excluded = |p: &str| self.excludes.is_excluded(p) || extra_excludes.is_excluded(p);
                        checksum_path(&self.dir, &rel, &excluded, stat, h).map_err(SolveError::Checksum)?;
                    }
                }
                // The copy itself reports the problem with its step name.
                Err(p) => h.add_marker(&format!("problem {p:?}")),
            }
        }
        Ok(())
    }
}

/// Adds to a step's key and provenance the content of what `sources` name in `local`: the key
/// gets `{field}` (one checksum), the provenance one ingredient per file (`file:src/app.py`),
/// or one per source when a step reads more than [`crate::provenance::MAX_FILES`] files.
pub(crate) fn add_sources(
    ctx: &super::StepCtx<'_>,
    local: &LocalSource,
    sources: &[String],
    extra_excludes: &Excludes,
    field: &str,
    h: &mut KeyHasher,
    prov: &mut crate::provenance::Provenance,
) -> Result<()> {
    let stat = ctx.stat.get(ctx.index, &local.dir);
    let mut th = TreeHasher::without_owners().keeping_entries();
    local.checksum_sources(sources, extra_excludes, &stat, &mut th)?;
    let name = if local.name == "context" { String::new() } else { format!("{}:", local.name) };
    let files = prov.inputs.keys().filter(|k| k.starts_with("file:")).count();
    let sum = if files + th.entries().len() <= crate::provenance::MAX_FILES {
        for (rel, digest) in th.entries() {
            // The context's root directory itself is not a file the user changes.
            if !rel.is_empty() {
                prov.inputs.insert(format!("file:{name}{rel}"), digest.clone());
            }
        }
        th.finish()
    } else {
        let sum = th.finish();
        prov.inputs.insert(format!("files:{name}{}", sources.join(" ")), sum.clone());
        sum
    };
    h.field(field, sum.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &[&str]) -> Excludes {
        Excludes::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn dockerignore_rules_parent_match_and_last_match_wins() {
        let e = ex(&["node_modules", "*.log", "!keep.log", "/build/", "docs/**/*.md"]);
        assert!(e.is_excluded("node_modules"));
        assert!(e.is_excluded("node_modules/x/y.js"));
        assert!(e.is_excluded("a.log"));
        assert!(!e.is_excluded("keep.log"));
        assert!(!e.is_excluded("sub/a.log"), "* does not cross /");
        assert!(e.is_excluded("build/out"));
        assert!(e.is_excluded("docs/a/b/c.md"));
        assert!(!e.is_excluded("src/main.rs"));
    }

    #[test]
    fn sources_expand_wildcards_and_report_missing_excluded_and_outside() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(d.path().join("src/sub")).expect("mkdir");
        for f in ["a.txt", "b.txt", "c.md", "src/x.rs", "src/sub/y.rs", "secret.txt"] {
            fs::write(d.path().join(f), f).expect("write");
        }
        let e = ex(&["secret.txt"]);
        assert_eq!(expand_source(d.path(), "*.txt", &e).expect("glob"), vec!["a.txt", "b.txt"]);
        assert_eq!(expand_source(d.path(), "src/*.rs", &e).expect("glob"), vec!["src/x.rs"]);
        assert_eq!(expand_source(d.path(), "./src/", &e).expect("dir"), vec!["src"]);
        assert_eq!(expand_source(d.path(), ".", &e).expect("root"), vec![""]);
        assert!(matches!(expand_source(d.path(), "nope", &e), Err(SourceProblem::NotFound)));
        assert!(matches!(expand_source(d.path(), "secret.txt", &e), Err(SourceProblem::Excluded)));
        assert!(matches!(expand_source(d.path(), "../etc/passwd", &e), Err(SourceProblem::OutsideContext)));
    }
}
