//! End-to-end tests: build commands.
#[allow(unused_imports)] use crate::util::*;
