//! The registry commands: pull, push, login, logout.

use std::process::ExitCode;

use anyhow::{Context, bail};
use oci::{Reference, Store};

use super::{parse_ref, progress};
use crate::Globals;

fn client(globals: &Globals, chunk_size_mib: Option<u64>) -> anyhow::Result<registry::Client> {
    let options = registry::ClientOptions {
        insecure_registries: globals.insecure_registries.clone(),
        chunk_size: chunk_size_mib.map(|m| m * 1024 * 1024),
        ..Default::default()
    };
    Ok(registry::Client::new(options)?)
}

/// Fetches the layers `image` names but the store lacks (results of an imported build cache)
/// from the registries the store recorded for them.
pub(super) fn fetch_missing_layers(globals: &Globals, store: &Store, image: &oci::LocalImage) -> anyhow::Result<()> {
    if store.missing_layers(image)?.is_empty() {
        return Ok(());
    }
    client(globals, None)?.fetch_missing_layers(store, image, &registry::NoProgress)?;
    Ok(())
}

pub(super) fn pull(globals: &Globals, store: &Store, quiet: bool, platform: Option<&str>, reference: &str) -> anyhow::Result<ExitCode> {
    // Parse first: a bad reference is rejected before any network call.
    let reference = parse_ref(reference)?;
    let client = client(globals, None)?;
    let progress = progress::progress_for(quiet);
    let pulled = client.pull(&reference, platform, store, progress.as_ref());
    drop(progress);
    progress::end(quiet);
    let pulled = pulled.with_context(|| format!("pulling {}", reference.familiar()))?;
    events::record(store.root(), "image", "pull", &reference.familiar(), &[("name", &reference.familiar())]);
    if quiet {
        println!("{reference}");
    } else {
        eprintln!("Status: Downloaded {} ({} bytes)", reference.familiar(), pulled.downloaded_bytes);
        println!("{reference}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn push(globals: &Globals, store: &Store, quiet: bool, chunk_size: Option<u64>, reference: &str) -> anyhow::Result<ExitCode> {
    let reference = parse_ref(reference)?;
    // Like docker, push the local image of the same name.
    store.image(&reference)?;
    let client = client(globals, chunk_size)?;
    let progress = progress::progress_for(quiet);
    let digest = client.push(store, &reference, &reference, progress.as_ref());
    drop(progress);
    progress::end(quiet);
    let digest = digest.with_context(|| format!("pushing {}", reference.familiar()))?;
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

/// `push` on a `builder serve`: the server pushes the image in its own store.
pub(super) fn push_remote(globals: &Globals, addr: &str, quiet: bool, reference: &str) -> anyhow::Result<ExitCode> {
    let reference = parse_ref(reference)?;
    let remote = api::client::Remote::connect(&api::client::ClientConfig::from_env(addr)?)?;
    let pushed = remote
        .push(&reference.to_string(), None, &globals.insecure_registries, |note| {
            if !quiet {
                eprintln!("{note}");
            }
        })
        .with_context(|| format!("pushing {}", reference.familiar()))?;
    println!("{}", pushed.digest);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn login(
    globals: &Globals,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    registry: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let registry = registry_host(registry)?;
    // Like docker login: what the flags do not give is asked for, the password without echo.
    let username = match username {
        Some(u) => u,
        None if password_stdin => bail!("--password-stdin needs --username: builder login -u USER --password-stdin {registry}"),
        None => prompt("Username: ", false)?,
    };
    let password = match (password, password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut p).context("reading the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ", true)?,
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let client = client(globals, None)?;
    let creds = registry::Credentials { username, secret: password };
    client.login(&registry, &creds).with_context(|| format!("logging in to {registry}"))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Prints `label` and reads one line of standard input; with `hide`, a terminal does not echo it.
fn prompt(label: &str, hide: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{BufRead, Write};
    use std::os::fd::AsFd;
    print!("{label}");
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    let saved = if hide { tcgetattr(stdin.as_fd()).ok() } else { None };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
        println!();
    }
    let what = label.trim_end_matches([':', ' ']).to_lowercase();
    if read.with_context(|| format!("reading the {what} from standard input"))? == 0 {
        bail!("no {what} given: type it at the prompt, or pass it with --{}", if hide { "password-stdin" } else { "username" });
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub(super) fn logout(globals: &Globals, registry: Option<&str>) -> anyhow::Result<ExitCode> {
    let registry = registry_host(registry)?;
    let client = client(globals, None)?;
    if client.logout(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A registry host from `login`'s argument (`host:port`, `https://host/`, or nothing for Docker Hub).
fn registry_host(arg: Option<&str>) -> anyhow::Result<String> {
    let Some(arg) = arg else { return Ok("docker.io".into()) };
    let host = arg.strip_prefix("https://").or_else(|| arg.strip_prefix("http://")).unwrap_or(arg);
    let host = host.split('/').next().unwrap_or(host);
    let r = Reference::parse(&format!("{host}/x")).with_context(|| format!("invalid registry {arg:?}"))?;
    if r.registry() == "docker.io" && host != "docker.io" && !host.contains("docker.io") {
        bail!("invalid registry {arg:?}: expected HOST[:PORT]");
    }
    Ok(r.registry().to_string())
}
