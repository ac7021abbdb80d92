//! Bundle files: /etc/hosts, /etc/resolv.conf and /etc/hostname provided like Docker
//! (files in the bundle, bind-mounted over the image's), and config.json for
//! external runtimes.

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::spec::bind_mount;

const ETC_FILES: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

/// `spec` plus bind mounts of hosts/resolv.conf/hostname files written into `bundle`,
/// unless the spec already mounts something there.
pub fn with_etc_files(bundle: &Path, spec: &Spec) -> Result<Spec> {
    let ours = |dest: &str| bundle.join(dest.trim_start_matches("/etc/"));
    // A mount of the user's at one of these paths wins; our own (an earlier call) is rewritten,
    // since the network may have changed what goes in (the address, the name servers).
    let mounted = |dest: &str| spec.mounts().iter().flatten().any(|m| m.destination() == Path::new(dest) && m.source().as_deref() != Some(ours(dest).as_path()));
    let ours_mounted = |dest: &str| spec.mounts().iter().flatten().any(|m| m.destination() == Path::new(dest) && m.source().as_deref() == Some(ours(dest).as_path()));
    if ETC_FILES.iter().all(|f| mounted(f)) {
        return Ok(spec.clone());
    }
    let hostname = spec.hostname().clone().unwrap_or_else(|| "builder".into());
    let own_network = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network));
    let extra = spec.annotations().as_ref().and_then(|a| a.get(crate::spec::ANNOTATION_EXTRA_HOSTS)).cloned().unwrap_or_default();
    let hosts = if own_network {
        // Docker's file for a network namespace of its own; the hostname on the container's
        // address when it has one (a bridge network puts that line in `extra`), else on loopback.
        let named = extra.lines().any(|l| l.split_whitespace().skip(1).any(|n| n == hostname));
        let own = if named { String::new() } else { format!("127.0.0.1\t{hostname}\n") };
        format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n{own}")
    } else {
        // Host network: the host's names, plus our hostname, as Docker does.
        let host = std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| "127.0.0.1\tlocalhost\n".into());
        format!("{}{}127.0.0.1\t{hostname}\n", host, if host.ends_with('\n') || host.is_empty() { "" } else { "\n" })
    };
    let hosts = hosts + &extra;
    // The network's choice when it made one (see the network crate), else the host's file.
    let resolv = match spec.annotations().as_ref().and_then(|a| a.get(crate::spec::ANNOTATION_RESOLV_CONF)) {
        Some(r) => r.clone(),
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let mut spec = spec.clone();
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (dest, body) in [("/etc/hosts", hosts), ("/etc/resolv.conf", resolv), ("/etc/hostname", format!("{hostname}\n"))] {
        if mounted(dest) {
            continue;
        }
        let file = ours(dest);
        write_if_changed(&file, &body)?;
        if !ours_mounted(dest) {
            mounts.push(bind_mount(&file, dest, false));
        }
    }
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

fn write_if_changed(path: &Path, body: &str) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(old) if old == body => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A new bundle: nobody reads the file before the container starts, so a
            // direct write is as safe as tmp + rename, and cheaper.
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                return f.write_all(body.as_bytes()).map_err(|e| Error::io("writing", path, e));
            }
        }
        _ => {}
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, body).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))
}

/// Writes `spec` (with the /etc files) as `bundle/config.json`, for `runc run` and friends.
pub fn write_bundle(bundle: &Path, spec: &Spec) -> Result<Spec> {
    let spec = with_etc_files(bundle, spec)?;
    let path = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let tmp = bundle.join(".config.json.tmp");
    std::fs::write(&tmp, json).map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into place", &path, e))?;
    Ok(spec)
}

/// Reads `bundle/config.json`.
pub fn read_bundle(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::InvalidSpec(format!("{}: {e}", path.display())))
}
