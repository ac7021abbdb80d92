//! Image references, OCI manifests/index/config, the local content store (an OCI image layout) and its GC.

#![deny(unsafe_code)]
