//! `commit`: a container's changes as a new image on top of its image.

use crate::error::{Error, Result};
use crate::{ContainerState, Containers, now};

impl Containers {
    /// Writes the container's changes as one layer on its image, tags the new image as
    /// `reference` and returns its id (the config digest).
    pub fn commit(&self, state: &ContainerState, reference: &str, message: Option<&str>) -> Result<oci::Digest> {
        let store = oci::Store::open(self.root())?;
        let (_, base) = store
            .find_image(&state.image_id)
            .or_else(|_| store.find_image(&state.image))
            .map_err(|e| Error::Image { image: format!("{} of container {}", state.image, state.name), source: Box::new(e) })?;
        let reference = oci::Reference::parse(reference)?;
        let upper = self.dir_of(&state.id).join("upper");
        // The empty mount points the runtime created for /etc/hosts & co. are not changes.
        for f in crate::fs::PROVIDED {
            let p = upper.join(f);
            let in_lower = state.lowers.iter().any(|l| l.join(f).exists());
            if !in_lower && std::fs::metadata(&p).map(|m| m.is_file() && m.len() == 0).unwrap_or(false) {
                let _ = std::fs::remove_file(&p);
            }
        }
        let opts = snapshot::diff::DiffOptions { lowers: state.lowers.clone(), ..Default::default() };
        let mut writer = store.blob_writer()?;
        let layer = snapshot::diff::write_layer(&upper, &mut writer, &opts).map_err(|source| Error::Diff { name: state.name.clone(), source })?;
        let blob = writer.commit(None)?;
        let mut config = base.config.clone();
        let mut rootfs = config.rootfs().clone();
        let mut diff_ids = rootfs.diff_ids().clone();
        diff_ids.push(layer.diff_id.clone());
        rootfs.set_diff_ids(diff_ids);
        config.set_rootfs(rootfs);
        let mut history = config.history().clone().unwrap_or_default();
        let mut entry = oci::spec::History::default();
        entry.set_created(Some(now()));
        entry.set_created_by(Some(format!("builder commit {}", state.name)));
        entry.set_comment(Some(message.unwrap_or("").to_string()));
        history.push(entry);
        config.set_history(Some(history));
        config.set_created(Some(now()));
        let config_blob = store.put_json(&config)?;
        let mut layers = base.manifest.layers().clone();
        layers.push(oci::spec::Descriptor::new(oci::spec::MediaType::ImageLayerGzip, blob.size, blob.digest.to_spec()));
        let manifest = oci::import::write_manifest(&store, &config_blob.digest, config_blob.size, layers, None)?;
        store.tag(&reference, manifest)?;
        Ok(config_blob.digest)
    }
}
