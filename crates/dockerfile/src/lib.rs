//! The Dockerfile frontend: Dockerfile text -> syntax tree (pest grammar in
//! `frontend-grammar/dockerfile.pest`) -> typed instructions; shell-word
//! expansion; lowering to a build graph. (`.dockerignore` is the crate `dockerignore`.)
//!
//! It reads Dockerfiles exactly as BuildKit does (BuildKit's parser test
//! files and expansion vectors are its conformance tests). It does not run
//! anything, resolve images or read the build context.
//!
//! # Using it
//!
//! - [`Dockerfile::parse`]`(bytes, "Dockerfile")` gives the directives, the
//!   global ARGs (before the first FROM) and the [`Stage`]s; each stage has a
//!   [`From`] and its [`Instruction`]s. Every instruction is a typed struct
//!   with its [`Span`] (line, column), its `original` text (for image history,
//!   also [`Instruction::original_text`]) and checked flags: [`Run`] (mounts,
//!   network, security, command, heredocs), [`CopyFiles`] for COPY and ADD,
//!   [`EnvInstr`], [`Arg`], [`Label`], [`Expose`], [`Volume`], [`User`],
//!   [`Workdir`], [`Cmd`], [`Entrypoint`], [`Shell`], [`Healthcheck`],
//!   [`StopSignal`], [`OnBuild`], [`Maintainer`]. All are `serde::Serialize`.
//! - Errors are [`Error`]; mistakes in the Dockerfile are
//!   [`Error::Dockerfile`] with a [`DockerfileError`] that prints as
//!   `Dockerfile:LINE:COL: message` and the offending line, and has an
//!   [`ErrorKind`] to match on.
//! - Variables: [`shell::expand_word`] and [`shell::expand_words`] (BuildKit's
//!   `ProcessWord`/`ProcessWords`) over any [`shell::Env`] (implemented for
//!   `BTreeMap<String, String>` and `Vec<String>` of `K=V`).
//!   [`Instruction::expand`] expands exactly the fields BuildKit expands.
//! - Scoping (the one implementation; [`lower`] builds with it):
//!   [`scope::Scope::new`]`(dockerfile, build_args)` resolves the global ARGs
//!   and BuildKit's automatic ones ([`scope::Scope::expand_from`] for FROM
//!   lines), then [`scope::Scope::for_stage`]`(base_image_env)` gives a
//!   [`scope::StageScope`]: `apply` each instruction in order (it returns the
//!   instruction expanded); `expansion_env`, `run_env` and `image_env` say what
//!   an instruction, a RUN and the image config see.
//! - The syntax tree itself ([`ast::parse`], [`ast::Ast::dump`] in BuildKit's
//!   dump format) is there for tools such as `builder parse`.

#![deny(unsafe_code)]

pub mod ast;
mod error;
mod flags;
mod grammar;
mod instructions;
mod mount;
pub mod scope;
pub mod shell;
mod words;

/// Lowering typed instructions to a `graph::Definition` (owned by the build work, issue 5).
pub mod lower;

pub use error::{DockerfileError, Error, ErrorKind, Span};
pub use ast::{Heredoc, Word};
pub use instructions::{
    Arg, ArgDef, Cmd, Context, CopyFiles, Directives, Dockerfile, Entrypoint, EnvInstr, Expose, From, Healthcheck, InlineFile,
    Instruction, KeyValue, Label, Maintainer, NetworkMode, OnBuild, Run, SecurityMode, Shell, ShellOrExec, Stage, StopSignal, User,
    Volume, Workdir,
};
pub use mount::{CacheSharing, Mount, MountType};
pub use words::go_quote;
