//! The gRPC API: generated code, the client, and the server that exposes the solver.

#![deny(unsafe_code)]
