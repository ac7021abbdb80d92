//! Platforms (`linux/amd64`, `linux/arm64/v8`) and which one this machine is.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// An OS/architecture pair as OCI names them, with an optional variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine this code runs on, in OCI's names (`amd64`, not `x86_64`).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform { os: "linux".into(), architecture: architecture.into(), variant: variant.map(String::from) }
    }

    /// The platform without a variant that is its architecture's default (arm64's `v8`), as
    /// containerd normalizes it: what `BUILDPLATFORM` and `TARGETPLATFORM` say.
    pub fn normalized(&self) -> Platform {
        let default_variant = self.architecture == "arm64" && self.variant.as_deref() == Some("v8");
        Platform { variant: if default_variant { None } else { self.variant.clone() }, ..self.clone() }
    }

    /// Whether an index entry's platform is this one. A missing variant on either side matches
    /// (arm64 images rarely say `v8`).
    pub fn matches(&self, other: &oci_spec::image::Platform) -> bool {
        let variant_ok = match (&self.variant, other.variant()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.os == other.os().to_string() && self.architecture == other.architecture().to_string() && variant_ok
    }

    /// The platform an index entry describes.
    pub fn from_spec(p: &oci_spec::image::Platform) -> Platform {
        Platform { os: p.os().to_string(), architecture: p.architecture().to_string(), variant: p.variant().clone() }
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Platform, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(Error::InvalidPlatform(s.into()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_platform_uses_oci_names() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert!(!host.architecture.contains("x86_64"));
        assert_eq!(host.normalized().os, "linux");
        let arm: Platform = "linux/arm64/v8".parse().expect("parse");
        assert_eq!(arm.normalized().to_string(), "linux/arm64");
        let v7: Platform = "linux/arm/v7".parse().expect("parse");
        assert_eq!(v7.normalized().to_string(), "linux/arm/v7");
    }

    #[test]
    fn platform_strings_parse_or_say_why_not() {
        let p: Platform = "linux/arm64/v8".parse().expect("parse");
        assert_eq!(p.to_string(), "linux/arm64/v8");
        let err = "amd64".parse::<Platform>().expect_err("must fail").to_string();
        assert!(err.contains("os/arch"), "{err}");
    }
}
