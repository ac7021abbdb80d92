//! `builder run` and `builder create`.

use std::process::ExitCode;

use anyhow::Context;
use container::{Containers, HealthOptions, Ran, RunOptions};

use super::{RunArgs, exit_code};

/// `--network` values: `NET` or `name=NET,alias=A,alias=B,ip=IP` (Docker's long form).
fn networks(values: &[String]) -> anyhow::Result<Vec<network::Join>> {
    let mut out = Vec::new();
    for v in values {
        if !v.contains('=') {
            out.push(network::Join { network: v.clone(), ..Default::default() });
            continue;
        }
        let mut join = network::Join::default();
        for field in v.split(',') {
            match field.split_once('=') {
                Some(("name", n)) => join.network = n.to_string(),
                Some(("alias", a)) => join.aliases.push(a.to_string()),
                Some(("ip", ip)) => join.ip = Some(ipv4("--network", ip)?),
                _ => anyhow::bail!("invalid --network {v:?}: {field:?} is not name=NETWORK, alias=NAME or ip=ADDRESS"),
            }
        }
        if join.network.is_empty() {
            anyhow::bail!("invalid --network {v:?}: name=NETWORK is missing");
        }
        out.push(join);
    }
    Ok(out)
}

/// An IPv4 address given to `flag`.
pub(crate) fn ipv4(flag: &str, value: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    value.parse().map_err(|_| anyhow::anyhow!("invalid {flag} {value:?}: not an IPv4 address"))
}

/// The container options of `run` and `create`.
fn options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let mut joins = networks(&args.network)?;
    let first = if joins.is_empty() { network::Join::default() } else { joins.remove(0) };
    Ok(RunOptions {
        image: args.image.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        name: args.name.clone(),
        env: args.env.clone(),
        env_files: args.env_file.clone(),
        workdir: args.workdir.clone(),
        volumes: args.volume.clone(),
        mounts: args.mount.clone(),
        tmpfs: args.tmpfs.clone(),
        volumes_from: args.volumes_from.clone(),
        user: args.user.clone(),
        interactive: args.interactive,
        tty: args.tty,
        network: first.network,
        network_aliases: first.aliases.into_iter().chain(args.network_alias.iter().cloned()).collect(),
        ip: match (&args.ip, first.ip) {
            (Some(ip), _) => Some(ipv4("--ip", ip)?),
            (None, ip) => ip,
        },
        extra_networks: joins,
        publish: args.publish.clone(),
        publish_all: args.publish_all,
        expose: args.expose.clone(),
        hostname: args.hostname.clone(),
        add_hosts: args.add_hosts.clone(),
        dns: args.dns.clone(),
        dns_search: args.dns_search.clone(),
        dns_options: args.dns_option.clone(),
        sysctls: args.sysctl.clone(),
        memory: args.memory.clone(),
        pids_limit: args.pids_limit,
        cpus: args.cpus,
        init: args.init,
        read_only: args.read_only,
        auto_remove: args.rm,
        detach: args.detach,
        runtime: args.runtime.clone(),
        restart: args.restart,
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        no_sig_proxy: !args.sig_proxy,
        detach_keys: args.detach_keys.as_deref().map(container::attach::parse_detach_keys).transpose()?,
        labels: args.label.clone(),
        label_files: args.label_file.clone(),
        health: HealthOptions {
            cmd: args.health_cmd.clone(),
            interval: args.health_interval.clone(),
            timeout: args.health_timeout.clone(),
            start_period: args.health_start_period.clone(),
            start_interval: args.health_start_interval.clone(),
            test: args.health_test.as_deref().map(|t| serde_json::from_str(t).map_err(|e| anyhow::anyhow!("invalid --health-test {t:?}: a JSON array of strings ({e})"))).transpose()?,
            retries: args.health_retries,
            none: args.no_healthcheck,
        },
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        ulimits: args.ulimit.clone(),
        devices: args.device.clone(),
        group_add: args.group_add.clone(),
        log_driver: args.log_driver.clone(),
        log_opts: args.log_opt.clone(),
    })
}

/// What `run` and `create` share: the container made from `opts` with the pull's progress
/// shown, and its ID in `--cidfile`, which is refused first if it exists, as Docker does
/// (another container may own it).
fn create_with_cidfile(containers: &Containers, args: &RunArgs, opts: &RunOptions) -> anyhow::Result<container::Created> {
    if let Some(path) = &args.cidfile
        && path.exists()
    {
        anyhow::bail!("container ID file found, make sure the other container isn't running or delete {}", path.display());
    }
    let progress = crate::cmd::image::progress::progress_for(false);
    let created = containers.create(opts, progress.as_ref());
    drop(progress);
    let created = created?;
    if let Some(path) = &args.cidfile {
        std::fs::write(path, &created.state.id).with_context(|| format!("writing the container ID file {}", path.display()))?;
    }
    Ok(created)
}

pub(super) fn run(containers: &Containers, args: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = options(&args)?;
    let created = create_with_cidfile(containers, &args, &opts)?;
    let detach = opts.detach;
    match containers.run(created) {
        Ok(Ran::Detached { id }) => {
            // Detached with -d prints the id; detaching from `run -it` prints nothing, as Docker.
            if detach {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ran::Exited(status)) => Ok(exit_code(status)),
        Err(e) if detach => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// `builder create`: the container as `run` would make it, recorded as Created; prints its ID.
pub(super) fn create(containers: &Containers, args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.detach {
        anyhow::bail!("create does not take -d: `builder start` runs the container in the background");
    }
    // `start` runs it under its own supervisor, as a detached container.
    let opts = RunOptions { detach: true, ..options(&args)? };
    let created = create_with_cidfile(containers, &args, &opts)?;
    println!("{}", created.state.id);
    Ok(ExitCode::SUCCESS)
}
