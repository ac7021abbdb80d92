//! End-to-end tests: serve commands.
#[allow(unused_imports)] use crate::util::*;
