//! The images of a project: `compose build` (with `builder build`, the same engine), `pull`,
//! `push`, `images`, and what `up` does before it creates containers.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::engine::Engine;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Do not use cache when building.
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of the base images.
    #[arg(long)]
    pull: bool,
    /// Set build-time variables (override the file's `build.args`).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Don't print anything to stdout.
    #[arg(short, long)]
    quiet: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Pull without printing progress.
    #[arg(short, long)]
    quiet: bool,
    /// Ignore images that cannot be pulled.
    #[arg(long)]
    ignore_pull_failures: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push what can be pushed, ignoring failures.
    #[arg(long)]
    ignore_push_failures: bool,
    services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only display image IDs.
    #[arg(short, long)]
    quiet: bool,
    services: Vec<String>,
}

fn selected(e: &Engine<'_>, services: &[String]) -> anyhow::Result<Vec<String>> {
    Ok(e.project.ordered(services, false)?)
}

/// Builds a service's image with `builder build` (context, dockerfile, args, target, labels,
/// cache_from/cache_to), tagged with the service's image name.
fn build_one(e: &Engine<'_>, service: &str, extra: &[String], no_cache: bool, pull: bool, quiet: bool) -> anyhow::Result<()> {
    let Some(b) = e.project.services[service].build.clone() else { return Ok(()) };
    let image = e.image_of(service);
    let mut a: Vec<String> = vec!["build".into(), "-t".into(), image.clone()];
    if let Some(f) = &b.dockerfile {
        let path = std::path::Path::new(&b.context).join(f);
        a.push("-f".into());
        a.push(path.display().to_string());
    }
    for (k, v) in &b.args {
        match v {
            Some(v) => a.push(format!("--build-arg={k}={v}")),
            // An arg without a value takes it from the environment, or is left out.
            None => match e.project.variables.get(k) {
                Some(v) => a.push(format!("--build-arg={k}={v}")),
                None => continue,
            },
        }
    }
    for x in extra {
        a.push(format!("--build-arg={x}"));
    }
    if let Some(t) = &b.target {
        a.push("--target".into());
        a.push(t.clone());
    }
    for (k, v) in &b.labels {
        a.push(format!("--label={k}={v}"));
    }
    for c in &b.cache_from {
        a.push(format!("--cache-from={c}"));
    }
    for c in &b.cache_to {
        a.push(format!("--cache-to={c}"));
    }
    if no_cache {
        a.push("--no-cache".into());
    }
    if pull {
        a.push("--pull".into());
    }
    if quiet {
        a.push("-q".into());
    }
    a.push(b.context.clone());
    eprintln!(" Service {service}  Building");
    let code = e.attached(&a)?;
    if code != 0 {
        bail!("failed to build service {service:?} (builder build exited with {code})");
    }
    eprintln!(" Service {service}  Built");
    Ok(())
}

/// What `up` does first: build services with `build:` (always with `--build`, else when the
/// image is missing), and pull the images of the others that are missing.
pub fn ensure(e: &Engine<'_>, services: &[String], build: bool, no_build: bool) -> anyhow::Result<()> {
    for s in services {
        let svc = &e.project.services[s];
        let image = e.image_of(s);
        let present = e.image_id(&image).is_some();
        if svc.build.is_some() && !no_build && (build || !present) {
            build_one(e, s, &[], false, false, false)?;
        } else if !present {
            if svc.build.is_some() && no_build {
                bail!("service {s:?} has no image {image:?} and --no-build was given");
            }
            eprintln!(" Image {image}  Pulling");
            let code = e.attached(&["pull".into(), "-q".into(), image.clone()])?;
            if code != 0 {
                bail!("pulling the image {image:?} of service {s:?} failed");
            }
            eprintln!(" Image {image}  Pulled");
        }
    }
    Ok(())
}

pub fn build(e: Engine<'_>, args: BuildArgs) -> anyhow::Result<ExitCode> {
    for s in selected(&e, &args.services)? {
        build_one(&e, &s, &args.build_args, args.no_cache, args.pull, args.quiet)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pull(e: Engine<'_>, args: PullArgs) -> anyhow::Result<ExitCode> {
    for s in selected(&e, &args.services)? {
        let svc = &e.project.services[&s];
        // A service that is built and has no `image:` has nothing to pull.
        let Some(image) = svc.image.clone() else { continue };
        if !args.quiet {
            eprintln!(" {s} Pulling");
        }
        let code = e.attached(&["pull".into(), "-q".into(), image.clone()])?;
        if code != 0 && !(args.ignore_pull_failures || svc.build.is_some()) {
            bail!("pulling {image:?} for service {s:?} failed");
        }
        if !args.quiet && code == 0 {
            eprintln!(" {s} Pulled");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(e: Engine<'_>, args: PushArgs) -> anyhow::Result<ExitCode> {
    for s in selected(&e, &args.services)? {
        let svc = &e.project.services[&s];
        // Compose pushes the images it builds, under their `image:` name.
        let (Some(_), Some(image)) = (&svc.build, svc.image.clone()) else { continue };
        eprintln!(" Pushing {s}: {image}");
        let code = e.attached(&["push".into(), image.clone()])?;
        if code != 0 && !args.ignore_push_failures {
            bail!("pushing {image:?} for service {s:?} failed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn images(e: Engine<'_>, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let records = e.records(&args.services);
    let mut rows = vec![["CONTAINER".to_string(), "REPOSITORY".into(), "TAG".into(), "IMAGE ID".into()]];
    for r in &records {
        let image = e.container(r).map(|s| s.image).unwrap_or_else(|| e.image_of(&r.service));
        let id = r.image_id.strip_prefix("sha256:").unwrap_or(&r.image_id).chars().take(12).collect::<String>();
        if args.quiet {
            println!("{id}");
            continue;
        }
        let (repo, tag) = split_tag(&image);
        rows.push([r.name.clone(), repo, tag, id]);
    }
    if !args.quiet {
        super::ps::print_table(&rows);
    }
    Ok(ExitCode::SUCCESS)
}

fn split_tag(image: &str) -> (String, String) {
    let (name, digest) = image.split_once('@').map(|(n, d)| (n, Some(d))).unwrap_or((image, None));
    if let Some(d) = digest {
        return (name.to_string(), d.to_string());
    }
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "latest".to_string()),
    }
}
