//! `builder run`.

use std::process::ExitCode;

use container::{Containers, HealthOptions, Ran, RunOptions};

use super::{RunArgs, exit_code};

/// `--network` values: `NET` or `name=NET,alias=A,alias=B` (Docker's long form).
fn networks(values: &[String]) -> anyhow::Result<Vec<network::Join>> {
    let mut out = Vec::new();
    for v in values {
        if !v.contains('=') {
            out.push(network::Join { network: v.clone(), aliases: Vec::new() });
            continue;
        }
        let mut join = network::Join::default();
        for field in v.split(',') {
            match field.split_once('=') {
                Some(("name", n)) => join.network = n.to_string(),
                Some(("alias", a)) => join.aliases.push(a.to_string()),
                _ => anyhow::bail!("invalid --network {v:?}: {field:?} is not name=NETWORK or alias=NAME"),
            }
        }
        if join.network.is_empty() {
            anyhow::bail!("invalid --network {v:?}: name=NETWORK is missing");
        }
        out.push(join);
    }
    Ok(out)
}

pub(super) fn run(containers: &Containers, args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut joins = networks(&args.network)?;
    let first = if joins.is_empty() { network::Join::default() } else { joins.remove(0) };
    let opts = RunOptions {
        image: args.image,
        command: args.command,
        entrypoint: args.entrypoint,
        name: args.name,
        env: args.env,
        env_files: args.env_file,
        workdir: args.workdir,
        volumes: args.volume,
        mounts: args.mount,
        tmpfs: args.tmpfs,
        volumes_from: args.volumes_from,
        user: args.user,
        interactive: args.interactive,
        tty: args.tty,
        network: first.network,
        network_aliases: first.aliases.into_iter().chain(args.network_alias).collect(),
        extra_networks: joins,
        publish: args.publish,
        publish_all: args.publish_all,
        hostname: args.hostname,
        add_hosts: args.add_hosts,
        memory: args.memory,
        pids_limit: args.pids_limit,
        cpus: args.cpus,
        init: args.init,
        read_only: args.read_only,
        auto_remove: args.rm,
        detach: args.detach,
        runtime: args.runtime,
        restart: args.restart,
        labels: args.label,
        label_files: args.label_file,
        health: HealthOptions {
            cmd: args.health_cmd,
            interval: args.health_interval,
            timeout: args.health_timeout,
            start_period: args.health_start_period,
            start_interval: args.health_start_interval,
            test: args.health_test.as_deref().map(|t| serde_json::from_str(t).map_err(|e| anyhow::anyhow!("invalid --health-test {t:?}: a JSON array of strings ({e})"))).transpose()?,
            retries: args.health_retries,
            none: args.no_healthcheck,
        },
        privileged: args.privileged,
        cap_add: args.cap_add,
        cap_drop: args.cap_drop,
        ulimits: args.ulimit,
        devices: args.device,
        group_add: args.group_add,
    };
    let progress = crate::cmd::image::progress::progress_for(false);
    let created = containers.create(&opts, progress.as_ref());
    drop(progress);
    let detach = opts.detach;
    match containers.run(created?) {
        Ok(Ran::Detached { id }) => {
            println!("{id}");
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
