//! Volumes: directories that outlive the containers using them, under `<root>/volumes/`.
//!
//! Each volume is a directory `<root>/volumes/<name>/` holding `_data` (what containers
//! see, bind-mounted there), `volume.json` (driver, labels, options, creation time) and
//! `users/` (one file per container that refers to the volume, so a volume in use is not
//! removed and `prune` only takes unused ones). A volume directory appears whole or not
//! at all: it is assembled under a dot-name and renamed into place. Changes to the set of
//! volumes and to their users are serialised by a lock on `<root>/volumes/.lock`.
//!
//! This crate mounts nothing: the runtime bind-mounts [`Volume::mountpoint`]. It does
//! fill a new, empty volume from the image's directory at the mount path ([`Volumes::fill`]),
//! as Docker does. The names, labels and JSON shape are Docker's, so `docker volume`
//! habits and compose's `com.docker.compose.*` labels carry over.

#![deny(unsafe_code)]

mod error;
mod fill;
mod filter;
pub mod mounts;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use filter::Filters;

/// The one volume driver: a directory on this machine.
pub const LOCAL_DRIVER: &str = "local";
/// The label Docker puts on the volumes it makes for an image's `VOLUME` or a `-v /path`
/// without a name; `volume prune` removes only these unless asked for all.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
/// Options the local driver takes (`volume create -o`), as Docker's: mount `device` with
/// file system `type` and mount options `o` instead of using a plain directory.
const LOCAL_OPTIONS: [&str; 3] = ["type", "device", "o"];

/// One volume, as `volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// RFC 3339, seconds.
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The directory containers mount (`<root>/volumes/<name>/_data`); not stored.
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Volume {
    /// Made for an image's `VOLUME` or an unnamed `-v`, not named by the user.
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// For a volume made with `-o type=… -o device=… [-o o=…]`: the file system to mount
    /// instead of binding the directory (type, device, mount options).
    pub fn device_mount(&self) -> Option<(&str, &str, &str)> {
        let fstype = self.options.get("type")?;
        let device = self.options.get("device").map(String::as_str).unwrap_or(fstype);
        Some((fstype, device, self.options.get("o").map(String::as_str).unwrap_or("")))
    }
}

/// What `create` is asked for. `name: None` makes an anonymous volume with a random name.
#[derive(Debug, Clone, Default)]
pub struct NewVolume {
    pub name: Option<String>,
    /// Default and only choice: `local`.
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl NewVolume {
    pub fn named(name: &str) -> NewVolume {
        NewVolume { name: Some(name.to_string()), ..NewVolume::default() }
    }

    /// A volume for an image's `VOLUME` path or an unnamed `-v`: a random name and the
    /// anonymous label (what `create` gives any volume without a name).
    pub fn anonymous() -> NewVolume {
        NewVolume::default()
    }
}

/// A container that refers to a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUser {
    pub container_id: String,
    /// The name when it started using the volume (for messages).
    pub container_name: String,
}

/// What `prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub names: Vec<String>,
    /// Bytes of file content removed.
    pub bytes: u64,
}

/// The volumes of one state root.
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
    dir: PathBuf,
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Volumes {
    /// Opens (creating if needed) the volumes of `root`. Clears what a killed command
    /// left half made or half removed.
    pub fn open(root: &Path) -> Result<Volumes> {
        let dir = root.join("volumes");
        fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        let volumes = Volumes { root: root.to_path_buf(), dir };
        volumes.clear_leftovers()?;
        Ok(volumes)
    }

    /// The directory a container mounts for volume `name` (whether or not it exists).
    pub fn mount_source(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates a volume; an error if one of that name exists.
    pub fn create(&self, new: &NewVolume) -> Result<Volume> {
        let _lock = self.lock()?;
        self.create_locked(new)
    }

    /// The volume `name`, created with `labels` if there is none (`-v NAME:/path`,
    /// `volume create NAME` run twice, compose's project volumes). True if it was created.
    pub fn get_or_create(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<(Volume, bool)> {
        if !valid_name(name) {
            return Err(Error::InvalidName { name: name.to_string() });
        }
        let _lock = self.lock()?;
        match self.get(name) {
            Ok(v) => Ok((v, false)),
            Err(Error::NotFound { .. }) => {
                let new = NewVolume { name: Some(name.to_string()), labels: labels.clone(), ..NewVolume::default() };
                Ok((self.create_locked(&new)?, true))
            }
            Err(e) => Err(e),
        }
    }

    fn create_locked(&self, new: &NewVolume) -> Result<Volume> {
        let driver = new.driver.clone().unwrap_or_else(|| LOCAL_DRIVER.to_string());
        if driver != LOCAL_DRIVER {
            return Err(Error::UnknownDriver { driver });
        }
        if let Some(bad) = new.options.keys().find(|k| !LOCAL_OPTIONS.contains(&k.as_str())) {
            return Err(Error::InvalidOption { option: bad.clone() });
        }
        let mut labels = new.labels.clone();
        let name = match &new.name {
            Some(n) if !valid_name(n) => return Err(Error::InvalidName { name: n.clone() }),
            Some(n) => n.clone(),
            // As Docker: a volume nobody named is anonymous.
            None => {
                labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                random_name()
            }
        };
        let dest = self.dir.join(&name);
        if dest.exists() {
            return Err(Error::Exists { name });
        }
        let volume = Volume {
            name: name.clone(),
            driver,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options: new.options.clone(),
            mountpoint: self.mount_source(&name),
        };
        // Assembled aside and renamed into place: a kill leaves no half volume.
        let tmp = self.dir.join(format!(".new-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        for d in ["_data", "users"] {
            fs::create_dir_all(tmp.join(d)).map_err(Error::io("creating", tmp.join(d)))?;
        }
        let body = serde_json::to_vec_pretty(&volume).map_err(|e| Error::Corrupt { path: tmp.clone(), reason: e.to_string() })?;
        let meta = tmp.join("volume.json");
        let mut f = File::create(&meta).map_err(Error::io("writing", &meta))?;
        f.write_all(&body).and_then(|_| f.sync_all()).map_err(Error::io("writing", &meta))?;
        fs::rename(&tmp, &dest).map_err(Error::io("renaming into place", &dest))?;
        sync_dir(&self.dir);
        events::record(&self.root, "volume", "create", &name, &[("driver", LOCAL_DRIVER)]);
        Ok(volume)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(Error::NotFound { name: name.to_string() });
        }
        let path = self.dir.join(name).join("volume.json");
        let body = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound { name: name.to_string() }),
            Err(e) => return Err(Error::Io { action: "reading", path, source: e }),
        };
        let mut volume: Volume = serde_json::from_slice(&body).map_err(|e| Error::Corrupt { path: path.clone(), reason: e.to_string() })?;
        volume.mountpoint = self.mount_source(name);
        Ok(volume)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(Error::io("listing", &self.dir))? {
            let entry = entry.map_err(Error::io("listing", &self.dir))?;
            let Some(name) = entry.file_name().to_str().map(String::from) else { continue };
            if !valid_name(&name) {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                // Removed meanwhile.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The containers that refer to volume `name`. A record whose container is gone
    /// (removed by a command that was killed before it let go) does not count.
    pub fn users(&self, name: &str) -> Result<Vec<VolumeUser>> {
        let dir = self.dir.join(name).join("users");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Io { action: "listing", path: dir, source: e }),
        };
        let mut users = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(String::from) else { continue };
            if id.starts_with('.') {
                continue;
            }
            if !self.container_exists(&id) {
                continue;
            }
            let container_name = fs::read_to_string(entry.path()).unwrap_or_default().trim().to_string();
            users.push(VolumeUser { container_id: id, container_name });
        }
        users.sort_by(|a, b| a.container_name.cmp(&b.container_name));
        Ok(users)
    }

    /// Containers live in `<root>/containers/<id>/` (the runtime's layout).
    fn container_exists(&self, id: &str) -> bool {
        self.root.join("containers").join(id).exists()
    }

    /// Records that container `id` (named `container_name`) uses volume `name`, which must
    /// exist. Returns the volume.
    pub fn attach(&self, name: &str, container_id: &str, container_name: &str) -> Result<Volume> {
        let _lock = self.lock()?;
        let volume = self.get(name)?;
        let users = self.dir.join(name).join("users");
        let tmp = users.join(format!(".{container_id}"));
        // No fsync: a record lost to a power cut only lets the volume be removed early;
        // the rename keeps it whole against a killed process.
        fs::write(&tmp, container_name).map_err(Error::io("writing", &tmp))?;
        fs::rename(&tmp, users.join(container_id)).map_err(Error::io("renaming into place", users.join(container_id)))?;
        Ok(volume)
    }

    /// Container `id` no longer uses any volume (it is being removed). Returns the volumes
    /// it used, so `rm -v` can remove its anonymous ones.
    pub fn release(&self, container_id: &str) -> Result<Vec<Volume>> {
        let _lock = self.lock()?;
        let mut released = Vec::new();
        for volume in self.list()? {
            let record = self.dir.join(&volume.name).join("users").join(container_id);
            match fs::remove_file(&record) {
                Ok(()) => released.push(volume),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { action: "removing", path: record, source: e }),
            }
        }
        Ok(released)
    }

    /// Removes volume `name` and its content; refused while a container refers to it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.get(name)?;
        let users = self.users(name)?;
        if !users.is_empty() {
            return Err(Error::InUse { name: name.to_string(), users: users.iter().map(user_label).collect() });
        }
        self.remove_locked(name)
    }

    /// Removes every volume no container refers to that `filters` match (by default only
    /// anonymous ones: pass `all` to take named ones too, as `docker volume prune -a`).
    pub fn prune(&self, filters: &Filters, all: bool) -> Result<Pruned> {
        let _lock = self.lock()?;
        let mut pruned = Pruned::default();
        for volume in self.list()? {
            if (!all && !volume.is_anonymous()) || !self.users(&volume.name)?.is_empty() || !filters.matches(&volume, false) {
                continue;
            }
            pruned.bytes += tree_size(&self.mount_source(&volume.name));
            self.remove_locked(&volume.name)?;
            pruned.names.push(volume.name);
        }
        Ok(pruned)
    }

    /// Whether any container refers to `name` (for `ls --filter dangling=…`).
    pub fn in_use(&self, name: &str) -> Result<bool> {
        Ok(!self.users(name)?.is_empty())
    }

    /// Bytes of file content in the volume.
    pub fn size(&self, name: &str) -> u64 {
        tree_size(&self.mount_source(name))
    }

    /// Fills the volume from `source` (the image's directory at the mount path) if the
    /// volume is still empty, keeping owners, modes, times, links and extended attributes,
    /// as Docker does the first time a new volume is mounted. Returns whether it copied.
    /// The copy is made aside and renamed over the empty `_data`, so a kill leaves the
    /// volume empty, to be filled next time, never half filled.
    pub fn fill(&self, volume: &Volume, source: &Path) -> Result<bool> {
        let _lock = self.lock()?;
        let data = self.mount_source(&volume.name);
        if !is_empty_dir(&data) || !fs::metadata(source).is_ok_and(|m| m.is_dir()) {
            return Ok(false);
        }
        let tmp = self.dir.join(&volume.name).join(".filling");
        let _ = fs::remove_dir_all(&tmp);
        fill::copy_tree(source, &tmp)?;
        fs::rename(&tmp, &data).map_err(Error::io("renaming into place", &data))?;
        Ok(true)
    }

    fn remove_locked(&self, name: &str) -> Result<()> {
        let dir = self.dir.join(name);
        // Out of the listing in one step; the content goes after.
        let gone = self.dir.join(format!(".gone-{name}-{}", std::process::id()));
        fs::rename(&dir, &gone).map_err(Error::io("removing", &dir))?;
        events::record(&self.root, "volume", "destroy", name, &[("driver", LOCAL_DRIVER)]);
        fs::remove_dir_all(&gone).map_err(Error::io("removing", &gone))
    }

    fn lock(&self) -> Result<File> {
        let path = self.dir.join(".lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(Error::io("opening", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&file).map_err(Error::io("locking", &path))?;
        Ok(file)
    }

    /// Half-made (`.new-*`) and half-removed (`.gone-*`) volumes of killed commands, and
    /// fills that did not finish. Skipped while another command holds the lock.
    fn clear_leftovers(&self) -> Result<()> {
        let path = self.dir.join(".lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(Error::io("opening", &path))?;
        if !matches!(fs4::fs_std::FileExt::try_lock_exclusive(&file), Ok(true)) {
            return Ok(());
        }
        for entry in fs::read_dir(&self.dir).map_err(Error::io("listing", &self.dir))?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".gone-") {
                let _ = fs::remove_dir_all(entry.path());
            } else if valid_name(&name) && entry.path().join(".filling").exists() {
                let _ = fs::remove_dir_all(entry.path().join(".filling"));
            }
        }
        Ok(())
    }
}

fn user_label(u: &VolumeUser) -> String {
    let short = u.container_id.get(..12).unwrap_or(&u.container_id);
    if u.container_name.is_empty() { short.to_string() } else { format!("{} ({short})", u.container_name) }
}

fn random_name() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut e| e.next().is_none())
}

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += tree_size(&entry.path()),
            Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests;
