//! A client for OCI distribution-spec / Docker registry v2 registries: pull an image into the
//! local store ([`oci::Store`]), push one from it, and authenticate the way `docker` does
//! (anonymous, basic, bearer tokens; credentials from `~/.docker/config.json` and
//! `docker-credential-*` helpers).
//!
//! What it is not: it does not unpack layers or build anything, and it keeps no state of its own
//! beyond what it writes into the store and `config.json` (`login`/`logout`).
//!
//! # Sync and async
//! Every operation has an `async fn …_async` and a blocking twin ([`Client::pull`],
//! [`Client::push`], [`Client::login`]). The blocking ones run on a small tokio runtime the
//! client creates the first time one is called. Called from inside another tokio runtime they
//! still work (the I/O runs on a helper thread and only the calling thread blocks), but async
//! code should prefer the `_async` versions, which run on whatever tokio runtime polls them.
//!
//! Plain HTTP is only used for loopback registries (localhost, 127.0.0.0/8, ::1) and those named
//! in [`ClientOptions::insecure_registries`]; everything else is HTTPS (rustls, system roots).

#![deny(unsafe_code)]

mod auth;
mod blobs;
mod client;
pub mod docker_config;
mod error;
mod lazy;
mod progress;
mod pull;
mod push;
mod search;

pub use blobs::{BlobPush, Manifest};
pub use client::{Client, ClientOptions};
pub use docker_config::{Credentials, DockerConfig};
pub use error::{Error, Result};
pub use progress::{LineProgress, NoProgress, Progress};
pub use pull::PulledImage;
pub use search::SearchResult;
