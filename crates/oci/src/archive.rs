//! Image archives: `docker save` tars and OCI layout tars (written by `save`, read by `load`).
//!
//! The docker format written here is the one `skopeo copy … docker-archive:` writes and
//! `docker load` reads: `manifest.json`, `<config hex>.json` and one uncompressed
//! `<diffID hex>.tar` per layer. `load` also reads Docker's own layouts (legacy
//! `<id>/layer.tar`, and the OCI-layout-in-a-tar Docker 25+ writes) and plain OCI layout tars.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, MediaType};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{self, GzipLayerWriter};
use crate::reference::Reference;
use crate::store::{LocalImage, Store};

/// Which archive layout `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` / `docker-archive:` format.
    Docker,
    /// An OCI image layout in a tar (`oci-archive:`).
    Oci,
}

/// One image `load` stored.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The name it was tagged with, if the archive named it.
    pub reference: Option<Reference>,
    pub image_id: Digest,
}

/// An entry of a docker archive's `manifest.json`.
#[derive(Serialize, Deserialize, Debug)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Writes `images` (each with the name it should carry, if any) as an archive to `out`.
pub fn save(store: &Store, images: &[(Option<Reference>, LocalImage)], format: Format, out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let werr = |e: io::Error| Error::Io { op: "write archive", path: "<archive>".into(), source: e };
    match format {
        Format::Oci => {
            let mut written = std::collections::HashSet::new();
            let mut manifests = Vec::new();
            append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
            for (reference, image) in images {
                for d in image.blobs()? {
                    if written.insert(d.clone()) {
                        append_file(&mut tar, &format!("blobs/sha256/{}", d.hex()), &store.blob_path(&d)).map_err(werr)?;
                    }
                }
                let target = image.index_digest.as_ref().unwrap_or(&image.manifest_digest);
                let mut desc = store.manifest_descriptor(target)?;
                if let Some(r) = reference {
                    desc.set_annotations(Some(HashMap::from([(crate::REF_NAME_ANNOTATION.to_string(), r.to_string())])));
                }
                manifests.push(desc);
            }
            let index: ImageIndex = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(manifests)
                .build()
                .map_err(|e| Error::malformed("index.json", e))?;
            let bytes = serde_json::to_vec(&index).map_err(|e| Error::malformed("index.json", e))?;
            append_bytes(&mut tar, "index.json", &bytes).map_err(werr)?;
        }
        Format::Docker => {
            let mut entries: Vec<DockerEntry> = Vec::new();
            let mut written = std::collections::HashSet::new();
            let mut repositories: HashMap<String, HashMap<String, String>> = HashMap::new();
            for (reference, image) in images {
                let config_name = format!("{}.json", image.config_digest.hex());
                if written.insert(config_name.clone()) {
                    append_file(&mut tar, &config_name, &store.blob_path(&image.config_digest)).map_err(werr)?;
                }
                let diff_ids = image.diff_ids()?;
                let mut layer_names = Vec::new();
                for ((blob, _), diff_id) in image.layers()?.iter().zip(diff_ids.iter()) {
                    let name = format!("{}.tar", diff_id.hex());
                    if written.insert(name.clone()) {
                        append_uncompressed_layer(store, &mut tar, &name, blob, diff_id)?;
                    }
                    layer_names.push(name);
                }
                let repo_tags = reference.as_ref().filter(|r| r.tag().is_some()).map(|r| vec![r.familiar()]);
                if let (Some(r), Some(last)) = (reference.as_ref().filter(|r| r.tag().is_some()), diff_ids.last()) {
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(r.tag().unwrap_or("latest").to_string(), last.hex().to_string());
                }
                entries.push(DockerEntry { config: config_name, repo_tags, layers: layer_names });
            }
            let bytes = serde_json::to_vec(&entries).map_err(|e| Error::malformed("manifest.json", e))?;
            append_bytes(&mut tar, "manifest.json", &bytes).map_err(werr)?;
            if !repositories.is_empty() {
                let bytes = serde_json::to_vec(&repositories).map_err(|e| Error::malformed("repositories", e))?;
                append_bytes(&mut tar, "repositories", &bytes).map_err(werr)?;
            }
        }
    }
    tar.into_inner().map_err(werr)?.flush().map_err(werr)?;
    Ok(())
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> io::Result<()> {
    tar.append_data(&mut header(bytes.len() as u64), name, bytes)
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    tar.append_data(&mut header(size), name, f)
}

/// Appends a layer uncompressed (docker archives hold layer tars as their diffID names them).
fn append_uncompressed_layer<W: Write>(
    store: &Store,
    tar: &mut tar::Builder<W>,
    name: &str,
    blob: &Digest,
    diff_id: &Digest,
) -> Result<()> {
    let tmp = store.tmp_dir().join(format!("save-{}", crate::store::unique_name()));
    let _cleanup = RemoveOnDrop(tmp.clone());
    let source = store.open_blob(blob)?;
    let mut head = [0u8; 2];
    let compressed = (&source).read(&mut head).map_err(Error::io("read", store.blob_path(blob)))? == 2 && head == [0x1f, 0x8b];
    let source = store.open_blob(blob)?;
    let path = if compressed {
        let mut out = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        let mut hasher = HashingWriter { inner: &mut out, hasher: sha2::Sha256::default() };
        io::copy(&mut flate2::read::MultiGzDecoder::new(io::BufReader::new(source)), &mut hasher)
            .map_err(Error::io("decompress layer", store.blob_path(blob)))?;
        let got = Digest::from_hasher(hasher.hasher);
        if got != *diff_id {
            return Err(Error::DigestMismatch { expected: diff_id.to_string(), actual: got.to_string(), size: 0 });
        }
        tmp.clone()
    } else {
        store.blob_path(blob)
    };
    append_file(tar, name, &path).map_err(Error::io("write archive", &path))
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: sha2::Sha256,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// A layer file of the archive that went straight into the store while the tar was read.
struct StreamedLayer {
    desc: Descriptor,
    /// The uncompressed digest, when the file was an uncompressed tar (gzip files are kept as is).
    diff_id: Option<Digest>,
}

/// Reads an archive (docker or OCI format) from `input` into the store and tags what it names.
/// `source` names the input in errors.
///
/// One pass: blobs and layer tars stream into the store (compressed on the way) as they come;
/// only the small JSON files are unpacked to a temp dir, because `manifest.json` often comes last.
pub fn load(store: &Store, input: impl Read, source: &str) -> Result<Vec<Loaded>> {
    let bad = |reason: String| Error::BadArchive { path: source.to_string(), reason };
    let dir = store.tmp_dir().join(format!("load-{}", crate::store::unique_name()));
    fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let _cleanup = RemoveOnDrop(dir.clone());
    let mut streamed: HashMap<String, StreamedLayer> = HashMap::new();
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            continue;
        }
        let name = entry.path().map_err(|e| bad(format!("bad entry name: {e}")))?.to_string_lossy().trim_start_matches("./").to_string();
        if kind.is_file() {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                let digest = Digest::from_hex(hex).map_err(|_| bad(format!("{name} is not named by a sha256 digest")))?;
                if !store.has_blob(&digest) {
                    let size = entry.header().size().ok();
                    store.write_blob(&mut entry, &digest, size).map_err(|e| bad(format!("{name}: {e}")))?;
                }
                continue;
            }
            if name.ends_with(".tar") || name.ends_with(".tar.gz") {
                streamed.insert(name.clone(), stream_layer(store, &mut entry).map_err(|e| bad(format!("{name}: {e}")))?);
                continue;
            }
        }
        entry.unpack_in(&dir).map_err(|e| bad(format!("cannot unpack {name}: {e}")))?;
    }
    if dir.join("manifest.json").is_file() {
        load_docker(store, &dir, &streamed, source)
    } else if dir.join("index.json").is_file() {
        load_oci(store, &dir, source)
    } else {
        Err(bad("neither a docker archive (manifest.json) nor an OCI layout (index.json)".into()))
    }
}

/// Stores one layer file: a gzip file as is, an uncompressed tar gzipped (in parallel).
fn stream_layer(store: &Store, input: impl Read) -> Result<StreamedLayer> {
    let mut input = io::BufReader::with_capacity(1024 * 1024, input);
    let head = io::BufRead::fill_buf(&mut input).map_err(Error::io("read", "<archive entry>"))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut w = store.blob_writer()?;
        io::copy(&mut input, &mut w).map_err(Error::io("read", "<archive entry>"))?;
        let blob = w.commit(None)?;
        return Ok(StreamedLayer { desc: Descriptor::new(MediaType::ImageLayerGzip, blob.size, blob.digest.to_spec()), diff_id: None });
    }
    let mut w = GzipLayerWriter::new(store.blob_writer()?, layer::level());
    io::copy(&mut input, &mut w).map_err(Error::io("read", "<archive entry>"))?;
    let l = w.finish()?;
    Ok(StreamedLayer { desc: Descriptor::new(MediaType::ImageLayerGzip, l.blob.size, l.blob.digest.to_spec()), diff_id: Some(l.diff_id) })
}

/// The streamed layer an archive path names, following a legacy `<id>/layer.tar` symlink.
fn find_streamed<'a>(dir: &Path, streamed: &'a HashMap<String, StreamedLayer>, name: &str) -> Option<&'a StreamedLayer> {
    let name = name.trim_start_matches("./");
    if let Some(l) = streamed.get(name) {
        return Some(l);
    }
    let target = fs::read_link(dir.join(name)).ok()?;
    let parent = Path::new(name).parent().unwrap_or(Path::new(""));
    let mut parts: Vec<String> = Vec::new();
    for c in parent.join(target).components() {
        match c {
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    streamed.get(&parts.join("/"))
}

/// A path inside the unpacked archive, refusing anything (symlinks included) that leads out.
fn inside(dir: &Path, rel: &str, source: &str) -> Result<PathBuf> {
    let bad = |reason: String| Error::BadArchive { path: source.to_string(), reason };
    let path = dir.join(rel);
    let real = path.canonicalize().map_err(|e| bad(format!("{rel}: {e}")))?;
    let base = dir.canonicalize().map_err(Error::io("resolve", dir))?;
    if !real.starts_with(&base) {
        return Err(bad(format!("{rel} points outside the archive")));
    }
    Ok(real)
}

fn load_docker(store: &Store, dir: &Path, streamed: &HashMap<String, StreamedLayer>, source: &str) -> Result<Vec<Loaded>> {
    let bad = |reason: String| Error::BadArchive { path: source.to_string(), reason };
    let bytes = fs::read(dir.join("manifest.json")).map_err(Error::io("read", dir.join("manifest.json")))?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut loaded = Vec::new();
    for entry in entries {
        let config_bytes = match entry.config.strip_prefix("blobs/sha256/").map(Digest::from_hex) {
            Some(Ok(d)) if store.has_blob(&d) => store.read_blob(&d)?,
            _ => fs::read(inside(dir, &entry.config, source)?).map_err(Error::io("read", dir.join(&entry.config)))?,
        };
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("{}: {e}", entry.config)))?;
        if config.rootfs().diff_ids().len() != entry.layers.len() {
            return Err(bad(format!(
                "{} lists {} layers but its config has {} diff_ids",
                entry.config,
                entry.layers.len(),
                config.rootfs().diff_ids().len()
            )));
        }
        let config_blob = store.put_bytes(&config_bytes)?;
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(config.rootfs().diff_ids()) {
            let diff_id: Digest = diff_id.parse()?;
            let layer = match find_streamed(dir, streamed, name) {
                Some(l) => StreamedLayer { desc: l.desc.clone(), diff_id: l.diff_id.clone() },
                // Docker 25+ archives name layers by their blob path; those blobs are in the store now.
                None => match name.strip_prefix("blobs/sha256/").map(Digest::from_hex) {
                    Some(Ok(d)) if store.has_blob(&d) => stream_layer(store, store.open_blob(&d)?)?,
                    _ => return Err(bad(format!("layer {name} is not in the archive"))),
                },
            };
            if let Some(got) = &layer.diff_id
                && *got != diff_id {
                    return Err(bad(format!("layer {name} has digest {got}, the config says {diff_id}")));
                }
            layers.push(layer.desc);
        }
        let manifest = crate::import::write_manifest(store, &config_blob.digest, config_blob.size, layers, None)?;
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            loaded.push(Loaded { reference: None, image_id: config_blob.digest.clone() });
        }
        for tag in tags {
            let r = Reference::parse(&tag).map_err(|e| bad(format!("RepoTags: {e}")))?;
            store.tag(&r, manifest.clone())?;
            loaded.push(Loaded { reference: Some(r), image_id: config_blob.digest.clone() });
        }
    }
    Ok(loaded)
}

fn load_oci(store: &Store, dir: &Path, source: &str) -> Result<Vec<Loaded>> {
    let bad = |reason: String| Error::BadArchive { path: source.to_string(), reason };
    let bytes = fs::read(dir.join("index.json")).map_err(Error::io("read", dir.join("index.json")))?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| bad(format!("index.json: {e}")))?;
    // Every blob was verified against its name and stored while the tar was read.
    let mut loaded = Vec::new();
    for desc in index.manifests() {
        let digest = Digest::try_from(desc.digest())?;
        if !store.has_blob(&digest) {
            return Err(bad(format!("index.json names {digest}, which is not in blobs/")));
        }
        let image = store.image_from_descriptor(desc).map_err(|e| bad(e.to_string()))?;
        for b in image.blobs()? {
            if !store.has_blob(&b) {
                return Err(bad(format!("image {digest} needs blob {b}, which is not in the archive")));
            }
        }
        let name = desc.annotations().as_ref().and_then(|a| a.get(crate::REF_NAME_ANNOTATION)).cloned();
        // A bare tag ("latest") as OCI layouts often carry cannot name a local image on its own.
        let reference = name
            .filter(|n| n.contains('/') || n.contains(':'))
            .or_else(|| desc.annotations().as_ref().and_then(|a| a.get("io.containerd.image.name")).cloned());
        let mut clean = desc.clone();
        clean.set_annotations(None);
        let media_type = store.manifest_descriptor(&digest).map(|d| d.media_type().clone()).unwrap_or(clean.media_type().clone());
        clean.set_media_type(media_type);
        match reference.map(|n| Reference::parse(&n)) {
            Some(Ok(r)) => {
                store.tag(&r, clean)?;
                loaded.push(Loaded { reference: Some(r), image_id: image.config_digest });
            }
            _ => loaded.push(Loaded { reference: None, image_id: image.config_digest }),
        }
    }
    Ok(loaded)
}
