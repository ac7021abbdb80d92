//! What went into a step's cache key, in the user's terms, and why a step missed the cache.
//!
//! Every exec, file and merge step gets a [`Provenance`] with its key: a stable id of "this
//! step of this Dockerfile" (no input contents in it) and its ingredients by name — the files it
//! read from the context, the base image it starts from, the build args and environment it
//! sees, the step before it. When a step runs although a cache (local, or imported) has an entry
//! for the same step id, [`explain`] compares the ingredients and says what changed.
//!
//! Nothing machine-specific is in an ingredient (no local path, inode, time or state root), and
//! values are digests: never a build arg's or a secret's value.

use std::collections::{BTreeMap, HashMap};

use graph::{Definition, Op, VertexDigest};

/// Where a step's result came from (the cache artifact's own type, so what a build records is
/// what it exports). `step` is computed by [`step_ids`] (the step's file, stage and instruction
/// text, and which repetition of that text it is, none of its inputs); `inputs` are ingredient
/// name -> digest: `file:src/app.py`, `base:docker.io/library/debian:bookworm`, `arg:VERSION`,
/// `env:PATH`, `parent`, `input:1`, `op`, `url:…`, `git:…`. Stored with the cache record.
pub use remote_cache::Provenance;

/// The most file names one step records; a step reading more records one digest per source.
pub const MAX_FILES: usize = 1024;

/// A short digest of a value, for ingredients (never the value itself).
pub fn digest_of(value: &[u8]) -> String {
    blake3::hash(value).to_hex()[..32].to_string()
}

/// The step ids of the described vertices of `def` (see [`Provenance::step`]).
pub fn step_ids(def: &Definition, order: &[VertexDigest]) -> HashMap<VertexDigest, String> {
    let mut by_base: BTreeMap<String, Vec<(u64, VertexDigest)>> = BTreeMap::new();
    for d in order {
        let v = &def.vertices[d];
        if v.meta.description.is_empty() {
            continue;
        }
        let (stage, text) = split_description(&v.meta.description);
        let (file, line) = match v.meta.location.as_deref().and_then(|l| l.rsplit_once(':')) {
            Some((f, l)) => (f, l.parse().unwrap_or(0)),
            None => (v.meta.location.as_deref().unwrap_or(""), 0),
        };
        let base = format!("{file}\0{stage}\0{text}");
        by_base.entry(base).or_default().push((line, *d));
    }
    let mut ids = HashMap::new();
    for (base, mut vs) in by_base {
        // The same instruction twice in a stage: told apart by their order in the file.
        vs.sort();
        for (n, (_, d)) in vs.into_iter().enumerate() {
            ids.insert(d, digest_of(format!("step-v1\0{base}\0{n}").as_bytes()));
        }
    }
    ids
}

/// `[build 3/5] COPY src/ /app` -> (`build`, `COPY src/ /app`): the step number is left out, so
/// adding a step to a stage keeps the ids of the others.
fn split_description(desc: &str) -> (&str, &str) {
    let Some(rest) = desc.strip_prefix('[') else { return ("", desc) };
    let Some((label, text)) = rest.split_once("] ") else { return ("", desc) };
    let stage = match label.rsplit_once(' ') {
        Some((name, n)) if n.contains('/') => name,
        _ if label.contains('/') && label.bytes().all(|b| b.is_ascii_digit() || b == b'/') => "",
        _ => label,
    };
    (stage, text)
}

/// The ingredient names of a step's inputs, in input order: `base:<ref>` for an image, `parent`
/// for the filesystem it builds on, `input:<i>` for the others (a `COPY --from` source).
/// Local sources count by the files read from them, not here.
pub fn input_names(def: &Definition, inputs: &[VertexDigest]) -> Vec<Option<String>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, d)| match def.vertices.get(d).map(|v| &v.op) {
            Some(Op::Local(_)) => None,
            Some(Op::Image(img)) => Some(format!("base:{}", img.reference)),
            Some(Op::Scratch) => Some("base:scratch".to_string()),
            Some(Op::Http(h)) => Some(format!("url:{}", h.url)),
            Some(Op::Git(g)) => Some(format!("git:{}", if g.reference.is_empty() { g.remote.clone() } else { format!("{}#{}", g.remote, g.reference) })),
            _ if i == 0 => Some("parent".to_string()),
            _ => Some(format!("input:{i}")),
        })
        .collect()
}

/// Why a step ran: what changed, in the user's terms, and the earlier step that ran first when
/// the change came from it (progress shows its number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub reason: String,
    pub earlier: Option<VertexDigest>,
}

/// What changed between `before` (the nearest cache entry of the same step) and `now`.
/// `earlier` gives, for an input ingredient (`parent`, `input:1`), the vertex that made it and
/// whether it ran in this build.
pub fn explain(now: &Provenance, before: &Provenance, earlier: &dyn Fn(&str) -> Option<(VertexDigest, bool)>) -> Option<Explanation> {
    let changed = |name: &str| now.inputs.get(name) != before.inputs.get(name);
    let mut reasons: Vec<String> = Vec::new();

    // Files first: they are what a user changes most.
    let mut files: Vec<String> = Vec::new();
    let names: std::collections::BTreeSet<&String> = now.inputs.keys().chain(before.inputs.keys()).collect();
    for name in &names {
        let Some(path) = name.strip_prefix("file:").or_else(|| name.strip_prefix("files:")) else { continue };
        match (before.inputs.get(*name), now.inputs.get(*name)) {
            (Some(a), Some(b)) if a != b => {
                let what = if name.starts_with("files:") {
                    "a file changed"
                } else if a.split(':').next() != b.split(':').next() {
                    if a.as_bytes().first() != b.as_bytes().first() { "type changed" } else { "mode changed" }
                } else {
                    "content changed"
                };
                files.push(format!("{path}: {what}"));
            }
            (None, Some(_)) => files.push(format!("{path}: added")),
            (Some(_), None) => files.push(format!("{path}: removed")),
            _ => {}
        }
    }
    if files.len() > 3 {
        let more = files.len() - 3;
        files.truncate(3);
        files.push(format!("and {more} more file{}", if more == 1 { "" } else { "s" }));
    }
    reasons.extend(files);

    for name in &names {
        if let Some(r) = name.strip_prefix("base:") {
            match (before.inputs.get(*name), now.inputs.get(*name)) {
                (Some(a), Some(b)) if a != b => reasons.push(format!("base image {r} changed ({} -> {})", short_digest(a), short_digest(b))),
                (None, Some(_)) => {
                    let old: Vec<&str> = before.inputs.keys().filter_map(|k| k.strip_prefix("base:")).collect();
                    match old.first() {
                        Some(o) => reasons.push(format!("base image changed from {o} to {r}")),
                        None => reasons.push(format!("base image {r} is new to this step")),
                    }
                }
                _ => {}
            }
        } else if let Some(u) = name.strip_prefix("url:").filter(|_| changed(name)) {
            reasons.push(format!("{u}: content changed"));
        } else if let Some(g) = name.strip_prefix("git:").filter(|_| changed(name)) {
            reasons.push(format!("{g}: new commit"));
        }
    }

    // The step's own definition: explained by the build args or environment it sees.
    if changed("op") {
        let mut args: Vec<String> = names.iter().filter_map(|n| n.strip_prefix("arg:").filter(|_| changed(n))).map(|a| format!("build arg {a} changed")).collect();
        if args.is_empty() {
            args = names.iter().filter_map(|n| n.strip_prefix("env:").filter(|_| changed(n))).map(|e| format!("ENV {e} changed")).collect();
        }
        if args.is_empty() {
            args.push("the instruction changed (its flags, ENV, WORKDIR or USER)".to_string());
        }
        reasons.extend(args);
    }

    // An earlier step that ran first: the root cause is there.
    let mut earlier_step = None;
    for name in names.iter().filter(|n| **n == "parent" || n.starts_with("input:")) {
        if !changed(name) {
            continue;
        }
        let what = if *name == "parent" { "the step before it" } else { "the stage it copies from" };
        match earlier(name) {
            Some((d, true)) if earlier_step.is_none() => {
                reasons.push(format!("{what} ran"));
                earlier_step = Some(d);
            }
            Some((d, false)) if earlier_step.is_none() => {
                reasons.push(format!("{what} has another result"));
                earlier_step = Some(d);
            }
            _ => reasons.push(format!("{what} changed")),
        }
    }
    if reasons.is_empty() {
        return None;
    }
    Some(Explanation { reason: reasons.join("; "), earlier: earlier_step })
}

/// `sha256:0123456789ab…` for messages.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}…", &hex[..12]),
        _ => d.to_string(),
    }
}

/// Of `candidates` (entries of the same step), the one with the most ingredients equal to `now`.
pub fn nearest<'a>(now: &Provenance, candidates: impl IntoIterator<Item = &'a Provenance>) -> Option<&'a Provenance> {
    candidates.into_iter().max_by_key(|p| p.inputs.iter().filter(|(k, v)| now.inputs.get(*k) == Some(*v)).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov(pairs: &[(&str, &str)]) -> Provenance {
        Provenance { step: "s".into(), description: "d".into(), inputs: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    #[test]
    fn descriptions_split_into_stage_and_text() {
        assert_eq!(split_description("[build 3/5] COPY src/ /app"), ("build", "COPY src/ /app"));
        assert_eq!(split_description("[2/4] RUN make"), ("", "RUN make"));
        assert_eq!(split_description("[internal] load git source x"), ("internal", "load git source x"));
        assert_eq!(split_description("plain"), ("", "plain"));
    }

    #[test]
    fn each_kind_of_change_is_said_in_the_users_terms() {
        let no_earlier = |_: &str| None;
        let a = prov(&[("op", "1"), ("file:src/app.py", "f644:aa"), ("file:src/b.py", "f644:bb"), ("parent", "p")]);
        let b = prov(&[("op", "1"), ("file:src/app.py", "f644:cc"), ("file:src/c.py", "f644:dd"), ("file:src/b.py", "f755:bb"), ("parent", "p")]);
        assert_eq!(explain(&b, &a, &no_earlier).expect("files").reason, "src/app.py: content changed; src/b.py: mode changed; src/c.py: added");

        let a = prov(&[("op", "1"), ("arg:VERSION", "x"), ("arg:OTHER", "y"), ("env:PATH", "p")]);
        let b = prov(&[("op", "2"), ("arg:VERSION", "z"), ("arg:OTHER", "y"), ("env:PATH", "p")]);
        assert_eq!(explain(&b, &a, &no_earlier).expect("arg").reason, "build arg VERSION changed");

        let a = prov(&[("op", "1"), ("base:docker.io/library/x:1", "sha256:00112233445566778899")]);
        let b = prov(&[("op", "1"), ("base:docker.io/library/x:1", "sha256:aabbccddeeff00112233")]);
        assert_eq!(explain(&b, &a, &no_earlier).expect("base").reason, "base image docker.io/library/x:1 changed (sha256:001122334455… -> sha256:aabbccddeeff…)");

        let d = VertexDigest([7; 32]);
        let a = prov(&[("op", "1"), ("parent", "p1")]);
        let b = prov(&[("op", "1"), ("parent", "p2")]);
        let e = explain(&b, &a, &|n: &str| (n == "parent").then_some((d, true))).expect("parent");
        assert_eq!((e.reason.as_str(), e.earlier), ("the step before it ran", Some(d)));

        assert_eq!(explain(&a, &a, &no_earlier), None);

        // A step that reads more files than are named one by one.
        let a = prov(&[("op", "1"), ("files:src/", "1")]);
        let b = prov(&[("op", "1"), ("files:src/", "2")]);
        assert_eq!(explain(&b, &a, &no_earlier).expect("files").reason, "src/: a file changed");
    }

    #[test]
    fn the_nearest_entry_shares_the_most_ingredients() {
        let now = prov(&[("op", "1"), ("parent", "p"), ("file:a", "1")]);
        let far = prov(&[("op", "2"), ("parent", "q"), ("file:a", "1")]);
        let near = prov(&[("op", "1"), ("parent", "p"), ("file:a", "2")]);
        assert_eq!(nearest(&now, [&far, &near]), Some(&near));
    }
}
