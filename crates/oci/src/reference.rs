//! Image references with Docker's normalization: `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

/// The registry a name without a host part refers to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;

/// A parsed, normalized image reference: `registry/repository[:tag][@digest]`.
///
/// A reference with neither tag nor digest gets the tag `latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `input` the way `docker pull` does.
    pub fn parse(input: &str) -> Result<Reference, Error> {
        let bad = |reason: String| Error::InvalidReference { input: input.to_string(), reason };
        if input.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if input.chars().any(char::is_whitespace) {
            return Err(bad("it contains whitespace".into()));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| bad(format!("digest part {d:?}: {e}")))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| bad(format!("tag {tag:?} {r}")))?;
        }
        if name.is_empty() {
            return Err(bad("the repository name is empty".into()));
        }
        let (registry, path) = split_registry(name);
        if let Some(registry) = registry {
            check_registry(registry).map_err(|r| bad(format!("registry {registry:?} {r}")))?;
        }
        if path.is_empty() {
            return Err(bad("the repository name is empty".into()));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(format!("repository {path:?} must be lowercase")));
        }
        for component in path.split('/') {
            check_path_component(component).map_err(|r| bad(format!("repository path component {component:?} {r}")))?;
        }
        let registry = match registry {
            None | Some("index.docker.io") | Some("registry-1.docker.io") => DEFAULT_REGISTRY.to_string(),
            Some(r) => r.to_string(),
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(format!("the name is longer than {MAX_NAME_LEN} characters")));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The registry host (and port), `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry, `library/busybox` for `busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows: `busybox` for `docker.io/library/busybox`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        }
    }

    /// The short form with tag/digest: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The host to talk HTTP to: Docker Hub's API lives at `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY { "registry-1.docker.io" } else { &self.registry }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        check_tag(tag)
            .map_err(|r| Error::InvalidReference { input: format!("{}:{tag}", self.name()), reason: format!("tag {tag:?} {r}") })?;
        Ok(Reference { registry: self.registry.clone(), repository: self.repository.clone(), tag: Some(tag.into()), digest: None })
    }

    /// The same repository pinned to `digest` (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { registry: self.registry.clone(), repository: self.repository.clone(), tag: None, digest: Some(digest) }
    }

    /// What a registry's manifest endpoint takes: the digest if there is one, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// Whether the registry is on this machine (plain HTTP is allowed there).
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost" || host == "::1" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits off the registry part the way Docker does: the first component is a registry if it
/// contains '.' or ':', is `localhost`, or has uppercase letters.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-';
    let first_ok = tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if tag.is_empty() || tag.len() > 128 || !first_ok || !tag.chars().all(ok_char) {
        return Err("is invalid: a tag is 1 to 128 letters, digits, '_', '.' or '-', and cannot start with '.' or '-'".into());
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), String> {
    const WHY: &str = "is invalid: use lowercase letters and digits, separated by '.', '_', '__' or '-'";
    if c.is_empty() {
        return Err("is empty".into());
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(WHY.into());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__' or a run of '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return Err(WHY.into()),
        }
        if i >= b.len() || !alnum(b[i]) || i == start {
            return Err(WHY.into());
        }
    }
    Ok(())
}

fn check_registry(r: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return Err("has an unclosed '['".into()) };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("is not a valid IPv6 address".into());
        }
        (None, after.strip_prefix(':'))
    } else {
        match r.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(host) = host {
        let label_ok =
            |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') && !l.starts_with('-') && !l.ends_with('-');
        if host.is_empty() || !host.split('.').all(label_ok) {
            return Err("is not a valid host name".into());
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.parse::<u16>().is_err()) {
            return Err(format!("has an invalid port {port:?}"));
        }
    Ok(())
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    #[test]
    fn short_names_normalize_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("library/busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
    }

    #[test]
    fn registry_with_port_is_not_a_tag() {
        let r = Reference::parse("localhost:5000/team/app").expect("parse");
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(norm("127.0.0.1:5000/app:v1.2-rc_3"), "127.0.0.1:5000/app:v1.2-rc_3");
        assert_eq!(norm("[::1]:5000/app:1"), "[::1]:5000/app:1");
        assert!(r.is_loopback_registry());
        assert!(!Reference::parse("quay.io/a/b").expect("parse").is_loopback_registry());
    }

    #[test]
    fn digests_and_tags_combine() {
        let r = Reference::parse(&format!("busybox@{D}")).expect("parse");
        assert_eq!(r.tag(), None);
        assert_eq!(r.tag_or_digest(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("host.example:443/a/b:1@{D}")).expect("parse");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest().map(|d| d.to_string()).as_deref(), Some(D));
        assert_eq!(r.familiar(), format!("host.example:443/a/b:1@{D}"));
        assert_eq!(Reference::parse("busybox").expect("parse").familiar(), "busybox:latest");
    }

    #[test]
    fn invalid_references_name_the_bad_part() {
        let cases = [
            ("busybox:bad!tag", "tag \"bad!tag\""),
            ("busybox:-x", "tag \"-x\""),
            ("BusyBox", "must be lowercase"),
            ("local:99999/app", "invalid port \"99999\""),
            ("a..b/c", "registry \"a..b\""),
            ("app/-x", "path component \"-x\""),
            ("app@sha256:1234", "digest part"),
            ("", "empty"),
            ("a b", "whitespace"),
            ("localhost:5000/", "repository name is empty"),
        ];
        for (input, want) in cases {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err:?} should mention {want:?}");
        }
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a1/b2/c3"] {
            Reference::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["a___b", "a._b", "a.", "_a"] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
