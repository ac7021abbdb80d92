//! The mounts a container asks for, in Docker's words: `-v [SOURCE:]TARGET[:OPTIONS]`,
//! `--mount type=bind|volume|tmpfs,…`, `--tmpfs PATH[:OPTIONS]` and `--volumes-from`,
//! parsed into [`MountRequest`]s (bad input is an error naming the flag and the value, before
//! anything is made), then resolved against the volume store into the [`Mount`]s the
//! runtime makes ([`Volumes::resolve`]): named volumes created on first use, anonymous ones
//! for the image's `VOLUME` paths, and every volume recorded as used by the container.
//! A container's mounts are kept beside its record (`mounts.json`), for `inspect`,
//! `--volumes-from` and removing its anonymous volumes with it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, NewVolume, Result, Volume, Volumes, valid_name};

/// What a mount is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A host directory or file.
    Bind,
    /// A named or anonymous volume.
    Volume,
    /// A fresh tmpfs, gone when the container stops.
    Tmpfs,
}

/// One mount as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    pub kind: MountType,
    /// Bind: the host path. Volume: the name, `None` for an anonymous volume. Tmpfs: none.
    pub source: Option<String>,
    /// Absolute path in the container.
    pub target: String,
    pub readonly: bool,
    /// Volume: do not fill a new volume from the image (`nocopy`, `volume-nocopy`).
    pub no_copy: bool,
    /// Bind from `-v`: a missing host directory is created (Docker's old `-v` habit);
    /// from `--mount` it is an error.
    pub create_host_path: bool,
    /// Volume: labels for a volume created here (`volume-label`).
    pub labels: BTreeMap<String, String>,
    /// Tmpfs: mount options (size=, mode=, noexec, …).
    pub tmpfs_options: Vec<String>,
}

impl MountRequest {
    fn new(kind: MountType, target: String) -> MountRequest {
        MountRequest { kind, source: None, target, readonly: false, no_copy: false, create_host_path: false, labels: BTreeMap::new(), tmpfs_options: Vec::new() }
    }
}

/// One mount a container has, as recorded and as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    #[serde(rename = "Type")]
    pub kind: MountType,
    /// The volume's name (volumes only).
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host path mounted (a volume's `_data`); empty for tmpfs.
    #[serde(rename = "Source")]
    pub source: PathBuf,
    #[serde(rename = "Destination")]
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    /// Tmpfs mount options, or a volume's file system options (`-o type=tmpfs`).
    #[serde(rename = "Options", default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// A volume's file system instead of its directory (`volume create -o type=…`).
    #[serde(rename = "FsType", default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    /// Volumes: made for this container (an image `VOLUME` or `-v /path`), removed with it.
    #[serde(rename = "Anonymous", default)]
    pub anonymous: bool,
}

impl Mount {
    /// The entry of `docker inspect CONTAINER`'s `Mounts` for this mount.
    pub fn inspect_json(&self) -> serde_json::Value {
        let kind = match self.kind {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        };
        let mut v = serde_json::json!({
            "Type": kind,
            "Source": self.source,
            "Destination": self.destination,
            "Mode": "",
            "RW": self.rw,
            "Propagation": if self.kind == MountType::Bind { "rprivate" } else { "" },
        });
        if let (Some(name), Some(obj)) = (&self.name, v.as_object_mut()) {
            obj.insert("Name".into(), name.clone().into());
            obj.insert("Driver".into(), crate::LOCAL_DRIVER.into());
            obj.insert("Mode".into(), "z".into());
        }
        v
    }
}

/// A mount to make, and whether its volume is new and should first be filled from the
/// image's content at the destination (see [`Volumes::fill_from_image`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub mount: Mount,
    pub fill: bool,
}

fn bad(flag: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidMount { flag: flag.to_string(), value: value.to_string(), reason: reason.into() }
}

/// A container path: absolute, no `..`, normalised (`/data/` is `/data`).
fn container_path(flag: &str, value: &str, path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(bad(flag, value, format!("the container path {path:?} must be absolute")));
    }
    let mut out = String::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => {
                out.push('/');
                out.push_str(&p.to_string_lossy());
            }
            Component::ParentDir => return Err(bad(flag, value, format!("the container path {path:?} must not contain \"..\""))),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(bad(flag, value, "the container path cannot be /"));
    }
    Ok(out)
}

/// A host path as given: absolute, or relative to `cwd` (`./site`, as newer Docker takes).
fn host_path(cwd: &Path, path: &str) -> String {
    let p = Path::new(path);
    let abs = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    // Lexically, as docker: `./a/../b` is `cwd/b`.
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

/// `-v` / `--volume`: `TARGET` (an anonymous volume), `SOURCE:TARGET[:OPTIONS]` where SOURCE
/// is a host path (absolute, or starting with `.`) or a volume name, and OPTIONS are
/// comma-separated `ro`, `rw`, `nocopy`, `z`, `Z` and the propagation modes. Relative host
/// paths are taken from `cwd`.
pub fn parse_volume_flag(value: &str, cwd: &Path) -> Result<MountRequest> {
    const FLAG: &str = "--volume";
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [s, t] => (Some(*s), *t, ""),
        [s, t, o] => (Some(*s), *t, *o),
        _ => return Err(bad(FLAG, value, "use [SOURCE:]TARGET[:OPTIONS]")),
    };
    let target = container_path(FLAG, value, target)?;
    let mut req = match source {
        None => MountRequest::new(MountType::Volume, target),
        Some("") => return Err(bad(FLAG, value, "the source is empty")),
        Some(s) if s.starts_with('/') || s.starts_with('.') || s.starts_with('~') => {
            if s.starts_with('~') {
                return Err(bad(FLAG, value, "the shell did not expand ~: use an absolute path"));
            }
            let mut r = MountRequest::new(MountType::Bind, target);
            r.source = Some(host_path(cwd, s));
            r.create_host_path = true;
            r
        }
        Some(name) => {
            if !valid_name(name) {
                return Err(bad(FLAG, value, format!("{name:?} is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)")));
            }
            let mut r = MountRequest::new(MountType::Volume, target);
            r.source = Some(name.to_string());
            r
        }
    };
    let mut mode = None;
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "rw" => {
                if mode.replace(o).is_some() {
                    return Err(bad(FLAG, value, "give ro or rw once"));
                }
                req.readonly = o == "ro";
            }
            "nocopy" if req.kind == MountType::Volume => req.no_copy = true,
            // SELinux relabelling and mount propagation: nothing to do without SELinux, and
            // binds are private here.
            "z" | "Z" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "consistent" | "cached" | "delegated" => {}
            other => return Err(bad(FLAG, value, format!("unknown option {other:?} (ro, rw, nocopy, z, Z, propagation)"))),
        }
    }
    Ok(req)
}

fn parse_bool(flag: &str, value: &str, key: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(bad(flag, value, format!("{key}={other}: use true or false"))),
    }
}

/// `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,volume-nocopy]
/// [,volume-label=K=V][,tmpfs-size=64m][,tmpfs-mode=1770]`, with Docker's key spellings
/// (`src`, `dst`, `destination`, `ro`). The type defaults to volume.
pub fn parse_mount_flag<'a>(value: &'a str, cwd: &Path) -> Result<MountRequest> {
    const FLAG: &str = "--mount";
    let mut kind = MountType::Volume;
    let (mut source, mut target) = (None, None);
    let mut req = MountRequest::new(MountType::Volume, String::new());
    for field in value.split(',') {
        let (key, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (field.trim(), None),
        };
        let need = |v: Option<&'a str>| -> Result<&'a str> { v.filter(|v| !v.is_empty()).ok_or_else(|| bad(FLAG, value, format!("{key} needs a value ({key}=…)"))) };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                kind = match need(v)? {
                    "bind" => MountType::Bind,
                    "volume" => MountType::Volume,
                    "tmpfs" => MountType::Tmpfs,
                    other => return Err(bad(FLAG, value, format!("type {other:?} is not one of bind, volume, tmpfs"))),
                }
            }
            "source" | "src" => source = Some(need(v)?.to_string()),
            "target" | "destination" | "dst" => target = Some(need(v)?.to_string()),
            "readonly" | "ro" => req.readonly = parse_bool(FLAG, value, key, v)?,
            "volume-nocopy" => req.no_copy = parse_bool(FLAG, value, key, v)?,
            "volume-label" => {
                let (k, lv) = need(v)?.split_once('=').unwrap_or((need(v)?, ""));
                req.labels.insert(k.to_string(), lv.to_string());
            }
            "volume-driver" if need(v)? == crate::LOCAL_DRIVER => {}
            "volume-driver" => return Err(Error::UnknownDriver { driver: need(v)?.to_string() }),
            "tmpfs-size" => {
                let size = need(v)?;
                let digits = size.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || size.len() - digits.len() > 1 {
                    return Err(bad(FLAG, value, format!("tmpfs-size={size}: use bytes, or a size such as 64m")));
                }
                req.tmpfs_options.push(format!("size={size}"));
            }
            "tmpfs-mode" => {
                let mode = need(v)?;
                if u32::from_str_radix(mode, 8).is_err() {
                    return Err(bad(FLAG, value, format!("tmpfs-mode={mode}: use an octal mode such as 1777")));
                }
                req.tmpfs_options.push(format!("mode={mode}"));
            }
            "bind-propagation" | "consistency" | "bind-nonrecursive" => {}
            "" => {}
            other => return Err(bad(FLAG, value, format!("unknown key {other:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad(FLAG, value, "target is required (target=/path)"))?;
    req.target = container_path(FLAG, value, &target)?;
    req.kind = kind;
    match kind {
        MountType::Bind => {
            let s = source.ok_or_else(|| bad(FLAG, value, "a bind mount needs source=/host/path"))?;
            req.source = Some(host_path(cwd, &s));
        }
        MountType::Volume => {
            if let Some(name) = &source
                && !valid_name(name) {
                    return Err(bad(FLAG, value, format!("source {name:?} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+); for a host path use type=bind")));
                }
            req.source = source;
        }
        MountType::Tmpfs if source.is_some() => return Err(bad(FLAG, value, "a tmpfs mount takes no source")),
        MountType::Tmpfs => {}
    }
    if kind != MountType::Tmpfs && !req.tmpfs_options.is_empty() {
        return Err(bad(FLAG, value, "tmpfs-size and tmpfs-mode need type=tmpfs"));
    }
    if kind != MountType::Volume && (req.no_copy || !req.labels.is_empty()) {
        return Err(bad(FLAG, value, "volume-nocopy and volume-label need type=volume"));
    }
    Ok(req)
}

/// `--tmpfs PATH[:OPTIONS]`, OPTIONS as mount(8) takes them for tmpfs (`size=64m,mode=1777,exec`).
pub fn parse_tmpfs_flag(value: &str) -> Result<MountRequest> {
    const FLAG: &str = "--tmpfs";
    let (path, options) = value.split_once(':').unwrap_or((value, ""));
    let mut req = MountRequest::new(MountType::Tmpfs, container_path(FLAG, value, path)?);
    for o in options.split(',').filter(|o| !o.is_empty()) {
        if o.contains(char::is_whitespace) {
            return Err(bad(FLAG, value, format!("option {o:?} contains a space")));
        }
        match o {
            "ro" => req.readonly = true,
            "rw" => req.readonly = false,
            o => req.tmpfs_options.push(o.to_string()),
        }
    }
    Ok(req)
}

/// `--volumes-from CONTAINER[:ro|rw]`: the container, and the mode forced on its mounts.
pub fn parse_volumes_from_flag(value: &str) -> Result<(String, Option<bool>)> {
    match value.rsplit_once(':') {
        Some((c, "ro")) if !c.is_empty() => Ok((c.to_string(), Some(true))),
        Some((c, "rw")) if !c.is_empty() => Ok((c.to_string(), Some(false))),
        Some((_, m)) => Err(bad("--volumes-from", value, format!("mode {m:?} is not ro or rw"))),
        None if value.is_empty() => Err(bad("--volumes-from", value, "name a container")),
        None => Ok((value.to_string(), None)),
    }
}

/// Where a container's mounts are recorded, in its directory.
const RECORD: &str = "mounts.json";

/// Records `mounts` in the container directory `dir` (tmp + rename).
pub fn save_record(dir: &Path, mounts: &[Mount]) -> Result<()> {
    let path = dir.join(RECORD);
    let tmp = dir.join(format!(".{RECORD}.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(mounts).map_err(|e| Error::Corrupt { path: path.clone(), reason: e.to_string() })?;
    let mut f = fs::File::create(&tmp).map_err(Error::io("writing", &tmp))?;
    f.write_all(&body).map_err(Error::io("writing", &tmp))?;
    fs::rename(&tmp, &path).map_err(Error::io("renaming into place", &path))
}

/// The mounts recorded for the container in `dir` (none if it has no record).
pub fn load_record(dir: &Path) -> Result<Vec<Mount>> {
    let path = dir.join(RECORD);
    match fs::read(&path) {
        Ok(body) => serde_json::from_slice(&body).map_err(|e| Error::Corrupt { path, reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Io { action: "reading", path, source: e }),
    }
}

/// What a container gets mounted, before resolution.
#[derive(Debug, Clone, Default)]
pub struct MountPlan {
    /// From `-v`, `--mount`, `--tmpfs`, in the order given.
    pub requests: Vec<MountRequest>,
    /// From `--volumes-from`: each container's recorded mounts and the forced mode.
    pub volumes_from: Vec<(Vec<Mount>, Option<bool>)>,
    /// The image's `VOLUME` paths.
    pub image_volumes: Vec<String>,
}

impl Volumes {
    /// Turns `plan` into the mounts of container `container_id` (named `container_name`, whose
    /// directory exists): named volumes are created if missing, anonymous ones made for
    /// `-v /path` and for every image `VOLUME` path nothing else covers, `--volumes-from`
    /// mounts copied, and every volume recorded as used by the container. The mounts are in
    /// the order to make them (parents before children). If it fails, what it made for the
    /// container is undone.
    pub fn resolve(&self, plan: &MountPlan, container_id: &str, container_name: &str) -> Result<Vec<Resolved>> {
        let mut made: Vec<Volume> = Vec::new();
        let result = self.resolve_inner(plan, container_id, container_name, &mut made);
        if result.is_err() {
            let _ = self.release(container_id);
            for v in made {
                let _ = self.remove(&v.name);
            }
        }
        result
    }

    fn resolve_inner(&self, plan: &MountPlan, container_id: &str, container_name: &str, made: &mut Vec<Volume>) -> Result<Vec<Resolved>> {
        let mut out: Vec<Resolved> = Vec::new();
        let taken = |out: &[Resolved], target: &str| out.iter().any(|r| r.mount.destination == target);
        for req in &plan.requests {
            if taken(&out, &req.target) {
                return Err(Error::DuplicateMount { destination: req.target.clone() });
            }
            let resolved = match req.kind {
                MountType::Bind => {
                    let source = PathBuf::from(req.source.clone().unwrap_or_default());
                    if !source.exists() {
                        if !req.create_host_path {
                            return Err(Error::BindSourceMissing { path: source });
                        }
                        fs::create_dir_all(&source).map_err(Error::io("creating the bind source", &source))?;
                    }
                    Resolved { mount: Mount { kind: MountType::Bind, name: None, source, destination: req.target.clone(), rw: !req.readonly, options: Vec::new(), fstype: None, anonymous: false }, fill: false }
                }
                MountType::Tmpfs => {
                    let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
                    options.extend(req.tmpfs_options.iter().cloned());
                    Resolved { mount: Mount { kind: MountType::Tmpfs, name: None, source: PathBuf::new(), destination: req.target.clone(), rw: !req.readonly, options, fstype: None, anonymous: false }, fill: false }
                }
                MountType::Volume => {
                    let (volume, created) = match &req.source {
                        Some(name) => self.get_or_create(name, &req.labels)?,
                        None => {
                            let mut new = NewVolume::anonymous();
                            new.labels.extend(req.labels.clone());
                            let v = self.create(&new)?;
                            made.push(v.clone());
                            (v, true)
                        }
                    };
                    if created && req.source.is_some() {
                        made.push(volume.clone());
                    }
                    self.volume_mount(&volume, &req.target, req.readonly, !req.no_copy, container_id, container_name)?
                }
            };
            out.push(resolved);
        }
        for (mounts, mode) in &plan.volumes_from {
            for m in mounts {
                if taken(&out, &m.destination) {
                    continue;
                }
                let mut m = m.clone();
                if let Some(ro) = mode {
                    m.rw = !ro;
                }
                if let Some(name) = &m.name {
                    self.attach(name, container_id, container_name)?;
                }
                // Shared, not made for this container: removing it leaves them.
                m.anonymous = false;
                out.push(Resolved { mount: m, fill: false });
            }
        }
        for path in &plan.image_volumes {
            let target = container_path("VOLUME", path, path)?;
            if taken(&out, &target) {
                continue;
            }
            let volume = self.create(&NewVolume::anonymous())?;
            made.push(volume.clone());
            out.push(self.volume_mount(&volume, &target, false, true, container_id, container_name)?);
        }
        // Parents first, so /data/logs lands inside /data.
        out.sort_by_key(|r| r.mount.destination.matches('/').count());
        Ok(out)
    }

    fn volume_mount(&self, volume: &Volume, target: &str, readonly: bool, copy: bool, container_id: &str, container_name: &str) -> Result<Resolved> {
        let volume = self.attach(&volume.name, container_id, container_name)?;
        let (fstype, options, source) = match volume.device_mount() {
            Some((t, device, o)) => (Some(t.to_string()), o.split(',').filter(|o| !o.is_empty()).map(String::from).collect(), PathBuf::from(device)),
            None => (None, Vec::new(), volume.mountpoint.clone()),
        };
        // A volume on its own file system is not filled; nor is one that has content.
        let fill = copy && fstype.is_none() && crate::is_empty_dir(&volume.mountpoint);
        let mount = Mount { kind: MountType::Volume, name: Some(volume.name.clone()), source, destination: target.to_string(), rw: !readonly, options, fstype, anonymous: volume.is_anonymous() };
        Ok(Resolved { mount, fill })
    }

    /// Container `container_id`, whose recorded mounts were `mounts`, is gone: it lets go of
    /// its volumes, and with `remove_anonymous` (`rm -v`, `run --rm`) the anonymous volumes
    /// made for it are removed too, unless another container still uses them (`--volumes-from`).
    /// Call it after the container's directory is removed. Returns the volumes removed.
    pub fn forget_container(&self, container_id: &str, mounts: &[Mount], remove_anonymous: bool) -> Result<Vec<String>> {
        self.release(container_id)?;
        let mut removed = Vec::new();
        if remove_anonymous {
            for name in mounts.iter().filter(|m| m.anonymous).filter_map(|m| m.name.as_ref()) {
                match self.remove(name) {
                    Ok(()) => removed.push(name.clone()),
                    Err(Error::InUse { .. } | Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    /// Fills `volume` from the image's content at `path` inside `rootfs` (the image's
    /// file system, mounted), if the volume is empty. The path is resolved inside the root,
    /// so a symlink in the image cannot lead the copy out of it.
    pub fn fill_from_image(&self, volume: &str, rootfs: &Path, path: &str) -> Result<bool> {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
        use std::os::fd::AsRawFd;
        let volume = self.get(volume)?;
        let root = fs::File::open(rootfs).map_err(Error::io("opening", rootfs))?;
        let rel = path.trim_start_matches('/');
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let dir = match openat2(&root, if rel.is_empty() { "." } else { rel }, how) {
            Ok(fd) => fd,
            // Nothing (or a file) there in the image: nothing to copy.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => return Ok(false),
            Err(e) => return Err(Error::Io { action: "opening the image directory", path: rootfs.join(rel), source: e.into() }),
        };
        self.fill(&volume, Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> PathBuf {
        PathBuf::from("/home/me/app")
    }

    fn store() -> (tempfile::TempDir, Volumes) {
        let dir = tempfile::tempdir().expect("temp dir");
        let volumes = Volumes::open(dir.path()).expect("open");
        (dir, volumes)
    }

    fn with_container(root: &Path, id: &str) {
        fs::create_dir_all(root.join("containers").join(id)).expect("container dir");
    }

    #[test]
    fn volume_flag_tells_host_paths_from_volume_names() {
        let v = parse_volume_flag("/srv/site:/usr/share/nginx/html:ro", &cwd()).expect("bind");
        assert_eq!((v.kind, v.source.as_deref(), v.target.as_str(), v.readonly, v.create_host_path), (MountType::Bind, Some("/srv/site"), "/usr/share/nginx/html", true, true));
        let v = parse_volume_flag("./site/../www:/srv/", &cwd()).expect("relative bind");
        assert_eq!((v.source.as_deref(), v.target.as_str()), (Some("/home/me/app/www"), "/srv"));
        let v = parse_volume_flag("pgdata:/var/lib/postgresql/data", &cwd()).expect("named");
        assert_eq!((v.kind, v.source.as_deref(), v.readonly), (MountType::Volume, Some("pgdata"), false));
        let v = parse_volume_flag("cache:/cache:ro,nocopy", &cwd()).expect("options");
        assert!(v.readonly && v.no_copy);
        let v = parse_volume_flag("/data", &cwd()).expect("anonymous");
        assert_eq!((v.kind, v.source), (MountType::Volume, None));
    }

    #[test]
    fn volume_flag_errors_name_the_flag_and_the_value() {
        for (value, says) in [
            ("a:b", "must be absolute"),
            ("data:/x:rx", "unknown option \"rx\""),
            ("x:/a:/b:ro", "[SOURCE:]TARGET"),
            ("bad*name:/x", "neither an absolute host path nor a volume name"),
            ("/h:/", "cannot be /"),
            ("/h:/a/../etc", "\"..\""),
            ("~/x:/x", "~"),
            ("/h:/x:ro,rw", "once"),
        ] {
            let err = parse_volume_flag(value, &cwd()).expect_err(value).to_string();
            assert!(err.contains(&format!("--volume {value:?}")) && err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn mount_flag_reads_docker_s_keys() {
        let m = parse_mount_flag("type=bind,source=./site,target=/srv,readonly", &cwd()).expect("bind");
        assert_eq!((m.kind, m.source.as_deref(), m.target.as_str(), m.readonly, m.create_host_path), (MountType::Bind, Some("/home/me/app/site"), "/srv", true, false));
        let m = parse_mount_flag("src=db,dst=/data,volume-nocopy,volume-label=tier=db", &cwd()).expect("volume");
        assert_eq!((m.kind, m.source.as_deref(), m.no_copy), (MountType::Volume, Some("db"), true));
        assert_eq!(m.labels["tier"], "db");
        let m = parse_mount_flag("type=tmpfs,destination=/run,tmpfs-size=64m,tmpfs-mode=1770,ro=false", &cwd()).expect("tmpfs");
        assert_eq!((m.kind, m.tmpfs_options.clone(), m.readonly), (MountType::Tmpfs, vec!["size=64m".to_string(), "mode=1770".to_string()], false));
        let m = parse_mount_flag("type=volume,target=/anon", &cwd()).expect("anonymous");
        assert_eq!(m.source, None);
    }

    #[test]
    fn mount_flag_errors_name_the_flag_and_the_value() {
        for (value, says) in [
            ("type=nfs,target=/x", "\"nfs\""),
            ("type=bind,target=/x", "source=/host/path"),
            ("source=db", "target is required"),
            ("type=tmpfs,source=x,target=/x", "no source"),
            ("type=tmpfs,target=/x,tmpfs-size=lots", "tmpfs-size=lots"),
            ("type=tmpfs,target=/x,tmpfs-mode=999", "tmpfs-mode=999"),
            ("type=bind,src=/a,target=/x,tmpfs-size=1m", "need type=tmpfs"),
            ("target=/x,colour=red", "\"colour\""),
            ("target=/x,readonly=maybe", "readonly=maybe"),
            ("src=/abs,target=/x", "type=bind"),
        ] {
            let err = parse_mount_flag(value, &cwd()).expect_err(value).to_string();
            assert!(err.contains(&format!("--mount {value:?}")) && err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn tmpfs_and_volumes_from_flags() {
        let t = parse_tmpfs_flag("/run:size=1m,exec").expect("tmpfs");
        assert_eq!((t.target.as_str(), t.tmpfs_options.clone()), ("/run", vec!["size=1m".to_string(), "exec".to_string()]));
        assert!(parse_tmpfs_flag("run").expect_err("relative").to_string().contains("--tmpfs \"run\""));
        assert_eq!(parse_volumes_from_flag("db:ro").expect("ro"), ("db".to_string(), Some(true)));
        assert_eq!(parse_volumes_from_flag("db").expect("plain"), ("db".to_string(), None));
        assert!(parse_volumes_from_flag("db:rx").expect_err("mode").to_string().contains("\"rx\""));
    }

    #[test]
    fn resolve_creates_named_volumes_once_and_anonymous_ones_for_image_volumes() {
        let (root, volumes) = store();
        with_container(root.path(), "c1");
        let plan = MountPlan {
            requests: vec![parse_volume_flag("db:/var/lib/db", &cwd()).expect("v"), parse_tmpfs_flag("/run").expect("t")],
            volumes_from: Vec::new(),
            image_volumes: vec!["/var/lib/db".into(), "/logs".into()],
        };
        let mounts = volumes.resolve(&plan, "c1", "web").expect("resolve");
        let dests: Vec<&str> = mounts.iter().map(|r| r.mount.destination.as_str()).collect();
        assert_eq!(dests, ["/run", "/logs", "/var/lib/db"], "parents first; the -v covers the image VOLUME");
        let db = &mounts[2];
        assert_eq!((db.mount.name.as_deref(), db.mount.anonymous, db.fill), (Some("db"), false, true));
        assert_eq!(db.mount.source, volumes.mount_source("db"));
        let logs = &mounts[1];
        assert!(logs.mount.anonymous && logs.fill);
        assert!(volumes.get(logs.mount.name.as_deref().expect("name")).expect("anonymous volume").is_anonymous());
        assert_eq!(mounts[0].mount.options, ["nosuid", "nodev", "noexec"]);
        let json = db.mount.inspect_json();
        assert_eq!((json["Type"].as_str(), json["Name"].as_str(), json["Destination"].as_str(), json["RW"].as_bool(), json["Driver"].as_str()), (Some("volume"), Some("db"), Some("/var/lib/db"), Some(true), Some("local")));
        assert!(matches!(volumes.remove("db"), Err(Error::InUse { .. })), "used by c1");

        // The container goes with rm -v: its anonymous volume goes too, the named one stays.
        fs::remove_dir_all(root.path().join("containers/c1")).expect("rm container");
        let record: Vec<Mount> = mounts.iter().map(|r| r.mount.clone()).collect();
        let removed = volumes.forget_container("c1", &record, true).expect("forget");
        assert_eq!(removed, [logs.mount.name.clone().expect("name")]);
        let left: Vec<String> = volumes.list().expect("list").into_iter().map(|v| v.name).collect();
        assert_eq!(left, ["db"]);
    }

    #[test]
    fn resolve_refuses_two_mounts_at_one_path_and_undoes_what_it_made() {
        let (root, volumes) = store();
        with_container(root.path(), "c1");
        let plan = MountPlan {
            requests: vec![parse_volume_flag("/data", &cwd()).expect("a"), parse_volume_flag("fresh:/data", &cwd()).expect("b")],
            ..MountPlan::default()
        };
        let err = volumes.resolve(&plan, "c1", "web").expect_err("duplicate");
        assert_eq!(err.to_string(), "duplicate mount point: /data");
        assert!(volumes.list().expect("list").is_empty(), "the anonymous volume made first is gone");
    }

    #[test]
    fn mount_bind_of_a_missing_host_path_is_an_error_but_volume_flag_creates_it() {
        let (root, volumes) = store();
        with_container(root.path(), "c1");
        let missing = root.path().join("no-such-dir");
        let m = parse_mount_flag(&format!("type=bind,src={},dst=/x", missing.display()), &cwd()).expect("parse");
        let err = volumes.resolve(&MountPlan { requests: vec![m], ..MountPlan::default() }, "c1", "web").expect_err("missing");
        assert!(err.to_string().contains("bind source path does not exist") && err.to_string().contains("no-such-dir"), "{err}");
        let v = parse_volume_flag(&format!("{}:/x", missing.display()), &cwd()).expect("parse");
        volumes.resolve(&MountPlan { requests: vec![v], ..MountPlan::default() }, "c1", "web").expect("created");
        assert!(missing.is_dir());
    }

    #[test]
    fn volumes_from_shares_the_mounts_with_a_forced_mode() {
        let (root, volumes) = store();
        with_container(root.path(), "c1");
        with_container(root.path(), "c2");
        let first = volumes.resolve(&MountPlan { requests: vec![parse_volume_flag("/shared", &cwd()).expect("v")], ..MountPlan::default() }, "c1", "one").expect("c1");
        fs::write(root.path().join("containers/c1/x"), "").expect("marker");
        let record: Vec<Mount> = first.iter().map(|r| r.mount.clone()).collect();
        save_record(&root.path().join("containers/c1"), &record).expect("save");
        let loaded = load_record(&root.path().join("containers/c1")).expect("load");
        assert_eq!(loaded, record);

        let second = volumes.resolve(&MountPlan { volumes_from: vec![(loaded, Some(true))], ..MountPlan::default() }, "c2", "two").expect("c2");
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].mount.source, record[0].source);
        assert!(!second[0].mount.rw && !second[0].mount.anonymous && !second[0].fill);
        let name = record[0].name.clone().expect("name");
        assert_eq!(volumes.users(&name).expect("users").len(), 2);

        // rm -v of the first keeps the volume while the second uses it.
        fs::remove_dir_all(root.path().join("containers/c1")).expect("rm c1");
        assert!(volumes.forget_container("c1", &record, true).expect("forget").is_empty());
        assert!(volumes.get(&name).is_ok());
    }

    #[test]
    fn fill_from_image_resolves_the_path_inside_the_root() {
        let (root, volumes) = store();
        let rootfs = root.path().join("rootfs");
        fs::create_dir_all(rootfs.join("real/conf")).expect("image dir");
        fs::write(rootfs.join("real/conf/app.ini"), "a=1").expect("image file");
        // An absolute symlink in the image means the image's /real, not the host's.
        std::os::unix::fs::symlink("/real", rootfs.join("etc-link")).expect("symlink");
        volumes.create(&NewVolume::named("cfg")).expect("create");
        assert!(volumes.fill_from_image("cfg", &rootfs, "/etc-link/conf").expect("fill"));
        assert_eq!(fs::read_to_string(volumes.mount_source("cfg").join("app.ini")).expect("read"), "a=1");
        volumes.create(&NewVolume::named("empty")).expect("create");
        assert!(!volumes.fill_from_image("empty", &rootfs, "/nothing/here").expect("no dir"));
    }
}
