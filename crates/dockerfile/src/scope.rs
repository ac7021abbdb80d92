//! Which variables an instruction sees, as BuildKit's dockerfile2llb scopes them. The build
//! (`lower`) uses this module and nothing else for ARG and ENV.
//!
//! - ARGs before the first FROM are global: usable in FROM lines, and inside
//!   a stage only once re-declared there (`ARG NAME` without a default takes
//!   the global value).
//! - A build arg (`--build-arg NAME=v`) overrides the default of a declared ARG.
//! - BuildKit's automatic ARGs (BUILDPLATFORM, BUILDOS, BUILDOSVERSION, BUILDARCH,
//!   BUILDVARIANT, the same five for TARGET, and TARGETSTAGE) are global ARGs that
//!   always exist; a build arg of the same name overrides them.
//! - All values of one ENV are expanded against the environment before it.
//! - A stage's environment starts with its base image's `Env`; ARG and ENV
//!   then set variables in order (the later wins). Only ENV goes into the
//!   image config.
//! - A stage built `FROM` another stage goes on with that stage's variables,
//!   its ARGs included (BuildKit's inheritance to child stages).

use std::collections::BTreeMap;

use crate::error::{DockerfileError, Error, ErrorKind};
use crate::instructions::{Arg, Dockerfile, Instruction};
use crate::shell::{self, Env};

/// An ordered `NAME=value` environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EnvList(Vec<(String, String)>);

impl EnvList {
    /// Sets `k` where it stands (an image config's `Env`, as BuildKit's `addEnv`).
    fn set_in_place(&mut self, k: &str, v: &str) {
        match self.0.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.to_string(),
            None => self.0.push((k.to_string(), v.to_string())),
        }
    }
    /// Sets `k` as the newest variable (a build state's env, as BuildKit's `EnvList.AddOrReplace`,
    /// which lists a replaced name where it was last set).
    fn set_last(&mut self, k: &str, v: &str) {
        self.0.retain(|(n, _)| n != k);
        self.0.push((k.to_string(), v.to_string()));
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl Env for EnvList {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// The global scope of a build: global ARGs resolved with the build args.
#[derive(Debug, Clone)]
pub struct Scope {
    build_args: BTreeMap<String, String>,
    global: EnvList,
    escape: char,
}

impl Scope {
    /// Resolves the global ARGs of `df` (host platform as build and target platform, no target stage).
    pub fn new(df: &Dockerfile, build_args: &BTreeMap<String, String>) -> Result<Scope, Error> {
        let host = oci::Platform::host();
        Scope::with_platforms(df, build_args, &host, &host, "")
    }

    /// Like [`Scope::new`] with explicit build and target platforms and the target stage's
    /// name (`--target`, else the last stage's name; `TARGETSTAGE` is `default` when empty).
    pub fn with_platforms(
        df: &Dockerfile,
        build_args: &BTreeMap<String, String>,
        build: &oci::Platform,
        target: &oci::Platform,
        target_stage: &str,
    ) -> Result<Scope, Error> {
        // As containerd normalizes them: `linux/arm64`, not `linux/arm64/v8`.
        let (build, target) = (build.normalized(), target.normalized());
        let mut global = EnvList::default();
        let stage = if target_stage.is_empty() { "default" } else { target_stage };
        for (k, v) in [
            ("BUILDPLATFORM", build.to_string()),
            ("BUILDOS", build.os.clone()),
            ("BUILDOSVERSION", String::new()),
            ("BUILDARCH", build.architecture.clone()),
            ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
            ("TARGETPLATFORM", target.to_string()),
            ("TARGETOS", target.os.clone()),
            ("TARGETOSVERSION", String::new()),
            ("TARGETARCH", target.architecture.clone()),
            ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
            ("TARGETSTAGE", stage.to_string()),
        ] {
            let v = build_args.get(k).cloned().unwrap_or(v);
            global.set_last(k, &v);
        }
        let escape = df.directives.escape;
        for arg in &df.global_args {
            for def in &arg.args {
                let value = match (build_args.get(&def.name), &def.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(shell::expand_word(d, &global, escape).map_err(|e| expansion_error(arg, e))?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    global.set_last(&def.name, &v);
                }
            }
        }
        Ok(Scope { build_args: build_args.clone(), global, escape })
    }

    /// Expands a FROM image or `--platform` value with the global ARGs.
    pub fn expand_from(&self, word: &str) -> Result<String, shell::ExpandError> {
        shell::expand_word(word, &self.global, self.escape)
    }

    /// The global ARG values (including the automatic ARGs), `NAME=value`.
    pub fn global_env(&self) -> Vec<String> {
        self.global.to_strings()
    }

    /// The scope of one stage, starting from its base image's `Env`.
    pub fn for_stage(&self, base_image_env: &[String]) -> StageScope {
        let mut state = EnvList::default();
        let mut image = EnvList::default();
        for kv in base_image_env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            state.set_last(k, v);
            image.set_in_place(k, v);
        }
        StageScope { scope: self.clone(), state, image, declared: Vec::new() }
    }
}

/// The variables inside one stage as its instructions are applied in order. A stage built
/// `FROM` another stage starts from a clone of that stage's `StageScope`.
#[derive(Debug, Clone)]
pub struct StageScope {
    scope: Scope,
    /// What expansion and RUN see: the base's Env, then every ARG and ENV in order.
    state: EnvList,
    /// The image config's Env: the base's, then every ENV.
    image: EnvList,
    /// Each ARG name declared in this stage (or the stages it is built on), where it was first
    /// declared, with the last value one of its declarations gave it.
    declared: Vec<(String, Option<String>)>,
}

impl StageScope {
    /// Applies one instruction and returns it as it applies: ENV and every other instruction
    /// with its words expanded by the variables before it (ONBUILD is kept as written), ARG
    /// with each default replaced by the value the variable took (`None`: it has none).
    pub fn apply(&mut self, instruction: &Instruction) -> Result<Instruction, Error> {
        match instruction {
            Instruction::Arg(arg) => {
                let mut applied = arg.clone();
                for def in &mut applied.args {
                    let value = match (self.scope.build_args.get(&def.name), &def.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => {
                            Some(shell::expand_word(d, &self.state, arg.context.escape).map_err(|e| expansion_error(arg, e))?)
                        }
                        (None, None) => self.scope.global.get(&def.name).map(str::to_string),
                    };
                    if let Some(v) = &value {
                        self.state.set_last(&def.name, v);
                    }
                    match self.declared.iter_mut().find(|(n, _)| n == &def.name) {
                        Some(d) if value.is_some() => d.1 = value.clone(),
                        Some(_) => {}
                        None => self.declared.push((def.name.clone(), value.clone())),
                    }
                    def.default = value;
                }
                Ok(Instruction::Arg(applied))
            }
            Instruction::Env(_) => {
                let expanded = instruction.expand(&self.state)?;
                if let Instruction::Env(env) = &expanded {
                    for kv in &env.pairs {
                        self.state.set_last(&kv.key, &kv.value);
                        self.image.set_in_place(&kv.key, &kv.value);
                    }
                }
                Ok(expanded)
            }
            Instruction::OnBuild(_) => Ok(instruction.clone()),
            other => other.expand(&self.state),
        }
    }

    /// The variables an instruction of this stage is expanded with (`NAME=value`).
    pub fn expansion_env(&self) -> Vec<String> {
        self.state.to_strings()
    }

    /// The environment a RUN sees: the image's ENV and the declared ARGs with
    /// values (the one set last wins when names clash), in the order BuildKit lists them.
    pub fn run_env(&self) -> Vec<String> {
        self.state.to_strings()
    }

    /// Only the ENV variables: what goes into the image config.
    pub fn image_env(&self) -> Vec<String> {
        self.image.to_strings()
    }

    /// The ARGs declared so far and their values (`None`: no value).
    pub fn declared_args(&self) -> &[(String, Option<String>)] {
        &self.declared
    }

    /// The `K=V` words of a RUN's history (`RUN |N K=V… cmd`): every declared ARG with the
    /// value the RUN sees (an ENV set after the ARG wins; no value is `K=`).
    pub fn run_history_args(&self) -> Vec<String> {
        self.declared.iter().map(|(k, _)| format!("{k}={}", self.state.get(k).unwrap_or_default())).collect()
    }
}

fn expansion_error(arg: &Arg, e: shell::ExpandError) -> Error {
    Error::Dockerfile(Box::new(DockerfileError {
        kind: ErrorKind::Expansion,
        file: arg.context.file.to_string(),
        span: arg.span,
        message: e.to_string(),
        line_text: arg.original.clone(),
    }))
}
