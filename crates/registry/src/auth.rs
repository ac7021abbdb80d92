//! Registry authentication: parsing `WWW-Authenticate` challenges, fetching bearer tokens, and
//! caching what worked per registry and scope.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        _ => None,
    }
}

/// `key="value", key2=value2` (values may contain commas inside quotes).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string()
        };
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// What to send as `Authorization` to one registry for one scope.
#[derive(Clone, Debug)]
pub enum Authorization {
    Basic(String),
    Bearer { token: String, expires: Instant },
}

impl Authorization {
    pub fn header(&self) -> String {
        match self {
            Authorization::Basic(b) => format!("Basic {b}"),
            Authorization::Bearer { token, .. } => format!("Bearer {token}"),
        }
    }

    fn fresh(&self) -> bool {
        match self {
            Authorization::Basic(_) => true,
            Authorization::Bearer { expires, .. } => Instant::now() + Duration::from_secs(5) < *expires,
        }
    }
}

/// Authorizations that worked, by (registry, scope). A registry that uses basic auth gets it
/// for every scope.
#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<(String, String), Authorization>>,
}

impl AuthCache {
    pub fn get(&self, registry: &str, scope: &str) -> Option<Authorization> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&(registry.to_string(), scope.to_string()))
            .or_else(|| entries.get(&(registry.to_string(), String::new())))
            .filter(|a| a.fresh())
            .cloned()
    }

    pub fn put(&self, registry: &str, scope: &str, auth: Authorization) {
        let scope = if matches!(auth, Authorization::Basic(_)) { String::new() } else { scope.to_string() };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert((registry.to_string(), scope), auth);
        }
    }
}

/// A token endpoint's answer.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub expires_in: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_scope_commas_parses() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge(r#"Basic realm="test-realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }
}
