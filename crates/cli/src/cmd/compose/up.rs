//! `compose up`, `create`-like convergence, and the waits `depends_on` asks for.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use compose::{Condition, Healthcheck};
use runtime::containers::Status;

use super::engine::{self, Engine, Record};
use super::{images, logs, spec};

#[derive(Args, Debug, Default)]
pub struct UpArgs {
    /// Run in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Build images before starting containers.
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
    /// Run this many containers of a service (SERVICE=N; overrides `scale` in the file).
    #[arg(long, value_name = "SERVICE=N")]
    pub scale: Vec<String>,
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
    orphans(&mut e, args.remove_orphans)?;
    images::ensure(&e, &order, args.build, args.no_build)?;
    create_volumes(&e)?;
    create_networks(&e)?;
    for service in &order {
        converge(&mut e, service, args.force_recreate)?;
    }
    let records = e.records(&order);
    if args.wait {
        for r in &records {
            if e.project.services[&r.service].healthcheck.as_ref().is_some_and(has_test) {
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
fn converge(e: &mut Engine<'_>, service: &str, force: bool) -> anyhow::Result<()> {
    wait_dependencies(e, service)?;
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
        create(e, service, number, &config, &image_id)?;
    }
    Ok(())
}

fn create(e: &mut Engine<'_>, service: &str, number: u32, config: &serde_json::Value, image_id: &str) -> anyhow::Result<()> {
    let name = e.container_name(service, number);
    eprintln!(" Container {name}  Creating");
    let spec = spec::run_args(e, service, &name, None, true)?;
    let mut full = vec!["run".to_string()];
    full.extend(spec.args);
    let out = e.quiet(&full)?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let id = if id.is_empty() { e.store()?.find(&name)?.id } else { id };
    let image_id = if image_id.is_empty() { e.image_id(&e.image_of(service)).unwrap_or_default() } else { image_id.to_string() };
    let hash = engine::config_hash(config);
    let labels = engine::labels(&e.project, service, number, false, &hash);
    e.state.containers.push(Record { name: name.clone(), id, service: service.to_string(), number, oneoff: false, config: config.clone(), image_id, labels });
    e.save()?;
    eprintln!(" Container {name}  Started");
    Ok(())
}

fn has_test(h: &Healthcheck) -> bool {
    !h.disable && !h.test.is_empty() && h.test[0] != "NONE"
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

/// Runs the service's health check in the container until it passes, as Docker does: a probe
/// every `interval` (`start_interval` during `start_period`), each limited to `timeout`;
/// `retries` failures in a row after the start period make the container unhealthy.
pub fn wait_healthy(e: &Engine<'_>, r: &Record) -> anyhow::Result<()> {
    let Some(h) = e.project.services[&r.service].healthcheck.clone().filter(has_test) else {
        bail!("container {} has no healthcheck configured (services.{}.healthcheck), so it can never be healthy", r.name, r.service);
    };
    let interval = h.interval.unwrap_or(Duration::from_secs(30));
    let timeout = h.timeout.unwrap_or(Duration::from_secs(30));
    let retries = h.retries.unwrap_or(3);
    let start_period = h.start_period.unwrap_or_default();
    let start_interval = h.start_interval.unwrap_or(Duration::from_secs(5)).min(interval);
    let probe: Vec<String> = match h.test[0].as_str() {
        "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
        _ => h.test[1..].to_vec(),
    };
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let in_start = started.elapsed() < start_period;
        std::thread::sleep(if in_start { start_interval } else { interval });
        match e.container(r) {
            Some(s) if s.status == Status::Running => {}
            _ => bail!("container {} exited before it became healthy", r.name),
        }
        if run_probe(e, r, &probe, timeout)? {
            return Ok(());
        }
        if started.elapsed() >= start_period {
            failures += 1;
            if failures >= retries {
                bail!("container {} is unhealthy: its health check failed {failures} times in a row", r.name);
            }
        }
    }
}

fn run_probe(e: &Engine<'_>, r: &Record, probe: &[String], timeout: Duration) -> anyhow::Result<bool> {
    let mut cmd = e.builder();
    cmd.arg("exec").arg(&r.id).args(probe).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().context("running the health check")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
