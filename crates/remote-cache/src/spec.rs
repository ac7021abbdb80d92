//! `--cache-from` and `--cache-to` values, spelled as buildx spells them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci::Reference;

use crate::error::{Error, Result};

/// One `--cache-from` source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheFrom {
    /// A cache artifact in a registry, or an image pushed with an inline cache
    /// (`type=registry,ref=R`, or just `R`).
    Registry { reference: Reference },
    /// An OCI layout directory written by `--cache-to type=local` (`type=local,src=DIR[,tag=T]`).
    Local { src: PathBuf, tag: String },
}

/// Which steps an export carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The steps of the final image.
    #[default]
    Min,
    /// Every step of every stage the build ran or found cached.
    Max,
}

/// How exported layer blobs are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

/// Where a `--cache-to` export goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheTarget {
    Registry {
        reference: Reference,
    },
    Local {
        dest: PathBuf,
        tag: String,
    },
    /// Into the manifest of the image the build pushes.
    Inline,
}

/// One `--cache-to` export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheTo {
    pub target: CacheTarget,
    pub mode: Mode,
    pub compression: Compression,
    /// A failed export is a warning instead of failing the build.
    pub ignore_error: bool,
}

/// The tag a local cache directory's `index.json` names the cache by, unless `tag=` says otherwise.
pub const DEFAULT_LOCAL_TAG: &str = "latest";

/// Keys buildx users pass that this format always satisfies (OCI media types, an image manifest).
const ACCEPTED_BUILDX_KEYS: &[&str] = &["oci-mediatypes", "image-manifest"];

fn split(flag: &'static str, value: &str) -> Result<BTreeMap<String, String>> {
    let bad = |reason: String| Error::Flag { flag, value: value.to_string(), reason };
    let mut kv = BTreeMap::new();
    for part in value.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
        let k = k.trim().to_string();
        if kv.insert(k.clone(), v.trim().to_string()).is_some() {
            return Err(bad(format!("key {k:?} is given twice")));
        }
    }
    Ok(kv)
}

fn check_keys(flag: &'static str, value: &str, kv: &BTreeMap<String, String>, known: &[&str]) -> Result<()> {
    for k in kv.keys() {
        if !known.contains(&k.as_str()) && !ACCEPTED_BUILDX_KEYS.contains(&k.as_str()) {
            return Err(Error::Flag {
                flag,
                value: value.to_string(),
                reason: format!("unknown key {k:?} (known keys: {})", known.join(", ")),
            });
        }
    }
    Ok(())
}

fn reference(flag: &'static str, value: &str, r: &str) -> Result<Reference> {
    Reference::parse(r).map_err(|e| Error::Flag { flag, value: value.to_string(), reason: format!("ref: {e}") })
}

fn required<'a>(flag: &'static str, value: &str, kv: &'a BTreeMap<String, String>, key: &str, kind: &str) -> Result<&'a str> {
    match kv.get(key).map(String::as_str) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::Flag { flag, value: value.to_string(), reason: format!("type={kind} needs {key}=…") }),
    }
}

impl CacheFrom {
    /// Parses a `--cache-from` value.
    pub fn parse(value: &str) -> Result<CacheFrom> {
        const FLAG: &str = "--cache-from";
        if !value.contains('=') {
            return Ok(CacheFrom::Registry { reference: reference(FLAG, value, value)? });
        }
        let kv = split(FLAG, value)?;
        match kv.get("type").map(String::as_str).unwrap_or("registry") {
            "registry" => {
                check_keys(FLAG, value, &kv, &["type", "ref"])?;
                Ok(CacheFrom::Registry { reference: reference(FLAG, value, required(FLAG, value, &kv, "ref", "registry")?)? })
            }
            "local" => {
                check_keys(FLAG, value, &kv, &["type", "src", "tag"])?;
                let src = PathBuf::from(required(FLAG, value, &kv, "src", "local")?);
                Ok(CacheFrom::Local { src, tag: kv.get("tag").cloned().unwrap_or_else(|| DEFAULT_LOCAL_TAG.into()) })
            }
            other => Err(Error::Flag {
                flag: FLAG,
                value: value.into(),
                reason: format!("unknown type {other:?} (known: registry, local; an image with an inline cache is type=registry)"),
            }),
        }
    }

    /// How warnings name this source: the ref, or the directory.
    pub fn name(&self) -> String {
        match self {
            CacheFrom::Registry { reference } => reference.to_string(),
            CacheFrom::Local { src, .. } => src.display().to_string(),
        }
    }
}

impl CacheTo {
    /// Parses a `--cache-to` value.
    pub fn parse(value: &str) -> Result<CacheTo> {
        const FLAG: &str = "--cache-to";
        let bad = |reason: String| Error::Flag { flag: FLAG, value: value.to_string(), reason };
        if !value.contains('=') {
            let target = CacheTarget::Registry { reference: reference(FLAG, value, value)? };
            return Ok(CacheTo { target, mode: Mode::Min, compression: Compression::Gzip, ignore_error: false });
        }
        let kv = split(FLAG, value)?;
        let common = ["type", "mode", "compression", "ignore-error"];
        let kind = kv.get("type").map(String::as_str).unwrap_or("registry");
        let target = match kind {
            "registry" => {
                check_keys(FLAG, value, &kv, &[&common[..], &["ref"]].concat())?;
                CacheTarget::Registry { reference: reference(FLAG, value, required(FLAG, value, &kv, "ref", "registry")?)? }
            }
            "local" => {
                check_keys(FLAG, value, &kv, &[&common[..], &["dest", "tag"]].concat())?;
                let dest = PathBuf::from(required(FLAG, value, &kv, "dest", "local")?);
                CacheTarget::Local { dest, tag: kv.get("tag").cloned().unwrap_or_else(|| DEFAULT_LOCAL_TAG.into()) }
            }
            "inline" => {
                check_keys(FLAG, value, &kv, &common)?;
                CacheTarget::Inline
            }
            other => {
                return Err(bad(format!("unknown type {other:?} (known: registry, local, inline)")));
            }
        };
        let mode = match kv.get("mode").map(String::as_str) {
            None | Some("min") => Mode::Min,
            Some("max") if kind == "inline" => {
                return Err(bad("mode=max is not supported with type=inline (it carries the final image's steps only)".into()));
            }
            Some("max") => Mode::Max,
            Some(other) => return Err(bad(format!("mode {other:?} is not min or max"))),
        };
        let compression = match kv.get("compression").map(String::as_str) {
            None | Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some("uncompressed") => Compression::Uncompressed,
            Some(other) => {
                return Err(bad(format!("compression {other:?} is not gzip, zstd or uncompressed")));
            }
        };
        let ignore_error = match kv.get("ignore-error").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(bad(format!("ignore-error {other:?} is not true or false"))),
        };
        Ok(CacheTo { target, mode, compression, ignore_error })
    }

    /// How messages name this export: the ref, the directory, or "inline".
    pub fn name(&self) -> String {
        match &self.target {
            CacheTarget::Registry { reference } => reference.to_string(),
            CacheTarget::Local { dest, .. } => dest.display().to_string(),
            CacheTarget::Inline => "inline".into(),
        }
    }
}

/// The canonical `--cache-from` spelling, which [`CacheFrom::parse`] reads back (the wire form
/// of a remote build's request).
impl std::fmt::Display for CacheFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheFrom::Registry { reference } => write!(f, "type=registry,ref={reference}"),
            CacheFrom::Local { src, tag } => write!(f, "type=local,src={},tag={tag}", src.display()),
        }
    }
}

/// The canonical `--cache-to` spelling, which [`CacheTo::parse`] reads back.
impl std::fmt::Display for CacheTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            CacheTarget::Registry { reference } => write!(f, "type=registry,ref={reference}")?,
            CacheTarget::Local { dest, tag } => write!(f, "type=local,dest={},tag={tag}", dest.display())?,
            CacheTarget::Inline => write!(f, "type=inline")?,
        }
        let mode = match self.mode {
            Mode::Min => "min",
            Mode::Max => "max",
        };
        write!(f, ",mode={mode},compression={},ignore-error={}", self.compression.as_str(), self.ignore_error)
    }
}

impl Compression {
    /// The name `compression=` takes (and the store's layer blob cache is keyed by).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "uncompressed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_from_forms() {
        let r = CacheFrom::parse("localhost:5000/app:cache").expect("shorthand");
        assert_eq!(r, CacheFrom::Registry { reference: Reference::parse("localhost:5000/app:cache").expect("ref") });
        assert_eq!(CacheFrom::parse("type=registry,ref=localhost:5000/app:cache").expect("registry"), r);
        assert_eq!(
            CacheFrom::parse("type=local,src=/tmp/c").expect("local"),
            CacheFrom::Local { src: "/tmp/c".into(), tag: "latest".into() }
        );
    }

    #[test]
    fn cache_to_forms() {
        let c = CacheTo::parse("type=registry,ref=localhost:5000/app:cache,mode=max,compression=zstd,ignore-error=true").expect("parse");
        assert_eq!(c.mode, Mode::Max);
        assert_eq!(c.compression, Compression::Zstd);
        assert!(c.ignore_error);
        let c = CacheTo::parse("type=local,dest=/tmp/c").expect("local");
        assert_eq!(c.target, CacheTarget::Local { dest: "/tmp/c".into(), tag: "latest".into() });
        assert_eq!(c.mode, Mode::Min);
        assert_eq!(CacheTo::parse("type=inline").expect("inline").target, CacheTarget::Inline);
        assert!(CacheTo::parse("type=registry,ref=r/x,oci-mediatypes=true,image-manifest=true").is_ok());
    }

    #[test]
    fn display_reads_back() {
        for v in ["r/x:c", "type=local,src=/a b/c,tag=t"] {
            let c = CacheFrom::parse(v).expect("parse");
            assert_eq!(CacheFrom::parse(&c.to_string()).expect("again"), c);
        }
        for v in ["r/x:c", "type=registry,ref=r/x,mode=max,compression=zstd,ignore-error=true", "type=local,dest=/d", "type=inline"] {
            let c = CacheTo::parse(v).expect("parse");
            assert_eq!(CacheTo::parse(&c.to_string()).expect("again"), c);
        }
    }

    #[test]
    fn bad_values_name_the_flag_and_the_key() {
        let e = CacheTo::parse("type=registry,ref=r/x,mdoe=max").expect_err("key").to_string();
        assert_eq!(
            e,
            "invalid --cache-to \"type=registry,ref=r/x,mdoe=max\": unknown key \"mdoe\" (known keys: type, mode, compression, ignore-error, ref)"
        );
        let e = CacheTo::parse("type=registry,mode=max").expect_err("ref").to_string();
        assert_eq!(e, "invalid --cache-to \"type=registry,mode=max\": type=registry needs ref=…");
        let e = CacheTo::parse("type=local").expect_err("dest").to_string();
        assert_eq!(e, "invalid --cache-to \"type=local\": type=local needs dest=…");
        let e = CacheTo::parse("type=registry,ref=r/x,mode=all").expect_err("mode").to_string();
        assert_eq!(e, "invalid --cache-to \"type=registry,ref=r/x,mode=all\": mode \"all\" is not min or max");
        let e = CacheFrom::parse("type=local,dest=/x").expect_err("from").to_string();
        assert_eq!(e, "invalid --cache-from \"type=local,dest=/x\": unknown key \"dest\" (known keys: type, src, tag)");
        let e = CacheFrom::parse("type=s3,bucket=b").expect_err("type").to_string();
        assert!(e.contains("unknown type \"s3\""), "{e}");
        let e = CacheTo::parse("type=inline,mode=max").expect_err("inline max").to_string();
        assert!(e.contains("mode=max is not supported with type=inline"), "{e}");
        let e = CacheFrom::parse("Bad Ref").expect_err("ref").to_string();
        assert!(e.starts_with("invalid --cache-from \"Bad Ref\": ref: invalid image reference"), "{e}");
    }
}
