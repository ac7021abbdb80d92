//! A container's mounts: `-v`, `--mount`, `--tmpfs`, `--volumes-from` and the image's
//! `VOLUME`s, through the volume store (the `volume` crate). The flags are read before
//! anything is written; once the container's directory exists they are resolved (named
//! volumes created on first use, anonymous ones made), new volumes are filled from the image
//! as Docker does, and the mounts are recorded in the container's directory (`mounts.json`)
//! for `inspect`, `--volumes-from` and removal, which lets go of the volumes.

use std::path::{Path, PathBuf};

use runtime::containers::ContainerStore;
use volume::Volumes;
use volume::mounts::{self, Mount, MountPlan, MountRequest, MountType, Resolved};

use crate::config::RunOptions;
use crate::error::{Error, Result};

/// The mount flags of one `run`, read.
#[derive(Debug, Default)]
pub(crate) struct MountFlags {
    requests: Vec<MountRequest>,
    volumes_from: Vec<(String, Option<bool>)>,
}

/// Reads `-v`, `--mount`, `--tmpfs` and `--volumes-from`; an error names the flag and value.
pub(crate) fn parse(opts: &RunOptions) -> Result<MountFlags> {
    // Relative bind sources (`-v ./site:/srv`) are the caller's working directory's.
    let cwd = std::path::absolute(".").map_err(|e| Error::io("resolving", ".", e))?;
    let mut flags = MountFlags::default();
    for v in &opts.volumes {
        flags.requests.push(mounts::parse_volume_flag(v, &cwd)?);
    }
    for m in &opts.mounts {
        flags.requests.push(mounts::parse_mount_flag(m, &cwd)?);
    }
    for t in &opts.tmpfs {
        flags.requests.push(mounts::parse_tmpfs_flag(t)?);
    }
    for f in &opts.volumes_from {
        flags.volumes_from.push(mounts::parse_volumes_from_flag(f)?);
    }
    Ok(flags)
}

/// Everything a new container's mounts need to know about it.
pub(crate) struct NewContainer<'a> {
    pub root: &'a Path,
    pub store: &'a ContainerStore,
    pub id: &'a str,
    pub name: &'a str,
    /// Its directory (exists): upper, work and rootfs dirs, where the record goes.
    pub dir: &'a Path,
    /// The image's layers, top first.
    pub lowers: &'a [PathBuf],
    pub image_volumes: Vec<String>,
}

/// Resolves the flags into runtime mounts for container `c`, fills its new volumes from the
/// image and records the mounts. On failure nothing made for the container stays.
pub(crate) fn prepare(flags: &MountFlags, c: &NewContainer<'_>) -> Result<Vec<runtime::Mount>> {
    let mut volumes_from = Vec::new();
    for (key, mode) in &flags.volumes_from {
        let source = c.store.find(key)?;
        volumes_from.push((mounts::load_record(&c.store.dir_of(&source.id))?, *mode));
    }
    let plan = MountPlan { requests: flags.requests.clone(), volumes_from, image_volumes: c.image_volumes.clone() };
    let volumes = Volumes::open(c.root)?;
    let resolved = volumes.resolve(&plan, c.id, c.name)?;
    let record: Vec<Mount> = resolved.iter().map(|r| r.mount.clone()).collect();
    let done = fill(&volumes, &resolved, c).and_then(|()| Ok(mounts::save_record(c.dir, &record)?)).and_then(|()| record.iter().map(to_runtime).collect::<Result<Vec<_>>>());
    if done.is_err() {
        let _ = volumes.forget_container(c.id, &record, true);
    }
    done
}

/// Fills each new volume from the image's content at its path. The image is read from its
/// only layer, or from its layers mounted for as long as the fill takes, in a mount namespace
/// of a thread of its own: the mount is never seen by the host and goes with the thread, even
/// if this process is killed in the middle of the copy.
fn fill(volumes: &Volumes, resolved: &[Resolved], c: &NewContainer<'_>) -> Result<()> {
    let wanted: Vec<&Resolved> = resolved.iter().filter(|r| r.fill).collect();
    let fill_from = |rootfs: &Path| -> Result<()> {
        for r in &wanted {
            if let Some(name) = &r.mount.name {
                volumes.fill_from_image(name, rootfs, &r.mount.destination)?;
            }
        }
        Ok(())
    };
    match c.lowers {
        _ if wanted.is_empty() => Ok(()),
        [only] => fill_from(only),
        _ => {
            let target = c.dir.join("rootfs");
            // The container's upper dir is still empty: the overlay shows the image.
            let ov = snapshot::Overlay { lowers: c.lowers.to_vec(), upper: c.dir.join("upper"), work: c.dir.join("work") };
            let in_own_namespace = || -> Result<()> {
                use nix::mount::{MsFlags, mount};
                use nix::sched::{CloneFlags, unshare};
                let sys = |step: &'static str| move |e: nix::Error| Error::io(step, "/", std::io::Error::from(e));
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).map_err(sys("entering a mount namespace of its own"))?;
                mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(sys("making the mounts private"))?;
                let guard = ov.mount(&target)?;
                let filled = fill_from(&target);
                drop(guard);
                filled
            };
            std::thread::scope(|s| s.spawn(in_own_namespace).join()).unwrap_or_else(|_| Err(Error::io("filling volumes", &target, std::io::Error::other("the copy thread panicked"))))
        }
    }
}

/// The runtime's mount for one of ours.
fn to_runtime(m: &Mount) -> Result<runtime::Mount> {
    let ro = !m.rw;
    match (m.kind, m.fstype.as_deref()) {
        (MountType::Bind, _) | (MountType::Volume, None) => Ok(runtime::bind_mount(&m.source, &m.destination, ro)),
        (MountType::Tmpfs, _) | (MountType::Volume, Some("tmpfs")) => {
            let mut options = m.options.clone();
            if ro {
                options.push("ro".into());
            }
            Ok(runtime::fs_mount("tmpfs", "tmpfs", &m.destination, &options))
        }
        // `volume create -o type=none -o o=bind -o device=/host/dir`: a bind of the device.
        (MountType::Volume, Some("none")) if m.options.iter().any(|o| o == "bind" || o == "rbind") => Ok(runtime::bind_mount(&m.source, &m.destination, ro)),
        (MountType::Volume, Some(other)) => Err(Error::option(
            "volume",
            m.name.as_deref().unwrap_or_default(),
            format!("file system type {other:?} cannot be mounted by builder's runtime (tmpfs, or type=none with o=bind)"),
        )),
    }
}

/// The recorded mounts of the container in `dir`.
pub fn of_container(dir: &Path) -> Result<Vec<Mount>> {
    Ok(mounts::load_record(dir)?)
}

/// Container `id` is being removed: reads its mounts (before its directory goes), then,
/// once `remove_dir` has removed it, lets go of its volumes and, with `remove_anonymous`,
/// removes the anonymous ones made for it.
pub(crate) fn remove_container(root: &Path, store: &ContainerStore, id: &str, remove_anonymous: bool) -> Result<()> {
    let record = mounts::load_record(&store.dir_of(id)).unwrap_or_default();
    store.remove(id)?;
    Volumes::open(root)?.forget_container(id, &record, remove_anonymous)?;
    Ok(())
}
