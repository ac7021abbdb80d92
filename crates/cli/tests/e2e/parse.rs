//! End-to-end tests: parse commands.
#[allow(unused_imports)] use crate::util::*;
