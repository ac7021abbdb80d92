//! Which variables an instruction sees, as BuildKit scopes them.
//!
//! - ARGs before the first FROM are global: usable in FROM lines, and inside
//!   a stage only once re-declared there (`ARG NAME` without a default takes
//!   the global value).
//! - A build arg (`--build-arg NAME=v`) overrides the default of a declared ARG.
//! - BuildKit's platform ARGs (TARGETPLATFORM, TARGETOS, TARGETARCH,
//!   TARGETVARIANT, BUILDPLATFORM, BUILDOS, BUILDARCH, BUILDVARIANT, …) are
//!   global ARGs that always exist.
//! - All values of one ENV are expanded against the environment before it.
//! - A stage's environment starts with its base image's `Env`; ARG and ENV
//!   then set variables in order (the later wins). Only ENV goes into the
//!   image config.

use std::collections::BTreeMap;

use crate::error::{DockerfileError, Error, ErrorKind};
use crate::instructions::{Arg, Instruction};
use crate::shell::{self, Env};

/// An ordered environment where setting a name replaces it in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EnvList(Vec<(String, String)>);

impl EnvList {
    fn set(&mut self, k: &str, v: &str) {
        match self.0.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.to_string(),
            None => self.0.push((k.to_string(), v.to_string())),
        }
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

/// An OS/architecture/variant triple, e.g. `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_string();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_string();
        let variant = parts.next().unwrap_or_default().to_string();
        if parts.next().is_some() {
            return None;
        }
        Some(Platform { os, architecture, variant })
    }

    /// The platform this program runs on ([`oci::Platform::host`], normalized).
    pub fn host() -> Platform {
        let h = oci::Platform::host().normalized();
        Platform { os: h.os, architecture: h.architecture, variant: h.variant.unwrap_or_default() }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
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
    /// Resolves the global ARGs (host platform as build and target platform).
    pub fn new(global_args: &[Arg], build_args: &BTreeMap<String, String>) -> Result<Scope, Error> {
        let host = Platform::host();
        Scope::with_platforms(global_args, build_args, &host, &host, "")
    }

    /// Like [`Scope::new`] with explicit build and target platforms and target stage name.
    pub fn with_platforms(
        global_args: &[Arg],
        build_args: &BTreeMap<String, String>,
        build: &Platform,
        target: &Platform,
        target_stage: &str,
    ) -> Result<Scope, Error> {
        let mut global = EnvList::default();
        let stage = if target_stage.is_empty() { "default" } else { target_stage };
        for (k, v) in [
            ("BUILDPLATFORM", build.to_string()),
            ("BUILDOS", build.os.clone()),
            ("BUILDOSVERSION", String::new()),
            ("BUILDARCH", build.architecture.clone()),
            ("BUILDVARIANT", build.variant.clone()),
            ("TARGETPLATFORM", target.to_string()),
            ("TARGETOS", target.os.clone()),
            ("TARGETOSVERSION", String::new()),
            ("TARGETARCH", target.architecture.clone()),
            ("TARGETVARIANT", target.variant.clone()),
            ("TARGETSTAGE", stage.to_string()),
        ] {
            let v = build_args.get(k).cloned().unwrap_or(v);
            global.set(k, &v);
        }
        let escape = global_args.first().map(|a| a.context.escape).filter(|c| *c != '\0').unwrap_or('\\');
        for arg in global_args {
            for def in &arg.args {
                let value = match (build_args.get(&def.name), &def.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(shell::expand_word(d, &global, escape).map_err(|e| expansion_error(arg, e))?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    global.set(&def.name, &v);
                }
            }
        }
        Ok(Scope { build_args: build_args.clone(), global, escape })
    }

    /// Expands a FROM image or `--platform` value with the global ARGs.
    pub fn expand_from(&self, word: &str) -> Result<String, shell::ExpandError> {
        shell::expand_word(word, &self.global, self.escape)
    }

    /// The global ARG values (including the platform ARGs), `NAME=value`.
    pub fn global_env(&self) -> Vec<String> {
        self.global.to_strings()
    }

    /// The scope of one stage, starting from its base image's `Env`.
    pub fn for_stage(&self, base_image_env: &[String]) -> StageScope {
        let mut env = EnvList::default();
        for kv in base_image_env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            env.set(k, v);
        }
        StageScope { scope: self.clone(), state: env.clone(), image: env, declared: Vec::new() }
    }
}

/// The variables inside one stage as its instructions are applied in order.
#[derive(Debug, Clone)]
pub struct StageScope {
    scope: Scope,
    state: EnvList,
    image: EnvList,
    declared: Vec<(String, Option<String>)>,
}

impl StageScope {
    /// Applies an ARG or ENV (other instructions change nothing here).
    pub fn apply(&mut self, instruction: &Instruction) -> Result<(), Error> {
        match instruction {
            Instruction::Arg(arg) => {
                for def in &arg.args {
                    let value = match (self.scope.build_args.get(&def.name), &def.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => {
                            Some(shell::expand_word(d, &self.state, arg.context.escape).map_err(|e| expansion_error(arg, e))?)
                        }
                        (None, None) => self.scope.global.get(&def.name).map(str::to_string),
                    };
                    if let Some(v) = &value {
                        self.state.set(&def.name, v);
                    }
                    self.declared.retain(|(n, _)| n != &def.name);
                    self.declared.push((def.name.clone(), value));
                }
            }
            Instruction::Env(_) => {
                let Instruction::Env(env) = instruction.expand(&self.state)? else { return Ok(()) };
                for kv in &env.pairs {
                    self.state.set(&kv.key, &kv.value);
                    self.image.set(&kv.key, &kv.value);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The variables an instruction of this stage is expanded with (`NAME=value`).
    pub fn expansion_env(&self) -> Vec<String> {
        self.state.to_strings()
    }

    /// The environment a RUN sees: the image's ENV and the declared ARGs with
    /// values (the one set last wins when names clash).
    pub fn run_env(&self) -> Vec<String> {
        self.state.to_strings()
    }

    /// Only the ENV variables: what goes into the image config.
    pub fn image_env(&self) -> Vec<String> {
        self.image.to_strings()
    }

    /// The ARGs declared so far in this stage and their values (`None`: no value).
    pub fn declared_args(&self) -> &[(String, Option<String>)] {
        &self.declared
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
