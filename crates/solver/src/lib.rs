//! Schedules the build graph in parallel, the cache index, op execution and image export.

#![deny(unsafe_code)]
