//! Local images: a tag or ID resolved to its manifest and config.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media;
use crate::platform::Platform;
use crate::reference::{DEFAULT_REGISTRY, Reference};

/// An image in the store: its manifest and config, parsed.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// Digest of the manifest (for a multi-platform index, of the chosen platform's manifest).
    pub manifest_digest: Digest,
    /// Media type of the manifest (OCI or Docker schema 2).
    pub manifest_media_type: String,
    pub manifest: ImageManifest,
    /// Digest of the config: the image ID, as Docker shows it.
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    /// What the tag points at, when it is an index rather than the manifest itself.
    pub index_digest: Option<Digest>,
    /// The digest the registry it was pulled from knows it by, when that is not the manifest's
    /// own (an image pulled through a multi-platform index).
    pub repo_digest: Option<Digest>,
}

impl LocalImage {
    /// The image ID (`sha256:` + config digest), as `docker images` shows it.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Layer blobs in order, bottom first.
    pub fn layers(&self) -> Result<Vec<(Digest, u64)>> {
        self.manifest.layers().iter().map(|l| Ok((Digest::try_from(l.digest())?, l.size()))).collect()
    }

    /// Uncompressed layer digests (`rootfs.diff_ids`), bottom first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config.rootfs().diff_ids().iter().map(|d| d.parse()).collect()
    }

    /// Bytes of all layers (compressed, as stored).
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }

    /// Every blob the image needs: manifest, config, layers (and the index it came through).
    pub fn blobs(&self) -> Result<Vec<Digest>> {
        let mut out = vec![self.manifest_digest.clone(), self.config_digest.clone()];
        out.extend(self.layers()?.into_iter().map(|(d, _)| d));
        out.extend(self.index_digest.clone());
        Ok(out)
    }
}

impl Store {
    /// The local image `reference` names. A name that is a bare hex string is also tried as an
    /// image ID prefix, like `docker inspect 3f4a`.
    pub fn image(&self, reference: &Reference) -> Result<LocalImage> {
        if let Some(desc) = self.resolve(reference)? {
            return self.image_from_descriptor(&desc);
        }
        let is_bare = reference.registry() == DEFAULT_REGISTRY && reference.tag() == Some("latest") && reference.digest().is_none();
        if let Some(hex) = reference.repository().strip_prefix("library/").filter(|h| is_bare && is_hex(h))
            && let Some(image) = self.image_by_id(hex)? {
                return Ok(image);
            }
        Err(Error::ImageNotFound(reference.familiar()))
    }

    /// Finds an image by what a user typed: a reference, a full image ID (`sha256:…`) or an ID
    /// prefix. Returns the reference it was found by, if any.
    pub fn find_image(&self, name: &str) -> Result<(Option<Reference>, LocalImage)> {
        let id = name.strip_prefix("sha256:").unwrap_or(name);
        if is_hex(id)
            && let Some(image) = self.image_by_id(id)? {
                return Ok((None, image));
            }
        let reference = Reference::parse(name)?;
        let image = self.image(&reference)?;
        Ok((Some(reference), image))
    }

    /// The image whose ID (config digest) starts with `prefix`, among tagged images.
    pub fn image_by_id(&self, prefix: &str) -> Result<Option<LocalImage>> {
        let mut found: BTreeMap<Digest, LocalImage> = BTreeMap::new();
        for (_, desc) in self.list()? {
            let Ok(image) = self.image_from_descriptor(&desc) else { continue };
            if image.config_digest.hex().starts_with(prefix) || (prefix.len() == 64 && image.manifest_digest.hex() == prefix) {
                found.insert(image.config_digest.clone(), image);
            }
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_values().next()),
            count => Err(Error::AmbiguousId { prefix: prefix.into(), count }),
        }
    }

    /// Every tag that points at the image with config digest `id`.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<Reference>> {
        let mut out = Vec::new();
        for (r, desc) in self.list()? {
            if self.image_from_descriptor(&desc).is_ok_and(|img| &img.config_digest == id) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Loads the image an index.json entry (or any manifest descriptor) points at. For an index,
    /// the host platform's manifest is chosen.
    pub fn image_from_descriptor(&self, desc: &Descriptor) -> Result<LocalImage> {
        let digest = Digest::try_from(desc.digest())?;
        let bytes = self.read_blob(&digest)?;
        let media_type = media::sniff(&bytes).unwrap_or_else(|| desc.media_type().to_string());
        if media::is_index(&media_type) {
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| Error::malformed(format!("image index {digest}"), e))?;
            let chosen = choose_platform(&index, &Platform::host())?;
            let mut image = self.image_from_descriptor(&chosen)?;
            image.index_digest = Some(digest.clone());
            image.repo_digest = Some(digest);
            return Ok(image);
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| Error::malformed(format!("image manifest {digest}"), e))?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config: ImageConfiguration = self.read_json(&config_digest).map_err(|e| match e {
            Error::Malformed { reason, .. } => Error::malformed(format!("image config {config_digest}"), reason),
            other => other,
        })?;
        let repo_digest =
            desc.annotations().as_ref().and_then(|a| a.get(crate::REPO_DIGEST_ANNOTATION)).and_then(|d| d.parse::<Digest>().ok());
        Ok(LocalImage {
            manifest_digest: digest,
            manifest_media_type: media_type,
            manifest,
            config_digest,
            config,
            index_digest: None,
            repo_digest,
        })
    }
}

/// The manifest of an index for `platform`.
pub fn choose_platform(index: &ImageIndex, platform: &Platform) -> Result<Descriptor> {
    index.manifests().iter().find(|d| d.platform().as_ref().is_some_and(|p| platform.matches(p))).cloned().ok_or_else(|| {
        Error::NoMatchingPlatform {
            wanted: platform.to_string(),
            available: index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref().map(|p| Platform::from_spec(p).to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        }
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
