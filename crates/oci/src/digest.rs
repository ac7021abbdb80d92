//! Content digests (`sha256:<hex>`), the names of everything in the store.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A sha256 content digest, `sha256:` followed by 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a running sha256 hasher ended with.
    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest { hex: hex::encode(hasher.finalize()) }
    }

    /// Builds a digest from 64 hex digits (no `sha256:` prefix).
    pub fn from_hex(hex: &str) -> Result<Digest, Error> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Error::InvalidDigest { input: hex.to_string(), reason: "a sha256 digest is 64 lowercase hex digits".into() });
        }
        Ok(Digest { hex: hex.to_string() })
    }

    /// Always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows an image ID.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The same digest as oci-spec's type, for building descriptors.
    pub fn to_spec(&self) -> oci_spec::image::Digest {
        // A valid sha256 digest always parses.
        oci_spec::image::Digest::from_str(&self.to_string()).unwrap_or_else(|_| unreachable!("valid sha256 digest"))
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest, Error> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(Error::InvalidDigest { input: s.into(), reason: "expected ALGORITHM:HEX, for example sha256:…".into() });
        };
        if alg != "sha256" {
            return Err(Error::InvalidDigest { input: s.into(), reason: format!("unsupported algorithm {alg:?} (only sha256)") });
        }
        Digest::from_hex(hex)
            .map_err(|_| Error::InvalidDigest { input: s.into(), reason: "a sha256 digest is 64 lowercase hex digits".into() })
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = Error;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, Error> {
        d.to_string().parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(Digest::sha256_of(b"").to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn digest_parses_and_round_trips() {
        let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = s.parse().expect("parse");
        assert_eq!(d.to_string(), s);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::try_from(&d.to_spec()).expect("spec"), d);
    }

    #[test]
    fn bad_digests_say_what_is_wrong() {
        let e = "md5:abc".parse::<Digest>().expect_err("must fail").to_string();
        assert!(e.contains("unsupported algorithm \"md5\""), "{e}");
        let e = "sha256:XYZ".parse::<Digest>().expect_err("must fail").to_string();
        assert!(e.contains("64 lowercase hex"), "{e}");
        let e = "nocolon".parse::<Digest>().expect_err("must fail").to_string();
        assert!(e.contains("ALGORITHM:HEX"), "{e}");
    }
}
