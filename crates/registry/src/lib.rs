//! OCI distribution-spec / Docker registry v2 client: pull, push, auth, docker config and credential helpers.

#![deny(unsafe_code)]
