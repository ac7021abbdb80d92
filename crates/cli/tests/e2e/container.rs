//! End-to-end tests: container commands.
#[allow(unused_imports)] use crate::util::*;
