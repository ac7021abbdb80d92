//! End-to-end tests of the `builder` binary. Everything compiles into this one
//! test binary; each command group has its own module, helpers live in `util`.

mod util;
pub mod util_registry;

mod build;
mod build_compat;
mod build_sources;
mod clean;
mod cache_explain;
mod cache_share;
mod compose;
mod container;
mod container_life;
mod image;
mod image_list;
mod info_search;
mod inspect;
mod network;
mod parse;
mod serve;
mod stories;
mod volume;
