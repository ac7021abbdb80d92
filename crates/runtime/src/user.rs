//! Resolving `--user` / `USER` values through the image's /etc/passwd and /etc/group,
//! the way Docker does: names must exist, bare numeric ids need not.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::rootpath;

/// The ids a process runs with, and the home directory for `HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups listing the user as a member (only when no group was given).
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves "name", "uid", "uid:gid", "name:group" (or empty, meaning root) against the
/// files inside `rootfs`. Paths are resolved inside `rootfs`: a symlinked /etc/passwd
/// can never make this read a host file.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser> {
    resolve_user_in_layers(&[rootfs.to_path_buf()], user)
}

/// Like [`resolve_user`], for a root made of layers (top first): each file is read
/// from the topmost layer that has it.
pub fn resolve_user_in_layers(layers: &[PathBuf], user: &str) -> Result<ResolvedUser> {
    let passwd = read_from_layers(layers, "etc/passwd")?;
    let group = read_from_layers(layers, "etc/group")?;
    let rootfs = layers.first().cloned().unwrap_or_default();
    resolve(&rootfs, passwd.as_deref().unwrap_or(""), group.as_deref().unwrap_or(""), user)
}

fn read_from_layers(layers: &[PathBuf], rel: &str) -> Result<Option<String>> {
    for layer in layers {
        match rootpath::open_in_root(layer, rel) {
            Ok(mut f) => {
                let mut s = String::new();
                // Cap what we read: a user database is small; a huge file is not one.
                (&mut f).take(16 << 20).read_to_string(&mut s).map_err(|e| Error::io("reading", layer.join(rel), e))?;
                return Ok(Some(s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // An overlay whiteout (a 0/0 device): deleted in this layer, hidden below.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
            Err(e) => return Err(Error::io("opening", layer.join(rel), e)),
        }
    }
    Ok(None)
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f.get(5).copied().unwrap_or("/") })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        let members = f.get(3).map(|m| m.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        Some(GroupEntry { name: f[0], gid: f[2].parse().ok()?, members })
    })
}

fn resolve(rootfs: &Path, passwd: &str, group: &str, spec: &str) -> Result<ResolvedUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric = user_part.parse::<u32>().ok();
    let entry = passwd_entries(passwd).find(|e| match numeric {
        Some(uid) => e.uid == uid,
        None => e.name == user_part,
    });
    let (uid, mut gid, name, home) = match (entry, numeric) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.to_string()), e.home.to_string()),
        (None, Some(uid)) => (uid, 0, None, "/".to_string()),
        (None, None) => {
            return Err(Error::UnknownUser { kind: "user", name: user_part.into(), file: "/etc/passwd", rootfs: rootfs.into() });
        }
    };
    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match group_entries(group).find(|e| e.name == g || e.gid.to_string() == g) {
                Some(e) => e.gid,
                None => g.parse().map_err(|_| Error::UnknownUser { kind: "group", name: g.into(), file: "/etc/group", rootfs: rootfs.into() })?,
            };
        }
        _ => {
            if let Some(name) = &name {
                for e in group_entries(group) {
                    if e.members.contains(&name.as_str()) && !additional_gids.contains(&e.gid) {
                        additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    let home = if home.is_empty() { "/".into() } else { home };
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n";

    fn r(s: &str) -> Result<ResolvedUser> {
        resolve(Path::new("/r"), PASSWD, GROUP, s)
    }

    #[test]
    fn empty_user_is_root_with_root_home() {
        let u = r("").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn name_resolves_uid_gid_and_member_groups() {
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()), (1000, 1000, vec![10], "/home/app"));
    }

    #[test]
    fn explicit_group_by_name_replaces_primary_and_drops_supplementary() {
        let u = r("app:nogroup").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 65534, 0));
    }

    #[test]
    fn unknown_numeric_uid_gets_gid_zero() {
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert_eq!(r("4242:77").unwrap().gid, 77);
    }

    #[test]
    fn unknown_name_or_group_is_an_error_naming_it() {
        let err = r("ghost").unwrap_err().to_string();
        assert!(err.contains("ghost") && err.contains("/etc/passwd"), "{err}");
        let err = r("app:ghosts").unwrap_err().to_string();
        assert!(err.contains("ghosts") && err.contains("/etc/group"), "{err}");
    }

    #[test]
    fn passwd_symlink_to_host_file_is_resolved_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        // Points at the host's /etc/hostname-like file; inside the root it does not exist.
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), "evil:x:7:7::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), etc.join("passwd")).unwrap();
        let err = resolve_user(dir.path(), "evil").unwrap_err().to_string();
        assert!(err.contains("unable to find user evil"), "{err}");
    }
}
