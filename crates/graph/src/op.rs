//! The operations a vertex can perform. Each op refers to its vertex's inputs by index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// An empty filesystem (`FROM scratch`).
    Scratch,
    /// A base image, resolved to a manifest digest before the build.
    Image(ImageOp),
    /// The build context (or another local directory).
    Local(LocalOp),
    /// A file downloaded over http(s) (`ADD URL`).
    Http(HttpOp),
    /// A checkout of a git repository (`ADD https://host/repo.git#ref:subdir`).
    Git(GitOp),
    /// A process run in the sandbox on input 0 (`RUN`).
    Exec(ExecOp),
    /// File changes applied to input 0 (`COPY`, `ADD`, `WORKDIR`).
    File(FileOp),
    /// The layers of every input stacked in order (`COPY --link`).
    Merge,
}

impl Op {
    /// Input indexes the op refers to besides its positional inputs (for validation).
    pub fn input_indexes(&self) -> Vec<usize> {
        match self {
            Op::Exec(e) => {
                let mut v = vec![0];
                for m in &e.mounts {
                    match &m.kind {
                        MountKind::Bind { input, .. } => v.push(*input),
                        MountKind::Cache { from: Some(input), .. } => v.push(*input),
                        _ => {}
                    }
                }
                v
            }
            Op::File(f) => {
                let mut v = vec![0];
                for a in &f.actions {
                    if let FileAction::Copy(c) = a {
                        v.push(c.source_input);
                    }
                }
                v
            }
            _ => Vec::new(),
        }
    }

    /// A short word for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Scratch => "scratch",
            Op::Image(_) => "image",
            Op::Local(_) => "local",
            Op::Http(_) => "http",
            Op::Git(_) => "git",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge => "merge",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageOp {
    /// The reference as the user wrote it after normalization, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The resolved manifest digest (`sha256:…`); the vertex identity.
    pub manifest_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalOp {
    /// Which local source: `context`, or a named context.
    pub name: String,
    /// Exclusion patterns (.dockerignore) applied before anything is read.
    pub excludes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOp {
    pub url: String,
    /// `sha256:…` the download must match (`ADD --checksum`).
    pub checksum: Option<String>,
    /// File name to save as (from the URL path).
    pub filename: String,
}

/// A git repository at one ref. The solver resolves the ref to a commit (`git ls-remote`) before
/// anything else, so the result is keyed by the commit, not by the ref's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitOp {
    /// The remote as `git` takes it (`https://host/repo.git`, `git@host:repo.git`, `git://…`),
    /// without the `#ref:subdir` fragment.
    pub remote: String,
    /// Branch, tag or commit; empty means the remote's HEAD.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    /// Only this directory of the checkout (relative); empty means all of it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subdir: String,
    /// Keep the `.git` directory (`ADD --keep-git-dir=true`).
    #[serde(default)]
    pub keep_git_dir: bool,
    /// The commit the ref must resolve to (`ADD --checksum=<commit>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// How much a RUN is confined (`RUN --security=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// Docker's default capabilities, seccomp filter and masked /proc paths.
    #[default]
    Sandbox,
    /// Every capability, no seccomp filter, nothing masked (needs the `security.insecure`
    /// entitlement from whoever starts the build).
    Insecure,
}

impl Security {
    pub fn is_sandbox(&self) -> bool {
        *self == Security::Sandbox
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's network (what buildkitd does without CNI).
    #[default]
    Host,
    /// A private network namespace with only loopback.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// `KEY=value`, in order.
    pub env: Vec<String>,
    pub cwd: String,
    /// `user[:group]` as written; resolved in the root filesystem at run time. Empty = root.
    pub user: String,
    pub network: Network,
    pub mounts: Vec<Mount>,
    /// Left out of the encoding when `sandbox`, so ordinary steps keep their digests.
    #[serde(default, skip_serializing_if = "Security::is_sandbox")]
    pub security: Security,
    /// `--add-host NAME:IP` entries for /etc/hosts, as (name, ip); left out of the encoding
    /// when empty, so ordinary steps keep their digests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the sandbox.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A path of input `input` (read-only unless `readwrite`; writes are discarded).
    Bind { input: usize, source: String, readwrite: bool },
    /// A persistent directory kept between builds, keyed by `id`.
    Cache {
        id: String,
        sharing: CacheSharing,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<usize>,
        source: String,
        readonly: bool,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    Tmpfs { size: Option<u64> },
    /// A secret from the build's secret store; never cached, never in a layer.
    Secret { id: String, required: bool, uid: u32, gid: u32, mode: u32 },
    /// An ssh-agent socket forwarded from the build's `--ssh ID=…`; only the id is part of the
    /// op (the socket's path on the host never is), and nothing of it stays in a layer.
    Ssh { id: String, required: bool, uid: u32, gid: u32, mode: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    pub actions: Vec<FileAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    Copy(CopyAction),
    Mkdir(MkdirAction),
    /// A file with given content (`COPY <<EOF`).
    Mkfile(MkfileAction),
}

/// Owner for written files. Names are resolved in the destination's /etc/passwd and /etc/group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chown {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyAction {
    /// Which input the sources are read from.
    pub source_input: usize,
    /// Source paths or wildcard patterns, relative to the source root.
    pub sources: Vec<String>,
    /// Destination path (absolute). A trailing `/` means "into this directory".
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chown: Option<Chown>,
    /// `--chmod` of written files (serialized as written: `755`, `u+x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chmod: Option<crate::Chmod>,
    /// Unpack local tar archives (ADD).
    #[serde(default)]
    pub unpack_archives: bool,
    /// Keep source directory structure under dest (`--parents`).
    #[serde(default)]
    pub parents: bool,
    /// Patterns not copied (`--exclude`).
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Source of these bytes is an http download (file name decided there).
    #[serde(default)]
    pub from_http: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkdirAction {
    pub path: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chown: Option<Chown>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MkfileAction {
    pub path: String,
    pub data: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chown: Option<Chown>,
}

/// Free-form key/value metadata some ops carry (kept sorted).
pub type Attrs = BTreeMap<String, String>;
