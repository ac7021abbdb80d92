//! Lowering: typed Dockerfile instructions + build args + target -> `graph::Definition`.
//!
//! Each filesystem step (FROM, RUN, COPY, ADD, WORKDIR) becomes a vertex; everything else only
//! changes the image config, which is carried beside the graph as a `graph::image::ImageSpec`.
//! Only the stages the target needs are lowered. Base images are resolved (to a manifest digest
//! and config) through an [`ImageResolver`] the caller supplies, once per reference.

use std::collections::{BTreeMap, HashMap};

use graph::image::{ContainerConfig, Healthcheck as ImageHealthcheck, History, HistoryStep, ImageSpec};
use graph::{
    CacheSharing, Chown, CopyAction, DefinitionBuilder, ExecOp, FileAction, FileOp, GitOp, HttpOp, ImageOp, LocalOp, MkdirAction, MkfileAction, Mount, MountKind, Network,
    Op, VertexDigest, VertexMeta,
};

use crate::instructions::{CopyFiles, Dockerfile, Instruction, NetworkMode, Run, ShellOrExec, Stage};
use crate::scope::{Scope, StageScope};
use crate::mount::{CacheSharing as DfSharing, MountType};
use crate::words::go_quote;

/// A base image as the resolver found it.
#[derive(Clone, Debug, Default)]
pub struct ResolvedImage {
    /// Normalized reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `sha256:…` of the platform's manifest.
    pub manifest_digest: String,
    pub config: ContainerConfig,
    pub history: Vec<History>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

/// Finds base images (in the local store, or by pulling).
pub trait ImageResolver {
    /// Resolves `reference` for `platform` (`os/arch[/variant]`).
    fn resolve(&mut self, reference: &str, platform: &str) -> Result<ResolvedImage, ResolveError>;
}

/// Why a base image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name is not an image reference.
    #[error("{0}")]
    BadReference(String),
    /// Not in the store, and pulling it failed.
    #[error("image not found locally and pulling it failed: {0}")]
    Pull(String),
    /// The store holds the image for another platform only.
    #[error("image {reference} has no variant for platform {wanted} (the one here is {have}): build with --platform {have}, or add --pull to fetch {wanted} from its registry")]
    WrongPlatform { reference: String, wanted: String, have: String },
    /// The image's config or history cannot be read.
    #[error("image {what} of {reference}: {reason}")]
    BadConfig { reference: String, what: &'static str, reason: String },
    /// The image store failed.
    #[error("{0}")]
    Store(String),
}

/// What the caller decides about a build.
#[derive(Clone, Debug, Default)]
pub struct LowerOptions {
    /// `--build-arg K=V` (already resolved from the environment for `--build-arg K`).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: a stage name or index; the last stage when absent.
    pub target: Option<String>,
    /// `os/arch[/variant]` to build for.
    pub platform: String,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label K=V`, added to the final image.
    pub labels: BTreeMap<String, String>,
    /// Exclusion patterns of the build context (`.dockerignore`).
    pub context_excludes: Vec<String>,
    /// `--network none`: RUN steps without a `--network` of their own (or with `default`) get no
    /// network; otherwise they share the host's.
    pub network_none: bool,
    /// `--add-host NAME:IP`: lines added to /etc/hosts of every RUN, as (name, ip).
    pub extra_hosts: Vec<(String, String)>,
}

/// The result of lowering.
#[derive(Clone, Debug)]
pub struct LoweredBuild {
    pub definition: graph::Definition,
    /// The vertex whose filesystem is the image.
    pub target: VertexDigest,
    pub image: ImageSpec,
    /// Names of the stages lowered (for messages).
    pub stages: Vec<String>,
}

/// Why a Dockerfile cannot become a build graph.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// Something wrong at a line of the Dockerfile.
    #[error("{file}:{line}: {message}")]
    At { file: String, line: usize, message: String },
    /// The base image of `FROM` (`what` = `FROM busybox`) or `--from=busybox` cannot be had.
    #[error("{file}:{line}: {what}: {source}")]
    Image { file: String, line: usize, what: String, source: ResolveError },
    /// An instruction's words do not expand (the error names file:line:col).
    #[error(transparent)]
    Expand(#[from] crate::Error),
    #[error("unsupported syntax directive \"# syntax={0}\": only the standard Dockerfile frontend (docker/dockerfile:<version>) is built in; custom frontends are not supported")]
    UnsupportedSyntax(String),
    /// `--platform` is not `os/arch[/variant]`.
    #[error("--platform: {0}")]
    Platform(oci::Error),
    /// `--target` names no stage.
    #[error("target stage \"{0}\" could not be found")]
    UnknownTarget(String),
    /// A stage needs itself (through `COPY --from` or `FROM`).
    #[error("circular dependency between build stages at stage {0}")]
    StageCycle(String),
    /// `--from=NAME` names a later stage.
    #[error("{file}:{line}: stage {name:?} is used before it is defined (stage {stage})")]
    StageUsedBeforeDefined { file: String, line: usize, name: String, stage: String },
}

/// The Dockerfile `# syntax=` directives this frontend accepts: the standard frontend at any
/// version (with or without `-labs`), under `docker/dockerfile` or `docker.io/docker/dockerfile`.
pub fn check_syntax(syntax: Option<&str>) -> Result<(), LowerError> {
    let Some(s) = syntax else { return Ok(()) };
    let s = s.trim();
    let name = s.split('@').next().unwrap_or(s);
    let repo = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    if repo == "docker/dockerfile" || repo == "docker/dockerfile-upstream" {
        return Ok(());
    }
    Err(LowerError::UnsupportedSyntax(s.to_string()))
}

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The PATH BuildKit gives a Linux stage whose base image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Lowers `df` into a build graph for `opts.target`.
pub fn lower(df: &Dockerfile, opts: &LowerOptions, resolver: &mut dyn ImageResolver) -> Result<LoweredBuild, LowerError> {
    check_syntax(df.directives.syntax.as_deref())?;
    let mut l = Lowerer::new(df, opts, resolver)?;
    let target = l.target_index()?;
    let state = l.stage(target)?;
    let mut image = state.image_spec();
    if !opts.labels.is_empty() {
        let labels = image.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    let stages = l.lowered_names();
    Ok(LoweredBuild { definition: l.b.finish(), target: state.fs, image, stages })
}

/// A stage after lowering: its filesystem vertex and its image config.
#[derive(Clone)]
struct StageState {
    fs: VertexDigest,
    config: ContainerConfig,
    author: Option<String>,
    base_history: Vec<History>,
    steps: Vec<HistoryStep>,
    architecture: String,
    os: String,
    variant: Option<String>,
    /// The stage's ARG and ENV variables (a stage built FROM this one goes on with them).
    vars: StageScope,
}

impl StageState {
    fn image_spec(&self) -> ImageSpec {
        ImageSpec {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
            config: self.config.clone(),
            author: self.author.clone(),
            base_history: self.base_history.clone(),
            steps: self.steps.clone(),
        }
    }
}

struct Lowerer<'a> {
    df: &'a Dockerfile,
    opts: &'a LowerOptions,
    resolver: &'a mut dyn ImageResolver,
    b: DefinitionBuilder,
    /// Global ARG values (before the first FROM), plus BuildKit's automatic ARGs.
    scope: Scope,
    done: HashMap<usize, StageState>,
    in_progress: Vec<usize>,
    images: HashMap<String, ResolvedImage>,
    local: Option<VertexDigest>,
    multi: bool,
}

/// The platform of the machine the build runs on, in OCI words (`linux/amd64`, `linux/arm64`, …):
/// [`oci::Platform::host`], normalized as BuildKit's `BUILDPLATFORM` is.
pub fn build_platform() -> String {
    oci::Platform::host().normalized().to_string()
}

impl<'a> Lowerer<'a> {
    fn new(df: &'a Dockerfile, opts: &'a LowerOptions, resolver: &'a mut dyn ImageResolver) -> Result<Self, LowerError> {
        let host = oci::Platform::host();
        let target = if opts.platform.is_empty() { host.clone() } else { opts.platform.parse().map_err(LowerError::Platform)? };
        // BuildKit's TARGETSTAGE: the stage built, named as `--target` names it, else the last one's name.
        let target_stage = opts.target.clone().or_else(|| df.stages.last().and_then(|s| s.name()).map(str::to_string)).unwrap_or_default();
        let scope = Scope::with_platforms(df, &opts.build_args, &host, &target, &target_stage)?;
        Ok(Lowerer { df, opts, resolver, b: DefinitionBuilder::new(), scope, done: HashMap::new(), in_progress: Vec::new(), images: HashMap::new(), local: None, multi: df.stages.len() > 1 })
    }

    fn platform(&self) -> String {
        if self.opts.platform.is_empty() { build_platform() } else { self.opts.platform.clone() }
    }

    fn target_index(&self) -> Result<usize, LowerError> {
        match &self.opts.target {
            None => Ok(self.df.stages.len() - 1),
            Some(t) => self.stage_by_name(t).ok_or_else(|| LowerError::UnknownTarget(t.clone())),
        }
    }

    fn stage_by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(i) = self.df.stages.iter().position(|s| s.name() == Some(lower.as_str())) {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < self.df.stages.len())
    }

    /// A stage reference (`--from`, FROM) that names an earlier stage.
    fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        self.stage_by_name(name).filter(|i| *i < before)
    }

    fn lowered_names(&self) -> Vec<String> {
        let mut idx: Vec<usize> = self.done.keys().copied().collect();
        idx.sort();
        idx.into_iter().map(|i| self.stage_label(i)).collect()
    }

    fn stage_label(&self, i: usize) -> String {
        self.df.stages[i].name().map(str::to_string).unwrap_or_else(|| format!("stage-{i}"))
    }

    fn local(&mut self) -> VertexDigest {
        if let Some(l) = self.local {
            return l;
        }
        let d = self.b.add(Op::Local(LocalOp { name: "context".into(), excludes: self.opts.context_excludes.clone() }), vec![], VertexMeta::default());
        self.local = Some(d);
        d
    }

    fn resolve_image(&mut self, reference: &str, platform: &str) -> Result<ResolvedImage, ResolveError> {
        let key = format!("{reference} {platform}");
        if let Some(r) = self.images.get(&key) {
            return Ok(r.clone());
        }
        let r = self.resolver.resolve(reference, platform)?;
        // A store holds one platform of an image; building for another must not silently use it.
        let mut want = platform.split('/');
        let (os, arch) = (want.next().unwrap_or("linux"), want.next().unwrap_or("amd64"));
        if !r.architecture.is_empty() && (r.architecture != arch || (!r.os.is_empty() && r.os != os)) {
            let have = format!("{}/{}", if r.os.is_empty() { os } else { &r.os }, r.architecture);
            return Err(ResolveError::WrongPlatform { reference: r.reference, wanted: platform.to_string(), have });
        }
        self.images.insert(key, r.clone());
        Ok(r)
    }

    fn image_vertex(&mut self, r: &ResolvedImage, description: String, platform: String) -> VertexDigest {
        self.b.add(
            Op::Image(ImageOp { reference: r.reference.clone(), manifest_digest: r.manifest_digest.clone(), platform }),
            vec![],
            VertexMeta { description, ..Default::default() },
        )
    }

    /// Lowers stage `i` (and the stages it needs) once.
    fn stage(&mut self, i: usize) -> Result<StageState, LowerError> {
        if let Some(s) = self.done.get(&i) {
            return Ok(s.clone());
        }
        if self.in_progress.contains(&i) {
            return Err(LowerError::StageCycle(self.stage_label(i)));
        }
        self.in_progress.push(i);
        let st = self.lower_stage(i)?;
        self.in_progress.retain(|x| *x != i);
        self.done.insert(i, st.clone());
        Ok(st)
    }

    fn lower_stage(&mut self, i: usize) -> Result<StageState, LowerError> {
        let df = self.df;
        let stage: &Stage = &df.stages[i];
        let line = stage.from.span.line;
        let total = 1 + stage.instructions.iter().filter(|ins| makes_vertex(ins)).count();
        let label = self.stage_label(i);
        let multi = self.multi;
        let prefix = |k: usize| if multi { format!("[{label} {k}/{total}]") } else { format!("[{k}/{total}]") };
        let image_name = self.scope.expand_from(&stage.from.image.value).map_err(|e| at(df, line, e.to_string()))?;
        // `FROM --platform=…` (often `$BUILDPLATFORM`, to compile natively for another target).
        let platform = match &stage.from.platform {
            Some(w) => {
                let p = self.scope.expand_from(&w.value).map_err(|e| at(df, line, e.to_string()))?;
                p.trim().parse::<oci::Platform>().map_err(|e| at(df, line, format!("FROM --platform: {e}")))?.to_string()
            }
            None => self.platform(),
        };
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap_or("linux").to_string(), parts.next().unwrap_or("amd64").to_string());
        let variant = parts.next().map(str::to_string);
        let mut from_stage = false;
        let mut st = if image_name.eq_ignore_ascii_case("scratch") {
            let fs = self.b.add(Op::Scratch, vec![], VertexMeta::default());
            // BuildKit's empty image: WorkingDir `/` (PATH is added below).
            let config = ContainerConfig { working_dir: Some("/".into()), ..Default::default() };
            StageState { fs, config, author: None, base_history: vec![], steps: vec![], architecture: arch, os, variant, vars: self.scope.for_stage(&[]) }
        } else if let Some(parent) = self.stage_ref(&image_name, i) {
            from_stage = true;
            self.stage(parent)?
        } else {
            let r = self.resolve_image(&image_name, &platform).map_err(|source| LowerError::Image { file: df.file_name.clone(), line, what: format!("FROM {image_name}"), source })?;
            let fs = self.image_vertex(&r, format!("{} FROM {}@{}", prefix(1), r.reference, r.manifest_digest), platform.clone());
            StageState {
                fs,
                config: r.config.clone(),
                author: None,
                base_history: r.history.clone(),
                steps: vec![],
                architecture: if r.architecture.is_empty() { arch } else { r.architecture.clone() },
                os: if r.os.is_empty() { os } else { r.os.clone() },
                variant: r.variant.clone().or(variant),
                vars: self.scope.for_stage(&[]),
            }
        };
        // As BuildKit: a stage always has a PATH (the default one when its base has none).
        if st.os != "windows" && !st.config.env.as_deref().unwrap_or_default().iter().any(|e| e.starts_with("PATH=")) {
            st.config.env.get_or_insert_with(Vec::new).push(format!("PATH={DEFAULT_PATH}"));
        }
        if !from_stage {
            st.vars = self.scope.for_stage(st.config.env.as_deref().unwrap_or_default());
        }
        // ONBUILD triggers of the base run first; the new image does not inherit them.
        let triggers = st.config.on_build.take().unwrap_or_default();
        let mut instructions: Vec<Instruction> = Vec::new();
        for t in &triggers {
            let text = format!("FROM scratch\n{t}\n");
            let parsed = Dockerfile::parse(text.as_bytes(), &df.file_name).map_err(|e| at(df, line, format!("ONBUILD trigger {t:?} of the base image: {e}")))?;
            if let Some(s) = parsed.stages.into_iter().next() {
                instructions.extend(s.instructions);
            }
        }
        instructions.extend(stage.instructions.iter().cloned());

        let mut shell_cmd: Vec<String> = st.config.shell.clone().unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect());
        let mut cmd_set = false;
        let mut k = 1;
        for ins in &instructions {
            let ins_line = ins.span().line;
            let ins = st.vars.apply(ins)?;
            let text = ins.original_text().trim().to_string();
            let shown = text.lines().next().unwrap_or_default().to_string();
            if makes_vertex(&ins) {
                k += 1;
            }
            let desc = format!("{} {}", prefix(k), shown);
            let build_args = st.vars.declared_args().iter().filter_map(|(k, v)| Some((k.clone(), graph::value_digest(v.as_deref()?)))).collect();
            let meta = VertexMeta { description: desc.clone(), location: Some(format!("{}:{}", df.file_name, ins_line)), ignore_cache: self.opts.no_cache, build_args };
            match &ins {
                Instruction::Arg(a) => {
                    let words: Vec<String> = a.args.iter().map(|d| d.default.as_ref().map_or_else(|| d.name.clone(), |v| format!("{}={v}", d.name))).collect();
                    st.steps.push(config_step(format!("ARG {}", words.join(" "))));
                }
                Instruction::Env(e) => {
                    st.config.env = Some(st.vars.image_env());
                    st.steps.push(config_step(format!("ENV {}", pairs_text(&e.pairs))));
                }
                Instruction::Label(lb) => {
                    let labels = st.config.labels.get_or_insert_with(BTreeMap::new);
                    for kv in &lb.pairs {
                        labels.insert(kv.key.clone(), kv.value.clone());
                    }
                    st.steps.push(config_step(format!("LABEL {}", pairs_text(&lb.pairs))));
                }
                Instruction::Expose(e) => {
                    let mut listed = Vec::new();
                    for p in &e.ports {
                        listed.extend(expose_ports(p).map_err(|m| at(df, ins_line, m))?);
                    }
                    let ports = st.config.exposed_ports.get_or_insert_with(BTreeMap::new);
                    for p in &listed {
                        ports.insert(p.clone(), serde_json::json!({}));
                    }
                    st.steps.push(config_step(format!("EXPOSE [{}]", listed.join(" "))));
                }
                Instruction::Volume(v) => {
                    let vols = st.config.volumes.get_or_insert_with(BTreeMap::new);
                    for p in &v.paths {
                        vols.insert(p.clone(), serde_json::json!({}));
                    }
                    st.steps.push(config_step(format!("VOLUME [{}]", v.paths.join(" "))));
                }
                Instruction::User(u) => {
                    st.config.user = Some(u.user.clone());
                    st.steps.push(config_step(format!("USER {}", u.user)));
                }
                Instruction::Workdir(w) => {
                    let wd = resolve_path(st.config.working_dir.as_deref().unwrap_or("/"), &w.path);
                    st.config.working_dir = Some(wd.clone());
                    let chown = st.config.user.as_ref().filter(|u| !u.is_empty()).map(|u| chown_of(u));
                    let op = Op::File(FileOp { actions: vec![FileAction::Mkdir(MkdirAction { path: wd.clone(), mode: 0o755, chown })] });
                    let v = self.b.add(op, vec![st.fs], meta);
                    st.fs = v;
                    st.steps.push(HistoryStep { created_by: format!("WORKDIR {wd}"), comment: Some(HISTORY_COMMENT.into()), vertex: Some(v) });
                }
                Instruction::Cmd(c) => {
                    let cmd = command_args(&c.command, &shell_cmd);
                    st.steps.push(config_step(format!("CMD {}", go_quoted_list(&cmd))));
                    st.config.cmd = Some(cmd);
                    // As BuildKit does for every CMD (the field matters on Windows only).
                    st.config.args_escaped = Some(true);
                    cmd_set = true;
                }
                Instruction::Entrypoint(e) => {
                    let entrypoint = command_args(&e.command, &shell_cmd);
                    st.steps.push(config_step(format!("ENTRYPOINT {}", go_quoted_list(&entrypoint))));
                    st.config.entrypoint = Some(entrypoint);
                    if !cmd_set {
                        st.config.cmd = None;
                    }
                }
                Instruction::Shell(s) => {
                    shell_cmd = s.shell.clone();
                    st.config.shell = Some(s.shell.clone());
                    st.steps.push(config_step(format!("SHELL [{}]", s.shell.join(" "))));
                }
                Instruction::Healthcheck(h) => {
                    st.config.healthcheck = Some(ImageHealthcheck {
                        test: Some(h.test.clone()),
                        interval: h.interval.map(|v| v as i64),
                        timeout: h.timeout.map(|v| v as i64),
                        start_period: h.start_period.map(|v| v as i64),
                        start_interval: h.start_interval.map(|v| v as i64),
                        retries: h.retries.map(|v| v as i64),
                    });
                    st.steps.push(config_step(healthcheck_history(h)));
                }
                Instruction::StopSignal(s) => {
                    st.config.stop_signal = Some(s.signal.clone());
                    st.steps.push(config_step(format!("STOPSIGNAL {}", s.signal)));
                }
                Instruction::OnBuild(o) => {
                    // As BuildKit: a trigger is kept in the config but is no history step.
                    st.config.on_build.get_or_insert_with(Vec::new).push(o.expression.clone());
                }
                Instruction::Maintainer(m) => {
                    st.author = Some(m.name.clone());
                    st.steps.push(config_step(format!("MAINTAINER {}", m.name)));
                }
                Instruction::Run(r) => {
                    let (v, argv) = self.lower_run(i, r, &st, &shell_cmd, meta)?;
                    st.fs = v;
                    let created_by = format!("{} # buildkit", run_history(&argv, &st.vars.run_history_args()));
                    st.steps.push(HistoryStep { created_by, comment: Some(HISTORY_COMMENT.into()), vertex: Some(v) });
                }
                Instruction::Copy(c) | Instruction::Add(c) => {
                    let is_add = matches!(ins, Instruction::Add(_));
                    let v = self.lower_copy(i, c, is_add, &st, meta)?;
                    st.fs = v;
                    st.steps.push(HistoryStep { created_by: format!("{} # buildkit", copy_history(c, is_add)), comment: Some(HISTORY_COMMENT.into()), vertex: Some(v) });
                }
            }
        }
        Ok(st)
    }

    /// The RUN's vertex and the command it runs (for its history text).
    fn lower_run(&mut self, i: usize, r: &Run, st: &StageState, shell_cmd: &[String], meta: VertexMeta) -> Result<(VertexDigest, Vec<String>), LowerError> {
        // `RUN <<EOF` whose script starts with `#!`: BuildKit runs it as a file (mode 0755) from a
        // read-only mount at /dev/pipes, so the interpreter it names runs it.
        let mut pipe_script: Option<(String, String)> = None;
        let argv = match &r.command {
            ShellOrExec::Exec(a) => a.clone(),
            ShellOrExec::Shell(s) => {
                let mut script = s.clone();
                if let Some(h) = r.heredocs.first() {
                    if s.trim().starts_with("<<") && r.heredocs.len() == 1 && !s.trim().contains(' ') {
                        if h.content.starts_with("#!") {
                            script = format!("/dev/pipes/{}", h.name);
                            pipe_script = Some((h.name.clone(), h.content.clone()));
                        } else {
                            // `RUN <<EOF … EOF`: the heredoc is the script.
                            script = h.content.clone();
                        }
                    } else {
                        for h in &r.heredocs {
                            script.push('\n');
                            script.push_str(&h.content);
                            script.push_str(&h.name);
                        }
                    }
                }
                let mut v: Vec<String> = shell_cmd.to_vec();
                v.push(script);
                v
            }
        };
        // The process sees the image's env and the stage's ARGs, the one set last winning.
        let mut env = st.vars.run_env();
        let mut inputs = vec![st.fs];
        let mut mounts = Vec::new();
        if let Some((name, data)) = pipe_script {
            let scratch = self.b.add(Op::Scratch, vec![], VertexMeta::default());
            let file = Op::File(FileOp { actions: vec![FileAction::Mkfile(MkfileAction { path: format!("/{name}"), data, mode: 0o755, chown: None })] });
            let script = self.b.add(file, vec![scratch], VertexMeta { description: "[internal] preparing inline document".into(), ..Default::default() });
            inputs.push(script);
            mounts.push(Mount { target: "/dev/pipes".into(), kind: MountKind::Bind { input: inputs.len() - 1, source: "/".into(), readwrite: false } });
        }
        let mut ssh_mounts = 0usize;
        for m in &r.mounts {
            let mut input_for = |this: &mut Self, from: &Option<String>| -> Result<usize, LowerError> {
                let v = match from {
                    None => this.local(),
                    Some(f) => this.source_vertex(i, f, r.span.line)?,
                };
                inputs.push(v);
                Ok(inputs.len() - 1)
            };
            let target = m.target.clone().unwrap_or_default();
            let target = if target.is_empty() && m.kind == MountType::Secret {
                format!("/run/secrets/{}", m.id.clone().unwrap_or_default())
            } else if target.is_empty() && m.kind == MountType::Ssh {
                // BuildKit's default: one socket per ssh mount, numbered in order.
                format!("/run/buildkit/ssh_agent.{ssh_mounts}")
            } else {
                resolve_path(st.config.working_dir.as_deref().unwrap_or("/"), &target)
            };
            let kind = match m.kind {
                MountType::Bind => {
                    let input = input_for(self, &m.from)?;
                    MountKind::Bind { input, source: m.source.clone().unwrap_or_else(|| "/".into()), readwrite: !m.readonly }
                }
                MountType::Cache => {
                    let from = match &m.from {
                        Some(_) => Some(input_for(self, &m.from)?),
                        None => None,
                    };
                    MountKind::Cache {
                        id: m.id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| target.clone()),
                        sharing: match m.sharing {
                            Some(DfSharing::Private) => CacheSharing::Private,
                            Some(DfSharing::Locked) => CacheSharing::Locked,
                            _ => CacheSharing::Shared,
                        },
                        from,
                        source: m.source.clone().unwrap_or_default(),
                        readonly: m.readonly,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o755),
                    }
                }
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size.map(|s| s as u64) },
                MountType::Secret => MountKind::Secret {
                    id: m.id.clone().unwrap_or_else(|| target.rsplit('/').next().unwrap_or_default().to_string()),
                    required: m.required,
                    uid: m.uid.unwrap_or(0),
                    gid: m.gid.unwrap_or(0),
                    mode: m.mode.unwrap_or(0o400),
                },
                MountType::Ssh => {
                    if m.source.is_some() {
                        return Err(at(self.df, r.span.line, format!("--mount={}: ssh does not support source", m.raw)));
                    }
                    ssh_mounts += 1;
                    MountKind::Ssh {
                        id: m.id.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
                        required: m.required,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        mode: m.mode.unwrap_or(0o600),
                    }
                }
            };
            // The first agent socket is the RUN's SSH_AUTH_SOCK unless the env names one.
            if matches!(kind, MountKind::Ssh { .. }) && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                env.push(format!("SSH_AUTH_SOCK={target}"));
            }
            mounts.push(Mount { target, kind });
        }
        // Whether the build may run it (`--allow security.insecure`) is the solver's decision.
        let security = match r.security {
            Some(crate::instructions::SecurityMode::Insecure) => graph::Security::Insecure,
            _ => graph::Security::Sandbox,
        };
        let network = match r.network {
            Some(NetworkMode::None) => Network::None,
            Some(NetworkMode::Host) => Network::Host,
            Some(NetworkMode::Default) | None if self.opts.network_none => Network::None,
            Some(NetworkMode::Default) | None => Network::Host,
        };
        let op = ExecOp {
            args: argv.clone(),
            env,
            cwd: st.config.working_dir.clone().unwrap_or_else(|| "/".into()),
            user: st.config.user.clone().unwrap_or_default(),
            network,
            mounts,
            security,
            extra_hosts: self.opts.extra_hosts.clone(),
        };
        let v = self.b.add(Op::Exec(op), inputs, meta);
        Ok((v, argv))
    }

    /// The vertex `--from=NAME` names: an earlier stage, or an image.
    fn source_vertex(&mut self, current: usize, name: &str, line: usize) -> Result<VertexDigest, LowerError> {
        if let Some(s) = self.stage_ref(name, current) {
            return Ok(self.stage(s)?.fs);
        }
        if self.stage_by_name(name).is_some() {
            return Err(LowerError::StageUsedBeforeDefined { file: self.df.file_name.clone(), line, name: name.to_string(), stage: self.stage_label(current) });
        }
        let platform = self.platform();
        let r = self.resolve_image(name, &platform).map_err(|source| LowerError::Image { file: self.df.file_name.clone(), line, what: format!("--from={name}"), source })?;
        Ok(self.image_vertex(&r, format!("[{}] FROM {}@{}", self.stage_label(current), r.reference, r.manifest_digest), platform))
    }

    fn lower_copy(&mut self, i: usize, c: &CopyFiles, is_add: bool, st: &StageState, meta: VertexMeta) -> Result<VertexDigest, LowerError> {
        let line = c.span.line;
        let wd = st.config.working_dir.clone().unwrap_or_else(|| "/".into());
        let mut dest = resolve_path(&wd, &c.dest.value);
        if (c.dest.value.ends_with('/') || c.dest.value == "." || c.dest.value.ends_with("/.")) && !dest.ends_with('/') {
            dest.push('/');
        }
        let chown = c.chown.as_ref().filter(|s| !s.is_empty()).map(|s| chown_of(s));
        let chmod = match c.chmod.as_deref().filter(|s| !s.is_empty()) {
            Some(m) => Some(graph::Chmod::parse(m).map_err(|e| at(self.df, line, e.to_string()))?),
            None => None,
        };
        // With --link the files are copied onto an empty filesystem and stacked by a merge.
        let base = if c.link { self.b.add(Op::Scratch, vec![], VertexMeta::default()) } else { st.fs };
        let mut actions = Vec::new();
        let mut inputs = vec![base];
        let mut local_sources = Vec::new();
        for s in &c.sources {
            let v = s.value.clone();
            if !c.heredocs.is_empty() && v.starts_with("<<") {
                continue;
            }
            if let Some(git) = git_source(&v).filter(|_| is_add) {
                let src = self.b.add(
                    Op::Git(GitOp { checksum: c.checksum.clone().or(git.checksum.clone()), keep_git_dir: c.keep_git_dir.unwrap_or(git.keep_git_dir), ..git }),
                    vec![],
                    VertexMeta { description: format!("[internal] load git source {v}"), location: Some(format!("{}:{line}", self.df.file_name)), ignore_cache: self.opts.no_cache, ..Default::default() },
                );
                inputs.push(src);
                // The checkout's contents go into dest, as a directory copy does.
                actions.push(FileAction::Copy(CopyAction {
                    source_input: inputs.len() - 1,
                    sources: vec!["/".into()],
                    dest: dest.clone(),
                    chown: chown.clone(),
                    chmod: chmod.clone(),
                    unpack_archives: false,
                    parents: false,
                    excludes: c.exclude.clone(),
                    from_http: false,
                }));
            } else if is_add && (v.starts_with("http://") || v.starts_with("https://")) {
                let filename = url_filename(&v);
                let http = self.b.add(
                    Op::Http(HttpOp { url: v.clone(), checksum: c.checksum.clone(), filename: filename.clone() }),
                    vec![],
                    // Not a step of its own in the progress, but a failed download names the ADD's line.
                    VertexMeta { location: Some(format!("{}:{line}", self.df.file_name)), ..Default::default() },
                );
                inputs.push(http);
                actions.push(FileAction::Copy(CopyAction {
                    source_input: inputs.len() - 1,
                    sources: vec![filename],
                    dest: dest.clone(),
                    chown: chown.clone(),
                    chmod: chmod.clone(),
                    unpack_archives: false,
                    parents: false,
                    excludes: vec![],
                    from_http: true,
                }));
            } else {
                local_sources.push(v);
            }
        }
        if !local_sources.is_empty() {
            let src = match &c.from {
                Some(f) => self.source_vertex(i, f, line)?,
                None => self.local(),
            };
            inputs.push(src);
            actions.push(FileAction::Copy(CopyAction {
                source_input: inputs.len() - 1,
                sources: local_sources,
                dest: dest.clone(),
                chown: chown.clone(),
                chmod: chmod.clone(),
                unpack_archives: is_add && c.unpack.unwrap_or(true) && c.from.is_none(),
                parents: c.parents,
                excludes: c.exclude.clone(),
                from_http: false,
            }));
        }
        // `COPY <<EOF /dest`: as in BuildKit, each heredoc is a file named after its delimiter
        // (0644, root) on an empty filesystem, copied like any other source: into /dest when it is
        // (or ends up being) a directory, else as /dest; through symlinks; with --chown/--chmod.
        let copied = c.heredocs.len() + c.sources.iter().filter(|s| c.heredocs.is_empty() || !s.value.starts_with("<<")).count();
        for h in &c.heredocs {
            let scratch = self.b.add(Op::Scratch, vec![], VertexMeta::default());
            let file = Op::File(FileOp { actions: vec![FileAction::Mkfile(MkfileAction { path: format!("/{}", h.name), data: h.content.clone(), mode: 0o644, chown: None })] });
            let doc = self.b.add(file, vec![scratch], VertexMeta { description: "[internal] preparing inline document".into(), ..Default::default() });
            inputs.push(doc);
            let dest = if copied > 1 && !dest.ends_with('/') { format!("{dest}/") } else { dest.clone() };
            actions.push(FileAction::Copy(CopyAction {
                source_input: inputs.len() - 1,
                sources: vec![h.name.clone()],
                dest,
                chown: chown.clone(),
                chmod: chmod.clone(),
                unpack_archives: false,
                parents: false,
                excludes: vec![],
                from_http: false,
            }));
        }
        let copy = self.b.add(Op::File(FileOp { actions }), inputs, meta.clone());
        if c.link {
            return Ok(self.b.add(Op::Merge, vec![st.fs, copy], meta));
        }
        Ok(copy)
    }
}

/// The git source an ADD names, as BuildKit recognizes one: `git://…`, `ssh://…`, `git@host:…`,
/// or an http(s) URL whose path ends in `.git`; `#ref:subdir` after it picks the ref and the
/// directory. Anything else is not a git source.
pub fn git_source(v: &str) -> Option<GitOp> {
    let (remote, fragment) = match v.split_once('#') {
        Some((r, f)) => (r, f),
        None => (v, ""),
    };
    let is_git = remote.starts_with("git://")
        || remote.starts_with("ssh://")
        || remote.starts_with("git@")
        || ((remote.starts_with("http://") || remote.starts_with("https://")) && remote.split('?').next().unwrap_or(remote).trim_end_matches('/').ends_with(".git"));
    if !is_git {
        return None;
    }
    let (mut reference, mut subdir) = match fragment.split_once(':') {
        Some((r, d)) => (r.to_string(), d.to_string()),
        None => (fragment.to_string(), String::new()),
    };
    // The query form of newer BuildKit: `repo.git?ref=v1&subdir=docs&checksum=…&keep-git-dir=true`.
    let (mut remote, mut checksum, mut keep_git_dir) = (remote.to_string(), None, false);
    if let Some((base, query)) = remote.clone().split_once('?').filter(|(b, _)| b.trim_end_matches('/').ends_with(".git")) {
        remote = base.to_string();
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "ref" | "branch" | "tag" => reference = v.to_string(),
                "subdir" => subdir = v.to_string(),
                "checksum" | "commit" => checksum = Some(v.to_string()),
                "keep-git-dir" => keep_git_dir = v == "true",
                _ => {}
            }
        }
    }
    let subdir = subdir.split('/').filter(|p| !p.is_empty() && *p != ".").collect::<Vec<_>>().join("/");
    Some(GitOp { remote, reference, subdir, keep_git_dir, checksum })
}

/// The name BuildKit saves an `ADD <url>` download as: the last element of the URL's decoded
/// path (Go's `path.Base`), or `__unnamed__` when the path has none.
fn url_filename(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let path = after_scheme.find('/').map(|i| &after_scheme[i..]).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let decoded = percent_decode(path);
    match decoded.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// `%XX` escapes of a URL path as the bytes they stand for (invalid escapes are kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && s.is_char_boundary(i + 3)
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn makes_vertex(ins: &Instruction) -> bool {
    matches!(ins, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_))
}

fn at(df: &Dockerfile, line: usize, message: String) -> LowerError {
    LowerError::At { file: df.file_name.clone(), line, message }
}

fn chown_of(s: &str) -> Chown {
    match s.split_once(':') {
        Some((u, g)) => Chown { user: u.to_string(), group: Some(g.to_string()) },
        None => Chown { user: s.to_string(), group: None },
    }
}

/// `path` made absolute against the working directory, cleaned (trailing slash dropped).
fn resolve_path(wd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{}/{}", wd.trim_end_matches('/'), path) };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn command_args(c: &ShellOrExec, shell_cmd: &[String]) -> Vec<String> {
    match c {
        ShellOrExec::Exec(a) => a.clone(),
        ShellOrExec::Shell(s) => {
            let mut v = shell_cmd.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// The comment BuildKit's Dockerfile frontend puts on every history entry it writes.
const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A history entry of an instruction that only changes the config.
fn config_step(created_by: String) -> HistoryStep {
    HistoryStep { created_by, comment: Some(HISTORY_COMMENT.into()), vertex: None }
}

/// `K=V K2=V2`, values as expanded (no quotes), as BuildKit writes ENV and LABEL history.
fn pairs_text(pairs: &[crate::instructions::KeyValue]) -> String {
    pairs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect::<Vec<_>>().join(" ")
}

/// BuildKit's RUN history: `RUN |N K=V… argv…`, naming every ARG the stage declared (see
/// [`StageScope::run_history_args`]).
fn run_history(argv: &[String], args: &[String]) -> String {
    let mut s = String::from("RUN ");
    if !args.is_empty() {
        s.push_str(&format!("|{} {} ", args.len(), args.join(" ")));
    }
    s.push_str(&argv.join(" "));
    s
}

/// BuildKit's COPY/ADD history: the flags that change the files (`--parents`, `--chown`,
/// `--chmod`; never `--from` or `--link`), the sources, inline files as `<<NAME`, the dest.
fn copy_history(c: &CopyFiles, is_add: bool) -> String {
    let mut s = String::from(if is_add { "ADD" } else { "COPY" });
    if c.parents {
        s.push_str(" --parents");
    }
    if let Some(o) = c.chown.as_ref().filter(|o| !o.is_empty()) {
        s.push_str(&format!(" --chown={o}"));
    }
    if let Some(m) = c.chmod.as_ref().filter(|m| !m.is_empty()) {
        s.push_str(&format!(" --chmod={m}"));
    }
    for src in &c.sources {
        if !c.heredocs.is_empty() && src.value.starts_with("<<") {
            continue;
        }
        s.push(' ');
        s.push_str(&src.value);
    }
    for h in &c.heredocs {
        s.push_str(&format!(" <<{}", h.name));
    }
    s.push(' ');
    s.push_str(&c.dest.value);
    s
}

/// One EXPOSE word as the ports it names (`8000-8002/tcp` is three), `port/proto` with the
/// protocol lowercased and `tcp` by default; a `[ip:][hostport:]` prefix is ignored, as in
/// BuildKit.
fn expose_ports(word: &str) -> Result<Vec<String>, String> {
    let container = word.rsplit(':').next().unwrap_or(word);
    let (range, proto) = match container.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (container, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("EXPOSE {word}: invalid proto: {proto}"));
    }
    let bad = || format!("EXPOSE {word}: invalid containerPort: {range}");
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Go's `%q` of a string slice: `["a" "b c"]`.
fn go_quoted_list(words: &[String]) -> String {
    format!("[{}]", words.iter().map(|w| go_quote(w)).collect::<Vec<_>>().join(" "))
}

/// BuildKit's HEALTHCHECK history: Go's `%+v` of the health config,
/// `{Test:[CMD-SHELL curl -f x] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}`.
fn healthcheck_history(h: &crate::instructions::Healthcheck) -> String {
    let d = |v: Option<u64>| units::format_duration(v.unwrap_or(0) as i64);
    format!(
        "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        h.test.join(" "),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval),
        h.retries.unwrap_or(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoImages;
    impl ImageResolver for NoImages {
        fn resolve(&mut self, reference: &str, _: &str) -> Result<ResolvedImage, ResolveError> {
            if reference.starts_with("missing") {
                return Err(ResolveError::Pull(format!("{reference}: not found")));
            }
            Ok(ResolvedImage {
                reference: format!("docker.io/library/{reference}"),
                manifest_digest: format!("sha256:{}", "0".repeat(64)),
                config: ContainerConfig { env: Some(vec!["PATH=/bin".into()]), cmd: Some(vec!["sh".into()]), ..Default::default() },
                history: vec![History { created_by: Some("base".into()), ..Default::default() }],
                architecture: "amd64".into(),
                os: "linux".into(),
                variant: None,
            })
        }
    }

    fn lower_text(text: &str, opts: LowerOptions) -> Result<LoweredBuild, LowerError> {
        let df = Dockerfile::parse(text.as_bytes(), "Dockerfile")?;
        lower(&df, &opts, &mut NoImages)
    }

    #[test]
    fn config_instructions_fill_the_image_config_and_entrypoint_resets_cmd() {
        let b = lower_text(
            "FROM busybox\nENV A=1 B=$A\nWORKDIR app\nUSER app\nLABEL x=y\nEXPOSE 80 53/udp\nENTRYPOINT [\"/bin/app\"]\nSTOPSIGNAL SIGTERM\n",
            LowerOptions::default(),
        )
        .expect("lower");
        let c = &b.image.config;
        // As in Docker, all values of one ENV come from the environment before it.
        assert_eq!(c.env.clone().unwrap_or_default(), vec!["PATH=/bin", "A=1", "B="]);
        assert_eq!(c.working_dir.as_deref(), Some("/app"));
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.cmd, None, "ENTRYPOINT resets the inherited CMD");
        assert_eq!(c.entrypoint.clone().unwrap_or_default(), vec!["/bin/app"]);
        let ports: Vec<String> = c.exposed_ports.clone().unwrap_or_default().into_keys().collect();
        assert_eq!(ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(b.image.base_history.len(), 1);
        assert_eq!(b.image.steps.len(), 7);
    }

    #[test]
    fn only_needed_stages_are_lowered_and_target_selects_a_stage() {
        let text = "FROM busybox AS a\nRUN echo a\nFROM busybox AS b\nRUN echo b\nFROM busybox\nCOPY --from=a /x /x\n";
        let b = lower_text(text, LowerOptions::default()).expect("lower");
        assert_eq!(b.stages, vec!["a", "stage-2"]);
        let t = lower_text(text, LowerOptions { target: Some("b".into()), ..Default::default() }).expect("lower");
        assert_eq!(t.stages, vec!["b"]);
        let e = lower_text(text, LowerOptions { target: Some("nope".into()), ..Default::default() }).expect_err("bad target");
        assert!(e.to_string().contains("nope"));
    }

    #[test]
    fn build_args_change_the_run_vertex_and_history() {
        let text = "ARG V=1\nFROM busybox\nARG V\nRUN echo $V\n";
        let a = lower_text(text, LowerOptions::default()).expect("lower");
        let mut args = BTreeMap::new();
        args.insert("V".to_string(), "2".to_string());
        let b = lower_text(text, LowerOptions { build_args: args, ..Default::default() }).expect("lower");
        assert_ne!(a.target, b.target);
        assert_eq!(a.image.steps[0].created_by, "ARG V=1");
        assert_eq!(a.image.steps[1].created_by, "RUN |1 V=1 /bin/sh -c echo $V # buildkit");
    }

    fn only_run_env(b: &LoweredBuild) -> Vec<String> {
        only_exec(b).env
    }

    #[test]
    fn targetstage_names_the_target_or_the_last_stage_as_buildkit_sets_it() {
        let text = "FROM busybox AS first\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\nFROM first AS Last\n";
        let last = lower_text(text, LowerOptions::default()).expect("lower");
        assert!(only_run_env(&last).contains(&"TARGETSTAGE=last".to_string()), "{:?}", only_run_env(&last));
        let first = lower_text(text, LowerOptions { target: Some("first".into()), ..Default::default() }).expect("lower");
        assert!(only_run_env(&first).contains(&"TARGETSTAGE=first".to_string()));
        let unnamed = lower_text("FROM busybox\nARG TARGETSTAGE\nRUN echo $TARGETSTAGE\n", LowerOptions::default()).expect("lower");
        assert!(only_run_env(&unnamed).contains(&"TARGETSTAGE=default".to_string()));
    }

    #[test]
    fn a_build_arg_overrides_an_automatic_platform_arg_and_the_osversion_args_exist() {
        let mut build_args = BTreeMap::new();
        build_args.insert("TARGETARCH".to_string(), "riscv64".to_string());
        let text = "FROM busybox\nARG TARGETARCH TARGETOSVERSION BUILDOSVERSION\nRUN echo $TARGETARCH\n";
        let b = lower_text(text, LowerOptions { build_args, ..Default::default() }).expect("lower");
        assert!(only_run_env(&b).contains(&"TARGETARCH=riscv64".to_string()), "{:?}", only_run_env(&b));
        assert_eq!(b.image.steps[0].created_by, "ARG TARGETARCH=riscv64 TARGETOSVERSION= BUILDOSVERSION=");
    }

    #[test]
    fn a_stage_built_from_another_stage_inherits_its_args() {
        let text = "FROM busybox AS base\nARG NAME=joe\nFROM base\nRUN echo hello $NAME\n";
        let b = lower_text(text, LowerOptions::default()).expect("lower");
        let run = only_exec(&b);
        assert!(run.env.contains(&"NAME=joe".to_string()), "{:?}", run.env);
        assert_eq!(b.image.steps.last().unwrap().created_by, "RUN |1 NAME=joe /bin/sh -c echo hello $NAME # buildkit");
        // A stage on an image starts afresh.
        let other = lower_text("FROM busybox AS base\nARG NAME=joe\nFROM busybox\nRUN echo $NAME\n", LowerOptions::default()).expect("lower");
        assert!(!only_exec(&other).env.iter().any(|e| e.starts_with("NAME=")));
    }

    #[test]
    fn the_run_env_lists_a_variable_where_it_was_last_set_and_the_history_where_first_declared() {
        let text = "FROM busybox\nARG A=1\nARG B=2\nENV A=3\nARG B\nRUN env\n";
        let b = lower_text(text, LowerOptions::default()).expect("lower");
        assert_eq!(only_exec(&b).env, vec!["PATH=/bin", "B=2", "A=3"]);
        assert_eq!(b.image.config.env, Some(vec!["PATH=/bin".to_string(), "A=3".to_string()]));
        assert_eq!(b.image.steps.last().unwrap().created_by, "RUN |2 A=3 B=2 /bin/sh -c env # buildkit");
    }

    #[test]
    fn a_platform_that_is_not_os_arch_is_an_error_naming_it() {
        let e = lower_text("FROM busybox\n", LowerOptions { platform: "arm64".into(), ..Default::default() }).expect_err("bad platform");
        assert!(e.to_string().starts_with("--platform: invalid platform \"arm64\""), "{e}");
    }

    #[test]
    fn the_escape_directive_applies_to_from_without_global_args() {
        let b = lower_text("# escape=`\nFROM busy`$box\n", LowerOptions::default()).expect("lower");
        let image = b.definition.vertices.values().find_map(|v| if let Op::Image(i) = &v.op { Some(i) } else { None }).expect("FROM");
        assert_eq!(image.reference, "docker.io/library/busy$box");
    }

    #[test]
    fn syntax_directive_accepts_the_standard_frontend_only() {
        for ok in ["docker/dockerfile:1", "docker/dockerfile:1.7-labs", "docker.io/docker/dockerfile:1.4", "docker/dockerfile"] {
            check_syntax(Some(ok)).expect(ok);
        }
        assert!(check_syntax(Some("example.com/my/frontend:1")).is_err());
    }

    #[test]
    fn copy_link_is_a_merge_and_run_mounts_are_typed() {
        let text = "FROM busybox\nWORKDIR /w\nCOPY --link a /a\nRUN --mount=type=cache,target=c --mount=type=secret,id=tok --network=none true\n";
        let b = lower_text(text, LowerOptions::default()).expect("lower");
        let kinds: Vec<&str> = b.definition.vertices.values().map(|v| v.op.kind()).collect();
        assert!(kinds.contains(&"merge"), "{kinds:?}");
        let exec = b.definition.vertices.values().find_map(|v| match &v.op {
            Op::Exec(e) => Some(e.clone()),
            _ => None,
        });
        let exec = exec.expect("a RUN vertex");
        assert_eq!(exec.network, Network::None);
        assert_eq!(exec.cwd, "/w");
        assert!(matches!(&exec.mounts[0].kind, MountKind::Cache { id, .. } if id == "/w/c"), "{:?}", exec.mounts[0]);
        assert_eq!(exec.mounts[0].target, "/w/c");
        assert!(matches!(&exec.mounts[1].kind, MountKind::Secret { id, mode: 0o400, .. } if id == "tok"));
        assert_eq!(exec.mounts[1].target, "/run/secrets/tok");
    }

    fn only_exec(b: &LoweredBuild) -> ExecOp {
        let found = b.definition.vertices.values().find_map(|v| match &v.op {
            Op::Exec(e) => Some(e.clone()),
            _ => None,
        });
        found.expect("a RUN vertex")
    }

    #[test]
    fn ssh_mounts_default_to_the_default_id_numbered_sockets_and_set_ssh_auth_sock() {
        let text = "FROM busybox\nRUN --mount=type=ssh --mount=type=ssh,id=work,target=/w.sock,required,mode=0660,uid=5 true\n";
        let b = lower_text(text, LowerOptions::default()).expect("lower");
        let e = only_exec(&b);
        assert_eq!(e.mounts[0].target, "/run/buildkit/ssh_agent.0");
        assert_eq!(e.mounts[0].kind, MountKind::Ssh { id: "default".into(), required: false, uid: 0, gid: 0, mode: 0o600 });
        assert_eq!(e.mounts[1].target, "/w.sock");
        assert_eq!(e.mounts[1].kind, MountKind::Ssh { id: "work".into(), required: true, uid: 5, gid: 0, mode: 0o660 });
        assert!(e.env.contains(&"SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0".to_string()), "{:?}", e.env);
        let own = lower_text("FROM busybox\nENV SSH_AUTH_SOCK=/mine\nRUN --mount=type=ssh true\n", LowerOptions::default()).expect("lower");
        assert!(only_exec(&own).env.iter().filter(|v| v.starts_with("SSH_AUTH_SOCK=")).eq(["SSH_AUTH_SOCK=/mine"].iter()));
    }

    #[test]
    fn run_security_insecure_is_carried_to_the_solver_and_sandbox_is_the_default() {
        let b = lower_text("FROM busybox\nRUN --security=insecure true\n", LowerOptions::default()).expect("lower");
        assert_eq!(only_exec(&b).security, graph::Security::Insecure);
        let d = lower_text("FROM busybox\nRUN --security=sandbox true\n", LowerOptions::default()).expect("lower");
        assert_eq!(only_exec(&d).security, graph::Security::Sandbox);
    }

    #[test]
    fn add_of_a_git_url_is_a_git_source_with_ref_and_subdir() {
        let text = "FROM busybox\nADD --keep-git-dir=true https://example.com/r.git#v1:docs/ /src\nADD git@example.com:r.git /b\nADD https://example.com/file.tar /c\n";
        let b = lower_text(text, LowerOptions::default()).expect("lower");
        let mut gits: Vec<GitOp> = b.definition.vertices.values().filter_map(|v| if let Op::Git(g) = &v.op { Some(g.clone()) } else { None }).collect();
        gits.sort_by(|a, b| a.remote.cmp(&b.remote));
        assert_eq!(gits.len(), 2, "{gits:?}");
        assert_eq!(gits[0], GitOp { remote: "git@example.com:r.git".into(), reference: String::new(), subdir: String::new(), keep_git_dir: false, checksum: None });
        assert_eq!(gits[1], GitOp { remote: "https://example.com/r.git".into(), reference: "v1".into(), subdir: "docs".into(), keep_git_dir: true, checksum: None });
        assert_eq!(b.definition.vertices.values().filter(|v| v.op.kind() == "http").count(), 1);
        assert!(git_source("git://h/r#main").is_some() && git_source("https://h/r.tar.gz").is_none());
        let q = git_source("https://h/r.git?ref=v2&subdir=a/b&keep-git-dir=true&checksum=abc1234").expect("query form");
        assert_eq!(q, GitOp { remote: "https://h/r.git".into(), reference: "v2".into(), subdir: "a/b".into(), keep_git_dir: true, checksum: Some("abc1234".into()) });
        assert!(git_source("https://h/download?file=r.git").is_none());
    }

    #[test]
    fn the_host_platform_is_one_answer_oci_gives() {
        let host = build_platform();
        let scope = Scope::new(&Dockerfile::parse(b"FROM scratch\n", "Dockerfile").unwrap(), &BTreeMap::new()).unwrap();
        assert!(scope.global_env().contains(&format!("BUILDPLATFORM={host}")), "{:?}", scope.global_env());
        assert_eq!(host, oci::Platform::host().normalized().to_string());
    }

    #[test]
    fn errors_are_typed_and_an_image_or_stage_of_from_names_its_line() {
        let e = lower_text("FROM busybox\nRUN true\nCOPY --from=missing:1 /a /a\n", LowerOptions::default()).expect_err("no image");
        assert!(matches!(&e, LowerError::Image { line: 3, source: ResolveError::Pull(_), .. }), "{e:?}");
        assert!(e.to_string().starts_with("Dockerfile:3: --from=missing:1: image not found locally and pulling it failed"), "{e}");
        let e = lower_text("FROM busybox\nRUN --mount=from=later,target=/l true\nFROM busybox AS later\n", LowerOptions { target: Some("0".into()), ..Default::default() }).expect_err("later stage");
        assert!(matches!(&e, LowerError::StageUsedBeforeDefined { line: 2, .. }), "{e:?}");
        let e = lower_text("FROM missing\n", LowerOptions::default()).expect_err("no base");
        assert!(matches!(&e, LowerError::Image { line: 1, .. }) && e.to_string().starts_with("Dockerfile:1: FROM missing: "), "{e}");
        let e = lower_text("FROM busybox\nWORKDIR ${X:?unset}\n", LowerOptions::default()).expect_err("expansion");
        assert!(matches!(&e, LowerError::Expand(_)) && e.to_string().contains("Dockerfile:2"), "{e}");
        assert!(matches!(lower_text("FROM busybox\n", LowerOptions { target: Some("nope".into()), ..Default::default() }), Err(LowerError::UnknownTarget(t)) if t == "nope"));
    }

    #[test]
    fn a_platform_the_base_image_is_not_built_for_is_an_error_naming_image_and_platform() {
        let e = lower_text("FROM busybox\n", LowerOptions { platform: "linux/arm64".into(), ..Default::default() }).expect_err("wrong platform");
        let msg = e.to_string();
        assert!(msg.contains("Dockerfile:1") && msg.contains("docker.io/library/busybox") && msg.contains("linux/arm64") && msg.contains("linux/amd64"), "{msg}");
        lower_text("FROM busybox\n", LowerOptions { platform: "linux/amd64".into(), ..Default::default() }).expect("host platform");
    }

    #[test]
    fn from_platform_buildplatform_builds_that_stage_for_this_machine_and_the_image_for_the_target() {
        let text = "FROM --platform=$BUILDPLATFORM busybox AS build\nARG BUILDPLATFORM TARGETPLATFORM\nRUN echo $BUILDPLATFORM $TARGETPLATFORM > /x\nFROM scratch\nCOPY --from=build /x /x\n";
        let b = lower_text(text, LowerOptions { platform: "linux/arm64".into(), ..Default::default() }).expect("lower");
        assert_eq!(b.image.architecture, "arm64");
        let images: Vec<&ImageOp> = b.definition.vertices.values().filter_map(|v| if let Op::Image(i) = &v.op { Some(i) } else { None }).collect();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].platform, build_platform());
        let run = b.definition.vertices.values().find_map(|v| if let Op::Exec(e) = &v.op { Some(e) } else { None }).expect("the RUN");
        assert!(run.env.contains(&format!("BUILDPLATFORM={}", build_platform())) && run.env.contains(&"TARGETPLATFORM=linux/arm64".to_string()), "{:?}", run.env);

        let e = lower_text("FROM --platform=arm64 busybox\n", LowerOptions::default()).expect_err("no os");
        assert!(e.to_string().contains("Dockerfile:1") && e.to_string().contains("os/arch"), "{e}");
    }

    #[test]
    fn maintainer_is_the_image_author_and_cmd_sets_args_escaped() {
        let b = lower_text("FROM busybox\nMAINTAINER Someone <s@example.com>\nCMD [\"x\"]\n", LowerOptions::default()).expect("lower");
        assert_eq!(b.image.author.as_deref(), Some("Someone <s@example.com>"));
        assert_eq!(b.image.config.args_escaped, Some(true));
        assert_eq!(b.image.steps[0].created_by, "MAINTAINER Someone <s@example.com>");
    }

    #[test]
    fn add_url_file_names_are_the_decoded_last_path_element() {
        assert_eq!(url_filename("http://h:1/a/file.txt?v=1#x"), "file.txt");
        assert_eq!(url_filename("http://h:1/name%20with%20space.txt"), "name with space.txt");
        assert_eq!(url_filename("http://h:1/dir/"), "dir");
        assert_eq!(url_filename("http://h:1/"), "__unnamed__");
        assert_eq!(url_filename("http://h:1"), "__unnamed__");
        assert_eq!(url_filename("http://h/100%"), "100%");
    }

    #[test]
    fn scratch_and_pathless_bases_get_buildkits_defaults() {
        let b = lower_text("FROM scratch\n", LowerOptions::default()).expect("lower");
        assert_eq!(b.image.config.working_dir.as_deref(), Some("/"));
        assert_eq!(b.image.config.env, Some(vec![format!("PATH={DEFAULT_PATH}")]));
        // NoImages' base has PATH=/bin: kept as it is.
        let i = lower_text("FROM busybox\n", LowerOptions::default()).expect("lower");
        assert_eq!(i.image.config.env, Some(vec!["PATH=/bin".to_string()]));
    }

    #[test]
    fn paths_resolve_against_the_workdir() {
        assert_eq!(resolve_path("/app", "src/../lib"), "/app/lib");
        assert_eq!(resolve_path("/app", "/abs/"), "/abs");
        assert_eq!(resolve_path("/", "."), "/");
    }
}
