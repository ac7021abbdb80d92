//! Image archives: `docker save` tars and OCI layout tars (written by `save`, read by `load`).
