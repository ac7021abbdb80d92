//! Making images in the store: `import` of a root filesystem tarball, and writing the config
//! and manifest for a list of layers (what the build engine's exporter also needs).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, History, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder,
};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{self, GzipLayerWriter, Layer};
use crate::media;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{LocalImage, Store};

/// `PATH` an imported image gets, the one Docker's own base images set.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Now, as OCI configs write times (RFC 3339, UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Turns a root filesystem tarball (plain or gzip) into a one-layer image tagged `reference`,
/// like `docker import`. `source` names the input for the image history.
pub fn import_rootfs(store: &Store, input: impl Read, reference: &Reference, source: &str) -> Result<LocalImage> {
    let mut input = BufReader::with_capacity(1024 * 1024, input);
    let head = input.fill_buf().map_err(|e| Error::Io { op: "read", path: source.into(), source: e })?;
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    let mut layer_writer = GzipLayerWriter::new(store.blob_writer()?, layer::level());
    let copied = if gzipped {
        std::io::copy(&mut flate2::read::MultiGzDecoder::new(input), &mut layer_writer)
    } else {
        std::io::copy(&mut input, &mut layer_writer)
    };
    copied.map_err(|e| Error::Io { op: "read", path: source.into(), source: e })?;
    let layer = layer_writer.finish()?;

    let created = now_rfc3339();
    let host = Platform::host();
    let history = HistoryBuilder::default()
        .created(created.clone())
        .created_by(format!("builder import {source}"))
        .comment("Imported from a root filesystem tarball")
        .build()
        .map_err(|e| Error::malformed("history", e))?;
    let config = ConfigBuilder::default().env(vec![DEFAULT_PATH.to_string()]).build().map_err(|e| Error::malformed("config", e))?;
    let image_config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(host.architecture.as_str()))
        .os(Os::from(host.os.as_str()))
        .variant(host.variant.clone().unwrap_or_default())
        .config(config)
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(Vec::<String>::new()).build().map_err(|e| Error::malformed("rootfs", e))?)
        .history(Vec::<History>::new())
        .build()
        .map_err(|e| Error::malformed("image config", e))?;
    let mut image_config = image_config;
    if host.variant.is_none() {
        image_config.set_variant(None);
    }
    let manifest = write_image(store, image_config, &[(layer, Some(history))])?;
    store.tag(reference, manifest)?;
    store.image(reference)
}

/// Stores an image made of `base` config plus `layers` (each with its history entry, appended in
/// order): fills in `rootfs.diff_ids`, writes config and OCI manifest, and returns the manifest's
/// descriptor, ready for [`Store::tag`].
pub fn write_image(store: &Store, base: ImageConfiguration, layers: &[(Layer, Option<History>)]) -> Result<Descriptor> {
    let mut config = base;
    let mut rootfs = config.rootfs().clone();
    let mut diff_ids = rootfs.diff_ids().clone();
    let mut history = config.history().clone().unwrap_or_default();
    for (layer, h) in layers {
        diff_ids.push(layer.diff_id.to_string());
        history.extend(h.clone());
    }
    rootfs.set_diff_ids(diff_ids);
    config.set_rootfs(rootfs);
    config.set_history(Some(history));
    let config_blob = store.put_json(&config)?;
    let layer_descs =
        layers.iter().map(|(l, _)| Descriptor::new(MediaType::ImageLayerGzip, l.blob.size, l.blob.digest.to_spec())).collect();
    write_manifest(store, &config_blob.digest, config_blob.size, layer_descs, None)
}

/// Stores an OCI manifest for a stored config and layer descriptors.
pub fn write_manifest(
    store: &Store,
    config: &Digest,
    config_size: u64,
    layers: Vec<Descriptor>,
    annotations: Option<HashMap<String, String>>,
) -> Result<Descriptor> {
    let mut builder = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(MediaType::ImageConfig, config_size, config.to_spec()))
        .layers(layers);
    if let Some(a) = annotations {
        builder = builder.annotations(a);
    }
    let manifest = builder.build().map_err(|e| Error::malformed("image manifest", e))?;
    let blob = store.put_json(&manifest)?;
    Ok(Descriptor::new(MediaType::from(media::OCI_MANIFEST), blob.size, blob.digest.to_spec()))
}
