//! Vertices, their digests and the definition (the whole DAG).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::op::Op;

/// Identity of a vertex: blake3 over the canonical encoding of its op and input digests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct VertexDigest(pub [u8; 32]);

impl VertexDigest {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.hex())
    }
}

impl fmt::Debug for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.short())
    }
}

impl From<VertexDigest> for String {
    fn from(d: VertexDigest) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for VertexDigest {
    type Error = GraphError;
    fn try_from(s: String) -> Result<Self, GraphError> {
        let hex_part = s.strip_prefix("blake3:").ok_or_else(|| GraphError::BadDigest(s.clone()))?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| GraphError::BadDigest(s.clone()))?;
        Ok(VertexDigest(out))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("invalid vertex digest {0:?} (want blake3:<64 hex digits>)")]
    BadDigest(String),
    #[error("vertex {vertex} names input {input} which is not in the definition")]
    MissingInput { vertex: VertexDigest, input: VertexDigest },
    #[error("vertex {vertex}: op refers to input #{index} but the vertex has {count} inputs")]
    InputIndex { vertex: VertexDigest, index: usize, count: usize },
}

/// Human-facing facts about a vertex that do not change what it computes (not hashed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexMeta {
    /// What progress shows, e.g. `[build 2/5] RUN make`.
    pub description: String,
    /// Source location, e.g. `Dockerfile:7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Run even when a cache entry exists (`--no-cache`).
    #[serde(default)]
    pub ignore_cache: bool,
    /// The build args in scope, name -> [`value_digest`] of the value (never the value): the
    /// solver names the one that changed when the step misses the cache.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
}

/// A digest of a value that may be shown in cache metadata instead of the value.
pub fn value_digest(value: &str) -> String {
    blake3::hash(value.as_bytes()).to_hex()[..32].to_string()
}

/// One node of the DAG.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    pub op: Op,
    pub inputs: Vec<VertexDigest>,
    #[serde(default)]
    pub meta: VertexMeta,
}

impl Vertex {
    /// The digest of this vertex: blake3("builder-vertex-v1\0" + canonical JSON of {op, inputs}).
    ///
    /// serde_json writes struct fields in declaration order and every map in the ops is a
    /// BTreeMap, so the encoding is canonical for a given crate version.
    pub fn digest(&self) -> VertexDigest {
        #[derive(Serialize)]
        struct Canonical<'a> {
            op: &'a Op,
            inputs: &'a [VertexDigest],
        }
        let bytes = serde_json::to_vec(&Canonical { op: &self.op, inputs: &self.inputs }).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(b"builder-vertex-v1\0");
        h.update(&bytes);
        VertexDigest(*h.finalize().as_bytes())
    }
}

/// The whole DAG: every vertex by digest. Inputs always exist (checked by [`Definition::validate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    pub vertices: BTreeMap<VertexDigest, Vertex>,
}

impl Definition {
    pub fn get(&self, d: &VertexDigest) -> Option<&Vertex> {
        self.vertices.get(d)
    }

    /// Checks that every input exists and every op's input index is in range.
    pub fn validate(&self) -> Result<(), GraphError> {
        for (d, v) in &self.vertices {
            for i in &v.inputs {
                if !self.vertices.contains_key(i) {
                    return Err(GraphError::MissingInput { vertex: *d, input: *i });
                }
            }
            for index in v.op.input_indexes() {
                if index >= v.inputs.len() {
                    return Err(GraphError::InputIndex { vertex: *d, index, count: v.inputs.len() });
                }
            }
        }
        Ok(())
    }

    /// The vertices `roots` need, in an order where inputs come before the vertices using them.
    pub fn topo_order(&self, roots: &[VertexDigest]) -> Vec<VertexDigest> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Iterative DFS (post-order) so a deep chain of RUN steps cannot overflow the stack.
        for root in roots {
            let mut stack = vec![(*root, false)];
            while let Some((d, expanded)) = stack.pop() {
                if expanded {
                    out.push(d);
                    continue;
                }
                if !seen.insert(d) {
                    continue;
                }
                stack.push((d, true));
                if let Some(v) = self.vertices.get(&d) {
                    for i in v.inputs.iter().rev() {
                        if !seen.contains(i) {
                            stack.push((*i, false));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Builds a definition vertex by vertex; adding the same op and inputs twice yields one vertex.
#[derive(Default)]
pub struct DefinitionBuilder {
    def: Definition,
}

impl DefinitionBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex and returns its digest. A vertex already present keeps its first meta,
    /// except that `ignore_cache` is sticky.
    pub fn add(&mut self, op: Op, inputs: Vec<VertexDigest>, meta: VertexMeta) -> VertexDigest {
        let v = Vertex { op, inputs, meta };
        let d = v.digest();
        match self.def.vertices.get_mut(&d) {
            Some(existing) => existing.meta.ignore_cache |= v.meta.ignore_cache,
            None => {
                self.def.vertices.insert(d, v);
            }
        }
        d
    }

    pub fn get(&self, d: &VertexDigest) -> Option<&Vertex> {
        self.def.vertices.get(d)
    }

    pub fn finish(self) -> Definition {
        self.def
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::*;

    fn exec(args: &[&str]) -> Op {
        Op::Exec(ExecOp {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
            network: Network::Host,
            mounts: vec![],
            security: Security::Sandbox,
            extra_hosts: vec![],
        })
    }

    #[test]
    fn same_op_and_inputs_is_one_vertex() {
        let mut b = DefinitionBuilder::new();
        let base = b.add(Op::Scratch, vec![], VertexMeta::default());
        let a = b.add(exec(&["true"]), vec![base], VertexMeta { description: "one".into(), ..Default::default() });
        let c = b.add(exec(&["true"]), vec![base], VertexMeta { description: "two".into(), ..Default::default() });
        assert_eq!(a, c);
        let def = b.finish();
        assert_eq!(def.vertices.len(), 2);
        assert_eq!(def.vertices[&a].meta.description, "one");
    }

    #[test]
    fn digest_changes_with_args_and_inputs_but_not_meta() {
        let base = Vertex { op: Op::Scratch, inputs: vec![], meta: VertexMeta::default() }.digest();
        let v1 = Vertex { op: exec(&["a"]), inputs: vec![base], meta: VertexMeta::default() };
        let mut v2 = v1.clone();
        v2.meta.description = "other".into();
        assert_eq!(v1.digest(), v2.digest());
        let v3 = Vertex { op: exec(&["b"]), inputs: vec![base], meta: VertexMeta::default() };
        assert_ne!(v1.digest(), v3.digest());
        let v4 = Vertex { op: exec(&["a"]), inputs: vec![], meta: VertexMeta::default() };
        assert_ne!(v1.digest(), v4.digest());
    }

    #[test]
    fn topo_order_puts_inputs_first_and_validate_catches_dangling_inputs() {
        let mut b = DefinitionBuilder::new();
        let s = b.add(Op::Scratch, vec![], VertexMeta::default());
        let x = b.add(exec(&["x"]), vec![s], VertexMeta::default());
        let y = b.add(exec(&["y"]), vec![x], VertexMeta::default());
        let def = b.finish();
        def.validate().expect("valid");
        assert_eq!(def.topo_order(&[y]), vec![s, x, y]);
        let mut bad = def.clone();
        bad.vertices.remove(&s);
        assert!(matches!(bad.validate(), Err(GraphError::MissingInput { .. })));
    }

    #[test]
    fn a_sandboxed_run_keeps_its_encoding_and_an_insecure_one_is_another_vertex() {
        let sandboxed = exec(&["true"]);
        let json = serde_json::to_string(&sandboxed).expect("encode");
        assert!(!json.contains("security"), "{json}");
        let Op::Exec(mut e) = sandboxed.clone() else { unreachable!() };
        e.security = Security::Insecure;
        let insecure = Op::Exec(e);
        let v = |op: Op| Vertex { op, inputs: vec![], meta: VertexMeta::default() }.digest();
        assert_ne!(v(sandboxed), v(insecure.clone()));
        let back: Op = serde_json::from_str(&serde_json::to_string(&insecure).expect("encode")).expect("decode");
        assert_eq!(back, insecure);
    }

    #[test]
    fn a_git_source_is_identified_by_remote_ref_and_subdir() {
        let git = |r: &str, sub: &str| {
            Vertex {
                op: Op::Git(GitOp { remote: "git://h/r.git".into(), reference: r.into(), subdir: sub.into(), keep_git_dir: false, checksum: None }),
                inputs: vec![],
                meta: VertexMeta::default(),
            }
            .digest()
        };
        assert_eq!(git("main", ""), git("main", ""));
        assert_ne!(git("main", ""), git("v1", ""));
        assert_ne!(git("main", ""), git("main", "docs"));
        assert_eq!(Op::Git(GitOp { remote: String::new(), reference: String::new(), subdir: String::new(), keep_git_dir: true, checksum: None }).kind(), "git");
    }

    #[test]
    fn digest_round_trips_through_text() {
        let d = Vertex { op: Op::Scratch, inputs: vec![], meta: VertexMeta::default() }.digest();
        let s: String = d.into();
        assert_eq!(VertexDigest::try_from(s).expect("parse"), d);
        assert!(VertexDigest::try_from("sha256:00".to_string()).is_err());
    }
}
