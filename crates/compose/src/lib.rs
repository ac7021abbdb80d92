//! The compose file: finding it, reading it and turning it into a typed, normalized project.
//!
//! This crate does what Compose's loader does before anything runs: discovery of
//! `compose.yaml`/`docker-compose.yml`, `-f` files merged in order, `.env` and `--env-file`,
//! variable interpolation, the project name, and a typed model of every key builder compose
//! supports. Any unknown key, wrong type or bad interpolation is an [`Error`] that names the
//! file, line and key path (`compose.yaml:7:9: services.web.ports[0]: …`).
//!
//! It does not run containers, build images or create networks: the CLI does that with the
//! container, network and build crates, from the [`Project`] this crate returns.
//! (It borrows two value types rather than defining its own: the runtime's [`RestartPolicy`]
//! and the `units` crate's sizes.)

#![deny(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod de;
mod dotenv;
mod emit;
mod error;
mod forms;
mod interpolate;
pub mod model;
mod project;
mod yaml;

pub use error::{Error, Loc};
pub use forms::{format_duration, split_words};
pub use model::*;
pub use project::{FILE_NAMES, LoadOptions, Project, discover, load, normalize_project_name};

impl Project {
    /// The resolved project as `compose config` prints it (YAML).
    pub fn to_yaml(&self) -> String {
        emit::to_yaml(&self.to_json())
    }

    /// The resolved project as JSON (`compose config --format json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
