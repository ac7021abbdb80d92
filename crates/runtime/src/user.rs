//! The user and group databases of a root (its /etc/passwd and /etc/group, read inside the
//! root), and the two rules that use them: Docker's `--user` / `USER` for a process (names
//! must exist, bare numeric ids need not) and BuildKit's `--chown` for files the build writes.

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

/// A user or group name that is not in its database file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to find {kind} {name}: no matching entries in {file}")]
pub struct UnknownName {
    /// `user` or `group`.
    pub kind: &'static str,
    pub name: String,
    /// `/etc/passwd` or `/etc/group`.
    pub file: &'static str,
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
    let db = UserDb::read_layers(layers)?;
    let rootfs = layers.first().cloned().unwrap_or_default();
    db.resolve(user).map_err(|source| Error::UnknownUser { source, rootfs })
}

/// The /etc/passwd and /etc/group of a root (empty where the root has none).
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    passwd: String,
    group: String,
}

impl UserDb {
    /// Reads the databases inside `root` (symlinks resolve inside it).
    pub fn read(root: &Path) -> Result<UserDb> {
        UserDb::read_layers(&[root.to_path_buf()])
    }

    /// Reads the databases of a root made of layers (top first), each file from the topmost
    /// layer that has it.
    pub fn read_layers(layers: &[PathBuf]) -> Result<UserDb> {
        Ok(UserDb {
            passwd: read_from_layers(layers, "etc/passwd")?.unwrap_or_default(),
            group: read_from_layers(layers, "etc/group")?.unwrap_or_default(),
        })
    }

    /// The databases as text (for tests and callers that already hold them).
    pub fn from_text(passwd: &str, group: &str) -> UserDb {
        UserDb { passwd: passwd.into(), group: group.into() }
    }

    /// `(uid, primary gid)` of the user called `name`.
    pub fn user(&self, name: &str) -> std::result::Result<(u32, u32), UnknownName> {
        passwd_entries(&self.passwd)
            .find(|e| e.name == name)
            .map(|e| (e.uid, e.gid))
            .ok_or_else(|| UnknownName { kind: "user", name: name.into(), file: "/etc/passwd" })
    }

    /// The gid of the group called `name`.
    pub fn group(&self, name: &str) -> std::result::Result<u32, UnknownName> {
        group_entries(&self.group)
            .find(|e| e.name == name)
            .map(|e| e.gid)
            .ok_or_else(|| UnknownName { kind: "group", name: name.into(), file: "/etc/group" })
    }

    /// BuildKit's `--chown=USER[:GROUP]`: a numeric user is its own uid and gid, a named one
    /// takes its primary group from /etc/passwd; a group (number or name) replaces the gid.
    pub fn chown_ids(&self, user: &str, group: Option<&str>) -> std::result::Result<(u32, u32), UnknownName> {
        let (uid, primary) = match user.parse::<u32>() {
            Ok(n) => (n, n),
            Err(_) => self.user(user)?,
        };
        let gid = match group {
            None => primary,
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => self.group(g)?,
            },
        };
        Ok((uid, gid))
    }

    /// Docker's `--user` for a process: "name", "uid", "uid:gid", "name:group" (empty: root).
    /// A known user brings its primary group, home and the groups listing it as a member; an
    /// unknown numeric uid runs with gid 0 and home `/`.
    pub fn resolve(&self, spec: &str) -> std::result::Result<ResolvedUser, UnknownName> {
        let (user_part, group_part) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let user_part = if user_part.is_empty() { "0" } else { user_part };
        let numeric = user_part.parse::<u32>().ok();
        let entry = passwd_entries(&self.passwd).find(|e| match numeric {
            Some(uid) => e.uid == uid,
            None => e.name == user_part,
        });
        let (uid, mut gid, name, home) = match (entry, numeric) {
            (Some(e), _) => (e.uid, e.gid, Some(e.name.to_string()), e.home.to_string()),
            (None, Some(uid)) => (uid, 0, None, "/".to_string()),
            (None, None) => return Err(UnknownName { kind: "user", name: user_part.into(), file: "/etc/passwd" }),
        };
        let mut additional_gids = Vec::new();
        match group_part {
            Some(g) if !g.is_empty() => {
                gid = match group_entries(&self.group).find(|e| e.name == g || e.gid.to_string() == g) {
                    Some(e) => e.gid,
                    None => g.parse().map_err(|_| UnknownName { kind: "group", name: g.into(), file: "/etc/group" })?,
                };
            }
            _ => {
                if let Some(name) = &name {
                    for e in group_entries(&self.group) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n";

    fn r(s: &str) -> std::result::Result<ResolvedUser, UnknownName> {
        UserDb::from_text(PASSWD, GROUP).resolve(s)
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

    #[test]
    fn chown_takes_numeric_ids_as_they_are_and_names_from_the_databases() {
        let db = UserDb::from_text(PASSWD, GROUP);
        assert_eq!(db.chown_ids("4242", None), Ok((4242, 4242)), "a numeric user is its own group, as in BuildKit");
        assert_eq!(db.chown_ids("app", None), Ok((1000, 1000)));
        assert_eq!(db.chown_ids("app", Some("wheel")), Ok((1000, 10)));
        assert_eq!(db.chown_ids("0", Some("65534")), Ok((0, 65534)));
        assert_eq!(db.chown_ids("ghost", None).unwrap_err().to_string(), "unable to find user ghost: no matching entries in /etc/passwd");
        assert_eq!(db.chown_ids("app", Some("ghosts")).unwrap_err().to_string(), "unable to find group ghosts: no matching entries in /etc/group");
    }

    #[test]
    fn comment_lines_and_broken_entries_are_skipped() {
        let db = UserDb::from_text("#app:x:1:1::/:/bin/sh\nbroken:x:notanumber:1\napp:x:1000:1000::/home/app:/bin/sh\n", "");
        assert_eq!(db.user("app"), Ok((1000, 1000)));
        assert!(db.user("broken").is_err());
    }

    #[test]
    fn a_missing_user_of_a_container_names_the_root_too() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_user(dir.path(), "ghost").unwrap_err().to_string();
        assert_eq!(err, format!("unable to find user ghost: no matching entries in /etc/passwd of {}", dir.path().display()));
    }
}
