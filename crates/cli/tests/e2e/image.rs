//! End-to-end tests: image commands.
#[allow(unused_imports)] use crate::util::*;
