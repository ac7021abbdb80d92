//! The content-addressed build DAG: ops, vertices and definition digests. No I/O.

#![deny(unsafe_code)]
