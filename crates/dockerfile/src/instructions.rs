//! Typed instructions: each node of the syntax tree becomes a struct with
//! checked arguments and flags, grouped into build stages.

use std::sync::Arc;

use serde::Serialize;

use crate::ast::{self, Heredoc, Node, Token, Word};
use crate::error::{DockerfileError, Error, ErrorKind, SourceMap, Span};
use crate::flags::{FlagType, Flags};
use crate::mount::{Mount, parse_mount};
use crate::shell::{self, Env};

/// A Dockerfile read into build stages.
#[derive(Debug, Clone, Serialize)]
pub struct Dockerfile {
    /// The name used in error messages (usually `Dockerfile`).
    pub file_name: String,
    pub directives: Directives,
    /// The ARGs before the first FROM, usable in FROM lines.
    pub global_args: Vec<Arg>,
    pub stages: Vec<Stage>,
}

/// Parser directives from the top of the file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Directives {
    /// `# syntax=` (recorded, not acted on).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=` (recorded, not acted on).
    pub check: Option<String>,
}

/// A build stage: a FROM and the instructions after it.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub from: From,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name given with `AS`.
    pub fn name(&self) -> Option<&str> {
        self.from.name.as_deref()
    }
}

/// `FROM [--platform=…] image [AS name]`.
#[derive(Debug, Clone, Serialize)]
pub struct From {
    /// The image as written (may contain global ARGs; see `Scope::expand_from`).
    pub image: Word,
    pub platform: Option<Word>,
    /// The stage name, lower-cased.
    pub name: Option<String>,
    pub span: Span,
    pub original: String,
}

/// Things every instruction carries besides its own fields.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The Dockerfile's escape character.
    pub escape: char,
    /// The Dockerfile's name, for errors.
    pub file: Arc<str>,
}

/// Command text in shell form (run by the stage's SHELL) or exec form (JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

/// A heredoc used as a file (COPY/ADD source) or as the script of a RUN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// The delimiter name (also the file name for COPY/ADD).
    pub name: String,
    /// The body; for `<<-`, leading tabs are already removed.
    pub content: String,
    /// Whether `$VARS` in the body are expanded (delimiter not quoted).
    pub expand: bool,
    pub fd: u32,
}

impl InlineFile {
    fn from_heredoc(h: &Heredoc) -> InlineFile {
        let content = if h.chomp { chomp_tabs(&h.content) } else { h.content.clone() };
        InlineFile { name: h.name.clone(), content, expand: h.expand, fd: h.fd }
    }
}

fn chomp_tabs(s: &str) -> String {
    s.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

/// `RUN --network=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

/// `RUN --security=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

macro_rules! common_fields {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Serialize)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
            /// Where the instruction starts.
            pub span: Span,
            /// The instruction's text (lines joined), for image history.
            pub original: String,
            #[serde(skip)]
            pub context: Context,
        }
    };
}

common_fields! {
    /// `RUN [--mount=…] [--network=…] [--security=…] command`.
    pub struct Run {
        pub mounts: Vec<Mount>,
        pub network: Option<NetworkMode>,
        pub security: Option<SecurityMode>,
        pub command: ShellOrExec,
        /// Heredocs on the line (`RUN <<EOF`), in order.
        pub heredocs: Vec<InlineFile>,
    }
}

common_fields! {
    /// `COPY` or `ADD` (the fields a kind does not have stay unset).
    pub struct CopyFiles {
        /// Source paths (or URLs/git for ADD) as written.
        pub sources: Vec<Word>,
        pub dest: Word,
        /// COPY --from: a stage name/index or an image.
        pub from: Option<String>,
        pub chown: Option<String>,
        /// `--chmod`: octal (`0755`) or symbolic (`u+x,go-w`).
        pub chmod: Option<String>,
        pub link: bool,
        /// COPY --parents.
        pub parents: bool,
        pub exclude: Vec<String>,
        /// ADD --checksum.
        pub checksum: Option<String>,
        /// ADD --keep-git-dir.
        pub keep_git_dir: Option<bool>,
        /// ADD --unpack.
        pub unpack: Option<bool>,
        /// Heredoc sources (`COPY <<EOF /dest`).
        pub heredocs: Vec<InlineFile>,
    }
}

/// A `name=value` pair of ENV or LABEL, as written (quotes kept until expansion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    pub name: String,
    pub default: Option<String>,
}

common_fields! {
    /// `ENV k=v …` (or the legacy `ENV k v`).
    pub struct EnvInstr { pub pairs: Vec<KeyValue>, }
}
common_fields! {
    /// `ARG name[=default] …`.
    pub struct Arg { pub args: Vec<ArgDef>, }
}
common_fields! {
    /// `LABEL k=v …`.
    pub struct Label { pub pairs: Vec<KeyValue>, }
}
common_fields! {
    /// `EXPOSE port[/proto] …` (sorted, as BuildKit keeps them).
    pub struct Expose { pub ports: Vec<String>, }
}
common_fields! {
    /// `VOLUME path …` or `VOLUME ["path", …]`.
    pub struct Volume { pub paths: Vec<String>, }
}
common_fields! {
    /// `USER name[:group]`.
    pub struct User { pub user: String, }
}
common_fields! {
    /// `WORKDIR path`.
    pub struct Workdir { pub path: String, }
}
common_fields! {
    /// `CMD …`.
    pub struct Cmd { pub command: ShellOrExec, }
}
common_fields! {
    /// `ENTRYPOINT …` (`ENTRYPOINT []` is an empty exec form).
    pub struct Entrypoint { pub command: ShellOrExec, }
}
common_fields! {
    /// `SHELL ["exe", "arg", …]`.
    pub struct Shell { pub shell: Vec<String>, }
}
common_fields! {
    /// `HEALTHCHECK [options] CMD …` or `HEALTHCHECK NONE`.
    pub struct Healthcheck {
        /// The image config's `Test`: `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
        pub test: Vec<String>,
        /// Durations in nanoseconds (absent = not given).
        pub interval: Option<u64>,
        pub timeout: Option<u64>,
        pub start_period: Option<u64>,
        pub start_interval: Option<u64>,
        pub retries: Option<u32>,
    }
}
common_fields! {
    /// `STOPSIGNAL signal`.
    pub struct StopSignal { pub signal: String, }
}
common_fields! {
    /// `MAINTAINER name` (deprecated).
    pub struct Maintainer { pub name: String, }
}
common_fields! {
    /// `ONBUILD instruction`: stored in the image, run by builds FROM it.
    pub struct OnBuild {
        pub instruction: Box<Instruction>,
        /// The trigger's text as stored in the image config (`OnBuild`).
        pub expression: String,
    }
}

/// One instruction of a stage.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "instruction", rename_all = "UPPERCASE")]
pub enum Instruction {
    Run(Run),
    Copy(CopyFiles),
    Add(CopyFiles),
    Env(EnvInstr),
    Arg(Arg),
    Label(Label),
    Expose(Expose),
    Volume(Volume),
    User(User),
    Workdir(Workdir),
    Cmd(Cmd),
    Entrypoint(Entrypoint),
    Shell(Shell),
    Healthcheck(Healthcheck),
    StopSignal(StopSignal),
    OnBuild(OnBuild),
    Maintainer(Maintainer),
}

macro_rules! each {
    ($self:expr, $v:ident => $e:expr) => {
        match $self {
            Instruction::Run($v) => $e,
            Instruction::Copy($v) | Instruction::Add($v) => $e,
            Instruction::Env($v) => $e,
            Instruction::Arg($v) => $e,
            Instruction::Label($v) => $e,
            Instruction::Expose($v) => $e,
            Instruction::Volume($v) => $e,
            Instruction::User($v) => $e,
            Instruction::Workdir($v) => $e,
            Instruction::Cmd($v) => $e,
            Instruction::Entrypoint($v) => $e,
            Instruction::Shell($v) => $e,
            Instruction::Healthcheck($v) => $e,
            Instruction::StopSignal($v) => $e,
            Instruction::OnBuild($v) => $e,
            Instruction::Maintainer($v) => $e,
        }
    };
}

impl Instruction {
    /// The instruction's text as written (lines joined), e.g. for image history.
    pub fn original_text(&self) -> &str {
        each!(self, i => &i.original)
    }

    /// Where the instruction starts.
    pub fn span(&self) -> Span {
        each!(self, i => i.span)
    }

    /// The upper-case instruction name.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::OnBuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }

    fn context(&self) -> &Context {
        each!(self, i => &i.context)
    }

    /// Expands variables in exactly the fields BuildKit expands for this
    /// instruction, against `env` (the environment before the instruction):
    /// ENV/LABEL keys and values, COPY/ADD sources, destination, --chown,
    /// --chmod (and ADD --checksum; heredoc bodies whose delimiter is not
    /// quoted), WORKDIR, USER, VOLUME, STOPSIGNAL, EXPOSE (split into words),
    /// RUN --mount values. Not expanded: RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK
    /// commands, ARG (see `StageScope::apply`), ONBUILD, MAINTAINER.
    pub fn expand(&self, env: &impl Env) -> Result<Instruction, Error> {
        let ctx = self.context();
        let esc = ctx.escape;
        let fail = |e: shell::ExpandError| -> Error { self.error(ErrorKind::Expansion, self.span(), e.to_string()) };
        let word = |s: &str| shell::expand_word(s, env, esc).map_err(fail);
        let opt = |s: &Option<String>| -> Result<Option<String>, Error> { s.as_deref().map(word).transpose() };
        let mut out = self.clone();
        match &mut out {
            Instruction::Env(i) => {
                for kv in &mut i.pairs {
                    kv.key = word(&kv.key)?;
                    kv.value = word(&kv.value)?;
                }
            }
            Instruction::Label(i) => {
                for kv in &mut i.pairs {
                    kv.key = word(&kv.key)?;
                    kv.value = word(&kv.value)?;
                }
            }
            Instruction::Copy(i) | Instruction::Add(i) => {
                i.chown = opt(&i.chown)?;
                i.chmod = opt(&i.chmod)?;
                i.checksum = opt(&i.checksum)?;
                for s in &mut i.sources {
                    s.value = word(&s.value)?;
                }
                i.dest.value = word(&i.dest.value)?;
                for h in &mut i.heredocs {
                    if h.expand {
                        h.content = shell::expand_heredoc(&h.content, env).map_err(fail)?;
                    }
                }
            }
            Instruction::Workdir(i) => i.path = word(&i.path)?,
            Instruction::User(i) => i.user = word(&i.user)?,
            Instruction::StopSignal(i) => i.signal = word(&i.signal)?,
            Instruction::Volume(i) => {
                for p in &mut i.paths {
                    *p = word(p)?;
                }
            }
            Instruction::Expose(i) => {
                let mut ports = Vec::new();
                for p in &i.ports {
                    ports.extend(shell::expand_words(p, env, esc).map_err(fail)?);
                }
                i.ports = ports;
            }
            Instruction::Run(i) => {
                let expander = |v: &str| shell::expand_word(v, env, esc).map_err(|e| e.to_string());
                let mut mounts = Vec::new();
                for m in &i.mounts {
                    mounts.push(parse_mount(&m.raw, m.span, &expander, false).map_err(|e| self.error(ErrorKind::Flag, m.span, e))?);
                }
                i.mounts = mounts;
            }
            _ => {}
        }
        Ok(out)
    }

    fn error(&self, kind: ErrorKind, span: Span, message: String) -> Error {
        let ctx = self.context();
        Error::Dockerfile(Box::new(DockerfileError {
            kind,
            file: ctx.file.to_string(),
            span,
            message,
            line_text: self.original_text().lines().next().unwrap_or_default().to_string(),
        }))
    }
}

impl Dockerfile {
    /// Parses Dockerfile bytes: syntax, then every instruction checked.
    ///
    /// Each instruction is checked as soon as it is read (so its syntax node
    /// is dropped at once and its memory reused); the errors are still those
    /// of reading the whole syntax first: a syntax error anywhere wins over
    /// the first error of a checked instruction.
    pub fn parse(source: &[u8], file_name: &str) -> Result<Dockerfile, Error> {
        let mut stages = StagesBuilder::default();
        let parsed = ast::parse_each(source, file_name, |map, escape, read| match read {
            ast::ReadNode::Source(node) => {
                stages.add(map, escape, &node);
                Some(node)
            }
            ast::ReadNode::Joined(node) => {
                stages.add(map, escape, node);
                None
            }
        })?;
        stages.finish(&parsed).map_err(|e| Error::Dockerfile(Box::new(e)))
    }
}

/// Groups checked instructions into stages, one syntax node at a time.
#[derive(Default)]
struct StagesBuilder {
    context: Option<Context>,
    global_args: Vec<Arg>,
    stages: Vec<Stage>,
    /// The first error; later nodes are then only read for syntax errors.
    error: Option<DockerfileError>,
    last_span: Span,
}

impl StagesBuilder {
    fn add(&mut self, map: &SourceMap<'_>, escape: char, node: &Node<'_>) {
        self.last_span = node.span;
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.check(map, escape, node) {
            self.error = Some(e);
        }
    }

    fn check(&mut self, map: &SourceMap<'_>, escape: char, node: &Node<'_>) -> Result<(), DockerfileError> {
        let err = |kind: ErrorKind, span: Span, message: String| map.error(kind, span, message);
        if node.lower_name() == "from" {
            let from = parse_from(node, map).map_err(|(m, s)| err(ErrorKind::Arguments, s, m))?;
            self.stages.push(Stage { from, instructions: Vec::with_capacity(16) });
            return Ok(());
        }
        let context = self.context.get_or_insert_with(|| Context { escape, file: Arc::from(map.file) });
        let instruction = parse_instruction(node, context, map).map_err(|(kind, m, s)| err(kind, s, m))?;
        match (self.stages.last_mut(), instruction) {
            (None, Instruction::Arg(a)) => self.global_args.push(a),
            (None, i) => {
                return Err(err(
                    ErrorKind::NoStage,
                    node.span,
                    format!("{} before the first FROM: no build stage in current context (only ARG may come before FROM)", i.name()),
                ));
            }
            (Some(stage), i) => stage.instructions.push(i),
        }
        Ok(())
    }

    fn finish(self, parsed: &ast::Parsed<'_>) -> Result<Dockerfile, DockerfileError> {
        let map = &parsed.map;
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.stages.is_empty() {
            return Err(map.error(ErrorKind::NoStage, self.last_span, "the Dockerfile has no FROM instruction"));
        }
        let mut directives = Directives { escape: parsed.escape, ..Directives::default() };
        for d in &parsed.directives {
            match d.name.as_str() {
                "syntax" => directives.syntax = Some(d.value.clone()),
                "check" => directives.check = Some(d.value.clone()),
                _ => {}
            }
        }
        Ok(Dockerfile { file_name: map.file.to_string(), directives, global_args: self.global_args, stages: self.stages })
    }
}

type TypedError = (ErrorKind, String, Span);

fn parse_from(node: &Node<'_>, map: &SourceMap<'_>) -> Result<From, (String, Span)> {
    let flags = Flags::parse("FROM", &node.flags, &[("platform", FlagType::String)]).map_err(|(m, at)| (m, map.span(at)))?;
    let args = &node.args;
    let name = match args.len() {
        3 if args[1].text.eq_ignore_ascii_case("as") => {
            let name = crate::words::go_lower(&args[2].text);
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err((
                    format!("invalid name for build stage: {}, name can't start with a number or contain symbols", crate::go_quote(&args[2].text)),
                    map.span(args[2].at),
                ));
            }
            Some(name)
        }
        1 => None,
        _ => return Err(("FROM requires either one or three arguments".into(), node.span)),
    };
    let platform = flags.string("platform").map(|(value, at)| Word { value: value.to_string(), span: map.span(at) });
    Ok(From { image: word(&args[0], map), platform, name, span: node.span, original: node.original.trim().to_string() })
}

/// The typed form of a word: owned text and its line and column.
fn word(t: &Token<'_>, map: &SourceMap<'_>) -> Word {
    Word { value: t.text.to_string(), span: map.span(t.at) }
}

const COPY_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::String),
    ("from", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("exclude", FlagType::Strings),
    ("parents", FlagType::Bool),
];
const ADD_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("keep-git-dir", FlagType::Bool),
    ("checksum", FlagType::String),
    ("unpack", FlagType::Bool),
    ("exclude", FlagType::Strings),
];
const RUN_FLAGS: &[(&str, FlagType)] = &[("mount", FlagType::Strings), ("network", FlagType::String), ("security", FlagType::String)];
const HEALTHCHECK_FLAGS: &[(&str, FlagType)] = &[
    ("interval", FlagType::String),
    ("timeout", FlagType::String),
    ("start-period", FlagType::String),
    ("start-interval", FlagType::String),
    ("retries", FlagType::String),
];

fn values(node: &Node<'_>) -> Vec<String> {
    node.args.iter().map(|w| w.text.to_string()).collect()
}

fn command_of(node: &Node<'_>, empty_as_exec: bool) -> ShellOrExec {
    if node.json {
        ShellOrExec::Exec(values(node))
    } else if node.args.is_empty() && empty_as_exec {
        ShellOrExec::Exec(Vec::new())
    } else if let [only] = &node.args[..] {
        ShellOrExec::Shell(only.text.to_string())
    } else {
        ShellOrExec::Shell(values(node).join(" "))
    }
}

/// Turns one syntax node (not FROM) into a typed instruction.
pub(crate) fn parse_instruction(node: &Node<'_>, context: &Context, map: &SourceMap<'_>) -> Result<Instruction, TypedError> {
    // For messages; usually the keyword is already written in upper case.
    let upper: std::borrow::Cow<'_, str> = if node.keyword.bytes().any(|b| !b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(node.keyword.to_uppercase())
    } else {
        std::borrow::Cow::Borrowed(&node.keyword)
    };
    let name = node.lower_name();
    let flag_err = |(m, at): (String, usize)| (ErrorKind::Flag, m, map.span(at));
    let arg_err = |m: String| (ErrorKind::Arguments, m, node.span);
    let no_flags = || Flags::parse(&upper, &node.flags, &[]).map_err(flag_err);
    let exactly_one = || -> Result<String, TypedError> {
        if node.args.len() != 1 {
            return Err(arg_err(format!("{upper} requires exactly one argument")));
        }
        Ok(node.args[0].text.to_string())
    };
    let at_least_one = || -> Result<(), TypedError> {
        if node.args.is_empty() {
            return Err(arg_err(format!("{upper} requires at least one argument")));
        }
        Ok(())
    };
    let span = node.span;
    let original = node.original.to_string();
    let context = context.clone();
    Ok(match name {
        "run" => {
            let flags = Flags::parse(&upper, &node.flags, RUN_FLAGS).map_err(flag_err)?;
            let mut mounts = Vec::new();
            for (raw, at) in flags.strings("mount") {
                let s = map.span(at);
                let m = parse_mount(raw, s, &|v| Ok(v.to_string()), true).map_err(|e| (ErrorKind::Flag, e, s))?;
                mounts.push(m);
            }
            let network = match flags.string("network") {
                None => None,
                Some((v, at)) => Some(match v {
                    "default" => NetworkMode::Default,
                    "none" => NetworkMode::None,
                    "host" => NetworkMode::Host,
                    _ => return Err((ErrorKind::Flag, format!("invalid network mode {v:?} (default, none, host)"), map.span(at))),
                }),
            };
            let security = match flags.string("security") {
                None => None,
                Some((v, at)) => Some(match v {
                    "sandbox" => SecurityMode::Sandbox,
                    "insecure" => SecurityMode::Insecure,
                    _ => return Err((ErrorKind::Flag, format!("security {v:?} is not valid (sandbox, insecure)"), map.span(at))),
                }),
            };
            let heredocs = node.heredocs.iter().map(|h| InlineFile { content: h.content.clone(), name: h.name.clone(), expand: h.expand, fd: h.fd }).collect();
            Instruction::Run(Run { mounts, network, security, command: command_of(node, false), heredocs, span, original, context })
        }
        "copy" | "add" => {
            let is_add = name == "add";
            let flags = Flags::parse(&upper, &node.flags, if is_add { ADD_FLAGS } else { COPY_FLAGS }).map_err(flag_err)?;
            if node.args.len() < 2 {
                return Err(arg_err(format!(
                    "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
                )));
            }
            let (srcs, dest) = node.args.split_at(node.args.len() - 1);
            let dest = word(&dest[0], map);
            if dest.value.contains("<<") && matches!(ast::parse_heredoc(&dest.value), Ok(Some(_))) {
                return Err((ErrorKind::Arguments, format!("{upper} cannot accept a heredoc as a destination"), dest.span));
            }
            let mut sources = Vec::new();
            let mut heredocs = Vec::new();
            for src in srcs {
                if !src.text.contains("<<") {
                    sources.push(word(src, map));
                    continue;
                }
                match ast::parse_heredoc(&src.text) {
                    Ok(Some(h)) => {
                        let body = node.heredocs.iter().find(|d| d.name == h.name);
                        let mut file = body.map(InlineFile::from_heredoc).unwrap_or(InlineFile {
                            name: h.name.clone(),
                            content: String::new(),
                            expand: h.expand,
                            fd: h.fd,
                        });
                        if h.chomp && !body.is_some_and(|b| b.chomp) {
                            file.content = chomp_tabs(&file.content);
                        }
                        file.expand = h.expand;
                        heredocs.push(file);
                    }
                    _ => sources.push(word(src, map)),
                }
            }
            let chmod = flags.string("chmod");
            if let Some((c, at)) = chmod {
                // With a variable, the value is checked once expanded (by the lowering).
                if !c.contains('$') {
                    graph::Chmod::parse(c).map_err(|e| (ErrorKind::Flag, e.to_string(), map.span(at)))?;
                }
            }
            let checksum = flags.string("checksum");
            if let Some((c, at)) = checksum
                && !c.contains('$') && !valid_checksum(c) {
                    return Err((ErrorKind::Flag, format!("invalid --checksum={c}: expected sha256:<hex>, sha384:<hex>, sha512:<hex> or a git commit"), map.span(at)));
                }
            let copy = CopyFiles {
                sources,
                dest,
                from: flags.string("from").map(|v| v.0.to_string()),
                chown: flags.string("chown").map(|v| v.0.to_string()),
                chmod: chmod.map(|v| v.0.to_string()),
                link: flags.bool("link").unwrap_or(false),
                parents: flags.bool("parents").unwrap_or(false),
                exclude: flags.strings("exclude").map(|v| v.0.to_string()).collect(),
                checksum: checksum.map(|v| v.0.to_string()),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.bool("unpack"),
                heredocs,
                span,
                original,
                context,
            };
            if is_add { Instruction::Add(copy) } else { Instruction::Copy(copy) }
        }
        "env" | "label" => {
            no_flags()?;
            if node.args.is_empty() {
                return Err(arg_err(format!("{upper} requires at least one argument")));
            }
            let mut pairs = Vec::new();
            for kv in node.args.chunks(3) {
                if kv.len() != 3 {
                    return Err(arg_err(format!("Bad input to {upper}, too many arguments")));
                }
                if kv[0].text.is_empty() {
                    return Err((ErrorKind::Arguments, format!("{upper} names can not be blank"), map.span(kv[0].at)));
                }
                pairs.push(KeyValue { key: kv[0].text.to_string(), value: kv[1].text.to_string() });
            }
            if name == "env" {
                Instruction::Env(EnvInstr { pairs, span, original, context })
            } else {
                Instruction::Label(Label { pairs, span, original, context })
            }
        }
        "arg" => {
            // BuildKit does not look at ARG's flags.
            at_least_one()?;
            let mut args = Vec::with_capacity(node.args.len());
            for w in &node.args {
                let def = match w.text.split_once('=') {
                    Some(("", _)) => return Err((ErrorKind::Arguments, "ARG names can not be blank".into(), map.span(w.at))),
                    Some((k, v)) => ArgDef { name: k.to_string(), default: Some(v.to_string()) },
                    None => ArgDef { name: w.text.to_string(), default: None },
                };
                args.push(def);
            }
            Instruction::Arg(Arg { args, span, original, context })
        }
        "expose" => {
            at_least_one()?;
            no_flags()?;
            let mut ports = values(node);
            ports.sort();
            Instruction::Expose(Expose { ports, span, original, context })
        }
        "volume" => {
            at_least_one()?;
            no_flags()?;
            let mut paths = Vec::new();
            for w in &node.args {
                let v = crate::words::trim_space(&w.text).0;
                if v.is_empty() {
                    return Err((ErrorKind::Arguments, "VOLUME specified can not be an empty string".into(), map.span(w.at)));
                }
                paths.push(v.to_string());
            }
            Instruction::Volume(Volume { paths, span, original, context })
        }
        "user" => {
            let user = exactly_one()?;
            no_flags()?;
            Instruction::User(User { user, span, original, context })
        }
        "workdir" => {
            let path = exactly_one()?;
            no_flags()?;
            Instruction::Workdir(Workdir { path, span, original, context })
        }
        "maintainer" => {
            let name = exactly_one()?;
            no_flags()?;
            Instruction::Maintainer(Maintainer { name, span, original, context })
        }
        "stopsignal" => {
            // BuildKit does not look at STOPSIGNAL's flags.
            let signal = exactly_one()?;
            Instruction::StopSignal(StopSignal { signal, span, original, context })
        }
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(Cmd { command: command_of(node, false), span, original, context })
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(Entrypoint { command: command_of(node, true), span, original, context })
        }
        "shell" => {
            no_flags()?;
            if node.args.is_empty() {
                return Err(arg_err("SHELL requires at least one argument".into()));
            }
            if !node.json {
                return Err(arg_err(format!("SHELL requires the arguments to be in JSON form (SHELL [\"executable\", \"param\"]), not: {}", node.original.trim())));
            }
            Instruction::Shell(Shell { shell: values(node), span, original, context })
        }
        "healthcheck" => parse_healthcheck(node, &upper, span, original, context, map)?,
        "onbuild" => {
            let Some(child) = &node.child else {
                return Err(arg_err("ONBUILD requires at least one argument".into()));
            };
            no_flags()?;
            let trigger = child.keyword.to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => return Err((ErrorKind::Arguments, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(), child.span)),
                "MAINTAINER" | "FROM" => {
                    return Err((ErrorKind::Arguments, format!("{trigger} isn't allowed as an ONBUILD trigger"), child.span));
                }
                _ => {}
            }
            let instruction = Box::new(parse_instruction(child, &context, map)?);
            let mut expression = strip_onbuild(&node.original);
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            Instruction::OnBuild(OnBuild { instruction, expression, span, original, context })
        }
        _ => {
            return Err((
                ErrorKind::UnknownInstruction,
                format!("unknown instruction: {} (expected one of FROM, RUN, CMD, LABEL, MAINTAINER, EXPOSE, ENV, ADD, COPY, ENTRYPOINT, VOLUME, USER, WORKDIR, ARG, ONBUILD, STOPSIGNAL, HEALTHCHECK, SHELL)", node.keyword),
                node.span,
            ));
        }
    })
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(original: &str) -> String {
    let t = original.trim_start_matches([' ', '\t', '\r', '\n', '\u{0C}']);
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => t[7..].trim_start_matches([' ', '\t', '\r', '\n', '\u{0C}']).to_string(),
        _ => original.to_string(),
    }
}

fn parse_healthcheck(node: &Node<'_>, upper: &str, span: Span, original: String, context: Context, map: &SourceMap<'_>) -> Result<Instruction, TypedError> {
    let Some(first) = node.args.first() else {
        return Err((ErrorKind::Arguments, "HEALTHCHECK requires at least one argument".into(), span));
    };
    let typ = first.text.to_uppercase();
    let rest = &node.args[1..];
    let mut hc = Healthcheck { test: Vec::new(), interval: None, timeout: None, start_period: None, start_interval: None, retries: None, span, original, context };
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err((ErrorKind::Arguments, "HEALTHCHECK NONE takes no arguments".into(), span));
        }
        hc.test = vec![typ];
        return Ok(Instruction::Healthcheck(hc));
    }
    let flags = Flags::parse(upper, &node.flags, HEALTHCHECK_FLAGS).map_err(|(m, at)| (ErrorKind::Flag, m, map.span(at)))?;
    if typ != "CMD" {
        return Err((ErrorKind::Arguments, format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"), map.span(first.at)));
    }
    let cmd: Vec<String> = rest.iter().map(|w| w.text.to_string()).collect();
    let cmd = if node.json || cmd.is_empty() { cmd } else { vec![cmd.join(" ")] };
    if cmd.is_empty() {
        return Err((ErrorKind::Arguments, "Missing command after HEALTHCHECK CMD".into(), span));
    }
    hc.test.push(if node.json { "CMD".into() } else { "CMD-SHELL".into() });
    hc.test.extend(cmd);
    let dur = |name: &str| -> Result<Option<u64>, TypedError> {
        let Some((v, at)) = flags.string(name) else { return Ok(None) };
        if v.is_empty() {
            return Ok(None);
        }
        let s = map.span(at);
        let d = units::parse_duration(v).map_err(|_| (ErrorKind::Flag, format!("time: invalid duration {}", crate::go_quote(v)), s))?;
        if d == 0 {
            return Ok(Some(0));
        }
        if d < 1_000_000 {
            return Err((ErrorKind::Flag, format!("Interval \"{name}\" cannot be less than 1ms"), s));
        }
        Ok(Some(d as u64))
    };
    hc.interval = dur("interval")?;
    hc.timeout = dur("timeout")?;
    hc.start_period = dur("start-period")?;
    hc.start_interval = dur("start-interval")?;
    if let Some((v, at)) = flags.string("retries") {
        let s = map.span(at);
        if !v.is_empty() {
            let n: i64 = v.parse().map_err(|_| (ErrorKind::Flag, format!("strconv.ParseInt: parsing {}: invalid syntax", crate::go_quote(v)), s))?;
            if n < 0 {
                return Err((ErrorKind::Flag, format!("--retries cannot be negative ({n})"), s));
            }
            hc.retries = Some(u32::try_from(n).map_err(|_| (ErrorKind::Flag, format!("--retries out of range ({n})"), s))?);
        }
    }
    Ok(Instruction::Healthcheck(hc))
}

fn valid_checksum(c: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match c.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha384", h)) => hex(h, 96),
        Some(("sha512", h)) => hex(h, 128),
        Some(_) => false,
        None => hex(c, 40) || hex(c, 64),
    }
}
