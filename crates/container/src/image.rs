//! The image a container runs: found in the local store or pulled, and its layers unpacked.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Finds the image locally, pulling it through the registry client if it is missing (and
/// fetching the layers it names but the store lacks).
pub(crate) fn find_or_pull(store: &oci::Store, options: &registry::ClientOptions, name: &str, progress: &dyn registry::Progress) -> Result<oci::LocalImage> {
    if let Ok((_, image)) = store.find_image(name) {
        // Layers of an image made from an imported build cache are fetched when first run.
        if !store.missing_layers(&image)?.is_empty() {
            registry::Client::new(options.clone())?.fetch_missing_layers(store, &image, progress)?;
        }
        return Ok(image);
    }
    progress.message(&format!("Unable to find image '{name}' locally"));
    let reference = oci::Reference::parse(name)?;
    let client = registry::Client::new(options.clone())?;
    client.pull(&reference, None, store, progress)?;
    store.find_image(name).map(|(_, image)| image).map_err(|e| Error::Image { image: name.to_string(), source: Box::new(e) })
}

/// Unpacks (once) every layer of `image`; returns the snapshot dirs top first.
pub(crate) fn layer_snapshots(root: &Path, store: &oci::Store, image: &oci::LocalImage) -> Result<Vec<PathBuf>> {
    let snapshots = snapshot::Snapshots::open(root)?;
    let mut lowers = Vec::new();
    for (digest, _) in image.layers()? {
        let d = digest.to_string();
        lowers.push(snapshots.ensure_layer(&d, || store.open_blob(&digest).map_err(std::io::Error::other))?);
    }
    if lowers.is_empty() {
        // An image without layers (FROM scratch + config only): an empty lower dir.
        let empty = root.join("snapshots").join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| Error::io("creating", &empty, e))?;
        lowers.push(empty);
    }
    lowers.reverse();
    Ok(lowers)
}

/// The image's HEALTHCHECK, which the OCI config type does not carry: read from the raw
/// config JSON (`config.Healthcheck`, Docker's field).
pub(crate) fn healthcheck(store: &oci::Store, image: &oci::LocalImage) -> Option<crate::settings::Healthcheck> {
    let raw = store.read_blob(&image.config_digest).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    serde_json::from_value(v.get("config")?.get("Healthcheck")?.clone()).ok()
}
