//! Read-only merged views of a snapshot (its layers stacked), for COPY to read from and to
//! look at the destination (does `/app` exist? who is `app` in /etc/passwd?).
//!
//! One layer is used as is; several are stacked with a read-only overlay mount (lower dirs
//! only) that is unmounted when the view is dropped. The build runs in its own mount namespace
//! (see [`enter_private_mount_namespace`]), so a killed build leaves no mounts behind.

use std::path::{Path, PathBuf};

use crate::error::{Result, SolveError};

pub struct View {
    path: PathBuf,
    mounted: bool,
    /// Keeps the empty directory of an empty view alive.
    _empty: Option<tempfile::TempDir>,
}

impl View {
    /// A view of `layers` (absolute directories, bottom first). `target` is an empty directory
    /// the overlay is mounted on when needed.
    pub fn open(layers: &[PathBuf], target: &Path) -> Result<View> {
        match layers.len() {
            0 => {
                let d = tempfile::tempdir_in(target.parent().unwrap_or(Path::new("/tmp"))).map_err(SolveError::io("create empty view", target))?;
                Ok(View { path: d.path().to_path_buf(), mounted: false, _empty: Some(d) })
            }
            1 => Ok(View { path: layers[0].clone(), mounted: false, _empty: None }),
            _ => {
                std::fs::create_dir_all(target).map_err(SolveError::io("create", target))?;
                let lowers: Vec<String> = layers.iter().rev().map(|p| escape_overlay_path(p)).collect();
                let data = format!("lowerdir={}", lowers.join(":"));
                nix::mount::mount(Some("overlay"), target, Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(data.as_str()))
                    .map_err(|e| SolveError::Io { op: "mount read-only overlay on", path: target.to_path_buf(), source: e.into() })?;
                Ok(View { path: target.to_path_buf(), mounted: true, _empty: None })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Overlay separates lower dirs with `:` and options with `,`; both are escaped with `\`.
pub fn escape_overlay_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Moves this process into a private mount namespace, so every mount the build makes is
/// invisible to the host and disappears with the process, even after `kill -9`.
/// Must be called while the process has a single thread.
pub fn enter_private_mount_namespace() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| SolveError::Other(format!("creating a private mount namespace for the build: {e}")))?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| SolveError::Other(format!("making mounts private: {e}")))?;
    Ok(())
}
