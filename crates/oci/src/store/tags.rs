//! Tags: `index.json` entries named by the `org.opencontainers.image.ref.name` annotation.
//!
//! Readers read `index.json` without a lock (it is only ever replaced by rename); writers take
//! an exclusive lock on `index.lock` for the read-modify-write, so concurrent processes never
//! lose each other's tags.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use super::Store;
use crate::REF_NAME_ANNOTATION;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;

pub(super) const EMPTY_INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// Holds the exclusive lock on `index.lock` until dropped.
pub struct IndexLock {
    _file: File,
}

impl Store {
    pub(super) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Takes the store-wide lock that serializes `index.json` updates (and GC).
    pub(crate) fn lock_index(&self) -> Result<IndexLock> {
        let path = self.root.join("index.lock");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(Error::io("open lock file", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&file).map_err(Error::io("lock", &path))?;
        Ok(IndexLock { _file: file })
    }

    /// The layout's `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::malformed(path.display().to_string(), e))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| Error::malformed("index.json", e))?;
        self.write_file_atomic(&self.index_path(), &bytes)
    }

    /// Changes `index.json` under the lock.
    fn update_index<T>(&self, change: impl FnOnce(&mut Vec<Descriptor>) -> T) -> Result<T> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = change(&mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(out)
    }

    /// Points `reference` at the manifest (or index) `target`, replacing an older entry of that name.
    pub fn tag(&self, reference: &Reference, target: Descriptor) -> Result<()> {
        let name = reference.to_string();
        let mut target = target;
        let mut annotations = target.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.to_string(), name.clone());
        target.set_annotations(Some(annotations));
        self.update_index(|manifests| {
            // The image the name pointed at stays, untagged, when no other entry keeps it: a
            // dangling image (`<none>:<none>`), as Docker keeps one when a build takes its tag.
            let old = manifests.iter().position(|d| ref_name(d) == Some(name.as_str()));
            if let Some(i) = old {
                let previous = manifests.remove(i);
                let kept = previous.digest() == target.digest() || manifests.iter().any(|d| d.digest() == previous.digest());
                if !kept {
                    let mut dangling = previous;
                    let mut a = dangling.annotations().clone().unwrap_or_default();
                    a.remove(REF_NAME_ANNOTATION);
                    dangling.set_annotations((!a.is_empty()).then_some(a));
                    manifests.push(dangling);
                }
            }
            manifests.retain(|d| !(ref_name(d).is_none() && d.digest() == target.digest()));
            manifests.push(target);
        })
    }

    /// Images no tag names any more (`<none>:<none>`): the manifests (or indexes) in
    /// `index.json` without a name.
    pub fn dangling(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_index()?.manifests().iter().filter(|d| ref_name(d).is_none()).cloned().collect())
    }

    /// Forgets the dangling image `digest` (its blobs stay until a collection). Returns whether
    /// it was there.
    pub fn remove_dangling(&self, digest: &Digest) -> Result<bool> {
        let spec = digest.to_spec();
        self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|d| !(ref_name(d).is_none() && *d.digest() == spec));
            before != manifests.len()
        })
    }

    /// Removes the tag `reference`. Returns whether it existed.
    pub fn untag(&self, reference: &Reference) -> Result<bool> {
        let name = reference.to_string();
        self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|d| ref_name(d) != Some(name.as_str()));
            before != manifests.len()
        })
    }

    /// The manifest `reference` names: its tag entry, or for a `@digest` reference, the stored
    /// manifest of that digest.
    pub fn resolve(&self, reference: &Reference) -> Result<Option<Descriptor>> {
        let name = reference.to_string();
        let index = self.read_index()?;
        if let Some(d) = index.manifests().iter().find(|d| ref_name(d) == Some(name.as_str())) {
            return Ok(Some(d.clone()));
        }
        match reference.digest() {
            Some(digest) if self.has_blob(digest) => Ok(Some(self.manifest_descriptor(digest)?)),
            _ => Ok(None),
        }
    }

    /// Every tag in the store, with the manifest it points at, sorted by name.
    pub fn list(&self) -> Result<Vec<(Reference, Descriptor)>> {
        let index = self.read_index()?;
        let mut out: Vec<(Reference, Descriptor)> = index
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = ref_name(d)?;
                match Reference::parse(name) {
                    Ok(r) => Some((r, d.clone())),
                    Err(e) => {
                        tracing::debug!("ignoring index.json entry {name:?}: {e}");
                        None
                    }
                }
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// A descriptor for a stored manifest or index blob, its media type read from the blob.
    pub fn manifest_descriptor(&self, digest: &Digest) -> Result<Descriptor> {
        let bytes = self.read_blob(digest)?;
        let media_type = crate::media::sniff(&bytes)
            .ok_or_else(|| Error::malformed(format!("manifest {digest}"), "it is not a manifest or an index"))?;
        Ok(Descriptor::new(MediaType::from(media_type.as_str()), bytes.len() as u64, digest.to_spec()))
    }
}

/// The tag name of an index entry.
pub(crate) fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref().and_then(|a: &HashMap<String, String>| a.get(REF_NAME_ANNOTATION)).map(String::as_str)
}
