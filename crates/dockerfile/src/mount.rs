//! `RUN --mount=…`: the comma-separated options of bind, cache, tmpfs, secret
//! and ssh mounts, checked as BuildKit checks them.

use std::borrow::Cow;

use serde::Serialize;

use crate::error::Span;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount` of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// A stage or image to mount from (bind, cache).
    pub from: Option<String>,
    /// Path in the source (`source`, `src`).
    pub source: Option<String>,
    /// Where it appears in the container (`target`, `dst`, `destination`).
    pub target: Option<String>,
    pub readonly: bool,
    /// tmpfs size in bytes.
    pub size: Option<i64>,
    /// cache or secret id.
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    /// secret/ssh: fail when not provided.
    pub required: bool,
    /// secret: expose as this environment variable.
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The flag value as written.
    pub raw: String,
    pub span: Span,
}

/// Parses a `--mount` value. Values are passed through `expand` first; with
/// `defer_variables`, a value containing `$` is left unchecked (it is checked
/// once the variables are known, see `Instruction::expand`).
pub(crate) fn parse_mount(
    raw: &str,
    span: Span,
    expand: &dyn Fn(&str) -> Result<String, String>,
    defer_variables: bool,
) -> Result<Mount, String> {
    let fields = csv_fields(raw).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        size: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
        raw: raw.to_string(),
        span,
    };
    let mut ro_auto = true;
    for field in &fields {
        let field: &str = field;
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (ascii_lower(k), Some(v)),
            None => (ascii_lower(field), None),
        };
        let Some(value) = value else {
            match &*key {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
                "required" => return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind.as_str())),
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        if key == "from" && defer_variables
            && let Some(i) = value.find('$')
                && i != value.len() - 1 {
                    return Err(format!("'{key}' doesn't support variable expansion, define alias stage instead"));
                }
        if defer_variables && value.contains('$') {
            continue;
        }
        let value = expand(value)?;
        let bad = || format!("invalid value for {key}: {value}");
        match &*key {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(format!("unsupported mount type {value:?} (bind, cache, tmpfs, secret, ssh)")),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_go_bool(&value).ok_or_else(bad)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_go_bool(&value).ok_or_else(bad)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind.as_str()));
                }
                m.required = parse_go_bool(&value).ok_or_else(bad)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind.as_str()));
                }
                m.size = Some(ram_in_bytes(&value).ok_or_else(bad)?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(format!("unsupported sharing value {value:?} (shared, private, locked)")),
                })
            }
            "mode" => m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| format!("invalid value {value} for mode"))?),
            "uid" => m.uid = Some(value.parse().map_err(|_| format!("invalid value {value} for uid"))?),
            "gid" => m.gid = Some(value.parse().map_err(|_| format!("invalid value {value} for gid"))?),
            "env" => m.env = Some(value),
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    let file_info_allowed = matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache);
    if !file_info_allowed {
        for (name, set) in [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())] {
            if set {
                return Err(format!("{name} not allowed for \"{}\" type mounts", m.kind.as_str()));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && !defer_variables_pending(raw, defer_variables) {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {} mount", m.kind.as_str()));
    }
    Ok(m)
}

fn defer_variables_pending(raw: &str, defer: bool) -> bool {
    defer && raw.contains('$')
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// go-units `RAMInBytes`: `64m`, `1g`, `512kb`, `1.5GiB` (binary multiples).
fn ram_in_bytes(s: &str) -> Option<i64> {
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let size: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut u = unit.as_str();
    let mult: f64 = match u.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            u = &u[1..];
            1024f64.powi(match c {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                _ => 5,
            })
        }
        _ => 1.0,
    };
    let u = u.strip_prefix('i').unwrap_or(u);
    let u = u.strip_prefix('b').unwrap_or(u);
    if !u.is_empty() {
        return None;
    }
    Some((size * mult) as i64)
}

/// `s` in ASCII lower case, borrowed when it already is.
fn ascii_lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) }
}

/// One CSV record (Go's encoding/csv rules: quoted fields, `""` inside
/// quotes). Fields without quotes are borrowed.
fn csv_fields(s: &str) -> Result<Vec<Cow<'_, str>>, String> {
    if !s.contains('"') {
        return Ok(s.split(',').map(Cow::Borrowed).collect());
    }
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') => {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(Cow::Owned(field));
                    return Ok(fields);
                }
                Some(',') => fields.push(Cow::Owned(field)),
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(Cow::Owned(field));
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(Cow::Owned(field));
                        break;
                    }
                    Some('"') => return Err("bare \" in non-quoted-field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mount, String> {
        parse_mount(s, Span::default(), &|v| Ok(v.to_string()), false)
    }

    #[test]
    fn every_mount_type_and_option() {
        let m = parse("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1,gid=2,from=base,source=/c").unwrap();
        assert_eq!((m.kind, m.id.as_deref(), m.sharing, m.mode, m.uid, m.gid), (MountType::Cache, Some("pip"), Some(CacheSharing::Locked), Some(0o700), Some(1), Some(2)));
        assert!(!m.readonly, "cache mounts are writable by default");
        let m = parse("type=bind,src=.,dst=/src,rw").unwrap();
        assert_eq!((m.source.as_deref(), m.target.as_deref(), m.readonly), (Some("."), Some("/src"), false));
        assert!(parse("type=bind,target=/x").unwrap().readonly, "bind mounts are read-only by default");
        assert_eq!(parse("type=tmpfs,target=/t,size=64m").unwrap().size, Some(64 << 20));
        let m = parse("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert_eq!((m.env.as_deref(), m.required), (Some("TOKEN"), true));
        let m = parse("type=ssh,id=default,required=true,mode=0600").unwrap();
        assert_eq!((m.kind, m.required, m.mode), (MountType::Ssh, true, Some(0o600)));
        assert!(parse("\"type=bind,src=a,b\",target=/x").is_err());
    }

    #[test]
    fn mount_errors_say_what_is_wrong() {
        assert_eq!(parse("type=nfs").unwrap_err(), "unsupported mount type \"nfs\" (bind, cache, tmpfs, secret, ssh)");
        assert_eq!(parse("type=bind,size=1m").unwrap_err(), "unexpected key 'size' for mount type 'bind'");
        assert_eq!(parse("type=bind,mode=0700").unwrap_err(), "mode not allowed for \"bind\" type mounts");
        assert_eq!(parse("type=secret").unwrap_err(), "invalid secret mount. one of source, target required");
        assert_eq!(parse("type=cache,target=/x,sharing=sometimes").unwrap_err(), "unsupported sharing value \"sometimes\" (shared, private, locked)");
        assert_eq!(parse("type=bind,bogus=1").unwrap_err(), "unexpected key 'bogus' in 'bogus=1'");
        assert_eq!(parse("type=bind,noval").unwrap_err(), "invalid field 'noval' must be a key=value pair");
        assert_eq!(parse("type=cache,uid=x").unwrap_err(), "invalid value x for uid");
    }
}
