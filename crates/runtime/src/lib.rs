//! The sandbox and container lifecycle, expressed as OCI runtime-spec bundles.


