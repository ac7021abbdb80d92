//! Compiles `proto/builder/v1/*.proto` with the protoc binary from `protoc-bin-vendored`, so a
//! fresh machine needs no system protoc.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("builder/v1/control.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(config, &[file], &[root])?;
    Ok(())
}
