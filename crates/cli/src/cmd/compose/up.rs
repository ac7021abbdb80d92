//! `compose up`, `create`-like convergence, and the waits `depends_on` asks for.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use compose::Condition;
use runtime::containers::Status;

use super::engine::{self, Engine, Record};
use super::{images, logs, spec};

#[derive(Args, Debug, Default)]
pub struct UpArgs {
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub converge: Converge,
    /// Stop all containers if any container stops (foreground only).
    #[arg(long, conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Do not start the services the named ones depend on.
    #[arg(long)]
    pub no_deps: bool,
    /// Seconds to wait when stopping containers.
    #[arg(short = 't', long = "timeout")]
    pub timeout: Option<u64>,
    /// Wait for the services to be running (and healthy where they have a health check).
    #[arg(long)]
    pub wait: bool,
    /// Create the containers (and networks, volumes, images) without starting them.
    #[arg(long, conflicts_with_all = ["wait", "abort_on_container_exit"])]
    pub no_start: bool,
    /// Run this many containers of a service (SERVICE=N; overrides `scale` in the file).
    #[arg(long, value_name = "SERVICE=N")]
    pub scale: Vec<String>,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// Do not start the services the scaled ones depend on.
    #[arg(long)]
    pub no_deps: bool,
    /// SERVICE=N, one or more.
    #[arg(required = true, value_name = "SERVICE=N")]
    pub scales: Vec<String>,
}

/// How `up` and `create` bring the containers to the file: what they build and recreate.
#[derive(Args, Debug, Default)]
pub struct Converge {
    /// Build images before creating containers.
    #[arg(long)]
    pub build: bool,
    /// Do not build images, even those that are missing.
    #[arg(long, conflicts_with = "build")]
    pub no_build: bool,
    /// Recreate containers even if their configuration and image have not changed.
    #[arg(long)]
    pub force_recreate: bool,
    /// Remove containers of services that are no longer in the compose file.
    #[arg(long)]
    pub remove_orphans: bool,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub converge: Converge,
    pub services: Vec<String>,
}

pub fn run(mut e: Engine<'_>, args: UpArgs) -> anyhow::Result<ExitCode> {
    for s in &args.scale {
        let (name, n) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("--scale {s:?}: write SERVICE=N"))?;
        let n: u32 = n.parse().map_err(|_| anyhow::anyhow!("--scale {s:?}: {n:?} is not a number"))?;
        let Some(svc) = e.project.services.get_mut(name) else { bail!("--scale {s:?}: no such service: {name}") };
        svc.scale = Some(n);
    }
    let order = e.project.ordered(&args.services, !args.no_deps)?;
    orphans(&mut e, args.converge.remove_orphans)?;
    images::ensure(&e, &order, args.converge.build, args.converge.no_build)?;
    create_volumes(&e)?;
    create_networks(&e)?;
    for service in &order {
        converge(&mut e, service, args.converge.force_recreate, !args.no_start)?;
    }
    if args.no_start {
        return Ok(ExitCode::SUCCESS);
    }
    let records = e.records(&order);
    if args.wait {
        for r in &records {
            if has_check(&e, r) {
                wait_healthy(&e, r)?;
            }
        }
    }
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    logs::attach(&e, &records, args.abort_on_container_exit, args.timeout)
}

fn orphans(e: &mut Engine<'_>, remove: bool) -> anyhow::Result<()> {
    let orphans: Vec<Record> = e.state.containers.iter().filter(|r| !r.oneoff && !e.project.services.contains_key(&r.service)).cloned().collect();
    if orphans.is_empty() {
        return Ok(());
    }
    if remove {
        e.remove(&orphans, false)?;
    } else {
        let names: Vec<&str> = orphans.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "WARN Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(", ")
        );
    }
    Ok(())
}

/// Creates the project's volumes in the volume store (with Compose's labels); an external
/// one must exist.
pub fn create_volumes(e: &Engine<'_>) -> anyhow::Result<()> {
    let store = e.volumes()?;
    for (key, v) in &e.project.volumes {
        let name = v.name.clone().unwrap_or_else(|| key.clone());
        if v.external {
            store.get(&name).map_err(|_| anyhow::anyhow!("volumes.{key}: external volume {name:?} not found (create it with builder volume create {name})"))?;
            continue;
        }
        let mut labels = v.labels.clone();
        labels.insert("com.docker.compose.project".into(), e.project.name.clone());
        labels.insert("com.docker.compose.volume".into(), key.clone());
        if store.get(&name).is_err() {
            eprintln!(" Volume \"{name}\"  Creating");
        }
        let (_, created) = store.get_or_create(&name, &labels).with_context(|| format!("volumes.{key}"))?;
        if created {
            eprintln!(" Volume \"{name}\"  Created");
        }
    }
    Ok(())
}

/// Creates the project's networks (`PROJECT_default` and the file's `networks:`, with
/// Compose's labels); an external one must exist.
pub fn create_networks(e: &Engine<'_>) -> anyhow::Result<()> {
    let nets = network::Networks::open(&e.globals.root());
    for (key, n) in &e.project.networks {
        let name = n.name.clone().unwrap_or_else(|| format!("{}_{key}", e.project.name));
        if n.external {
            nets.get(&name).map_err(|_| anyhow::anyhow!("networks.{key}: external network {name:?} not found (create it with builder network create {name})"))?;
            continue;
        }
        if nets.get(&name).is_ok() {
            continue;
        }
        if let Some(d) = n.driver.as_deref().filter(|d| *d != "bridge") {
            bail!("networks.{key}.driver: only the bridge driver is supported, not {d:?}");
        }
        let mut labels = n.labels.clone();
        labels.insert("com.docker.compose.project".into(), e.project.name.clone());
        labels.insert("com.docker.compose.network".into(), key.clone());
        let pool = n.ipam.as_ref().and_then(|i| i.config.first());
        let new = network::NewNetwork {
            name: name.clone(),
            driver: None,
            subnet: pool.and_then(|c| c.subnet.clone()),
            gateway: pool.and_then(|c| c.gateway.clone()),
            internal: n.internal,
            labels,
        };
        eprintln!(" Network {name}  Creating");
        nets.create(&new).with_context(|| format!("networks.{key}"))?;
        eprintln!(" Network {name}  Created");
    }
    Ok(())
}

/// Removes the project's own networks (`down`); external ones stay.
pub fn remove_networks(e: &Engine<'_>) -> anyhow::Result<()> {
    let nets = network::Networks::open(&e.globals.root());
    for (key, n) in &e.project.networks {
        let name = n.name.clone().unwrap_or_else(|| format!("{}_{key}", e.project.name));
        let ours = nets.get(&name).is_ok_and(|n| n.labels.get("com.docker.compose.project") == Some(&e.project.name));
        if n.external || !ours {
            continue;
        }
        eprintln!(" Network {name}  Removing");
        nets.remove(&name).with_context(|| format!("networks.{key}"))?;
        eprintln!(" Network {name}  Removed");
    }
    Ok(())
}

/// The part of a service's config that decides whether its container must be recreated.
pub fn config_of(e: &Engine<'_>, service: &str) -> serde_json::Value {
    let mut s = e.project.services[service].clone();
    s.scale = None;
    s.deploy = None;
    s.depends_on.clear();
    serde_json::json!({ "service": s, "image": e.image_of(service) })
}

/// Makes the service's containers match the file: recreates those whose config or image
/// changed, starts stopped ones, adds or removes replicas; then waits as its dependents ask.
/// Makes the service's containers match the file: kept, recreated or created, and started
/// unless `start` is false (`create`, `up --no-start`).
fn converge(e: &mut Engine<'_>, service: &str, force: bool, start: bool) -> anyhow::Result<()> {
    if start {
        wait_dependencies(e, service)?;
    }
    let config = config_of(e, service);
    let image = e.image_of(service);
    let image_id = e.image_id(&image).unwrap_or_default();
    let replicas = e.project.replicas(service);
    let existing = e.records(&[service.to_string()]);
    let extra: Vec<Record> = existing.iter().filter(|r| r.number > replicas).cloned().collect();
    e.remove(&extra, true)?;
    for number in 1..=replicas {
        let current = existing.iter().find(|r| r.number == number).cloned();
        if let Some(r) = &current {
            let same = r.config == config && (image_id.is_empty() || r.image_id == image_id);
            if same && !force {
                if e.is_running(r) {
                    eprintln!(" Container {}  Running", r.name);
                } else if !start {
                    eprintln!(" Container {}  Created", r.name);
                } else {
                    eprintln!(" Container {}  Starting", r.name);
                    e.quiet(&["start".into(), r.id.clone()])?;
                    eprintln!(" Container {}  Started", r.name);
                }
                continue;
            }
            eprintln!(" Container {}  Recreate", r.name);
            e.remove(std::slice::from_ref(r), true)?;
        }
        create(e, service, number, &config, &image_id, start)?;
    }
    Ok(())
}

fn create(e: &mut Engine<'_>, service: &str, number: u32, config: &serde_json::Value, image_id: &str, start: bool) -> anyhow::Result<()> {
    let name = e.container_name(service, number);
    eprintln!(" Container {name}  Creating");
    let mut spec = spec::run_args(e, service, &name, None, true)?;
    let hash = engine::config_hash(config);
    let labels = engine::labels(&e.project, service, number, false, &hash);
    if !start {
        // `builder create` makes the very container `run -d` would, without starting it.
        if let Some(i) = spec.args.iter().position(|a| a == "-d") {
            spec.args.remove(i);
        }
    }
    let mut full = vec![if start { "run" } else { "create" }.to_string()];
    // Compose's labels are the container's own (`ps --filter label=com.docker.compose.service=web`).
    full.extend(super::spec::label_args(&labels));
    full.extend(spec.args);
    let out = e.quiet(&full)?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = if id.is_empty() { e.store()?.find(&name)?.id } else { id };
    let image_id = if image_id.is_empty() { e.image_id(&e.image_of(service)).unwrap_or_default() } else { image_id.to_string() };
    e.state.containers.push(Record { name: name.clone(), id, service: service.to_string(), number, oneoff: false, config: config.clone(), image_id, labels });
    e.save()?;
    eprintln!(" Container {name}  {}", if start { "Started" } else { "Created" });
    Ok(())
}

/// Whether the container runs a health check (the service's or its image's).
fn has_check(e: &Engine<'_>, r: &Record) -> bool {
    let Ok(store) = e.store() else { return false };
    container::Settings::load(&store.dir_of(&r.id)).is_ok_and(|s| s.config.healthcheck.is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE")))
}

/// Waits for what `service` depends on: started (already, by the order), healthy, or exited 0.
fn wait_dependencies(e: &Engine<'_>, service: &str) -> anyhow::Result<()> {
    let deps = e.project.services[service].depends_on.clone();
    for (dep, d) in deps {
        if !e.project.services.contains_key(&dep) {
            continue;
        }
        let records = e.records(std::slice::from_ref(&dep));
        for r in &records {
            match d.condition {
                Condition::ServiceStarted => {}
                Condition::ServiceHealthy => {
                    eprintln!(" Container {}  Waiting", r.name);
                    wait_healthy(e, r).with_context(|| format!("dependency failed to start for service {service}"))?;
                    eprintln!(" Container {}  Healthy", r.name);
                }
                Condition::ServiceCompletedSuccessfully => {
                    eprintln!(" Container {}  Waiting", r.name);
                    let code = wait_exited(e, r);
                    if code != 0 {
                        bail!("service {dep:?} didn't complete successfully: exit {code}");
                    }
                    eprintln!(" Container {}  Exited", r.name);
                }
            }
        }
    }
    Ok(())
}

fn wait_exited(e: &Engine<'_>, r: &Record) -> i32 {
    loop {
        match e.container(r) {
            Some(s) if s.status == Status::Running || s.status == Status::Created => std::thread::sleep(Duration::from_millis(50)),
            Some(s) => return s.exit_code.unwrap_or(0),
            None => return 1,
        }
    }
}

/// Waits until the container's health check (the service's `healthcheck:` or the image's
/// HEALTHCHECK, run by the container's supervisor) reports it healthy; unhealthy, or an exit
/// first, is an error.
pub fn wait_healthy(e: &Engine<'_>, r: &Record) -> anyhow::Result<()> {
    let store = e.store()?;
    let dir = store.dir_of(&r.id);
    if !has_check(e, r) {
        bail!("container {} has no healthcheck configured (services.{}.healthcheck, or a HEALTHCHECK in its image), so it can never be healthy", r.name, r.service);
    }
    loop {
        match e.container(r) {
            Some(s) if s.status == Status::Running => {}
            _ => bail!("container {} exited before it became healthy", r.name),
        }
        match container::health::Health::load(&dir) {
            Some(h) if h.status == container::health::HealthStatus::Healthy => return Ok(()),
            Some(h) if h.status == container::health::HealthStatus::Unhealthy => {
                bail!("container {} is unhealthy: its health check failed {} times in a row (last output: {:?})", r.name, h.failing_streak, h.log.last().map(|p| p.output.trim()).unwrap_or(""))
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
