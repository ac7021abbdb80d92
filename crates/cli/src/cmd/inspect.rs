//! `builder inspect` (`container inspect`, `image inspect`): low-level information as Docker
//! prints it, a JSON array of objects, or one `--format` Go template run per object. A name
//! is looked up as a container first and then as an image, as `docker inspect` does, unless
//! `--type` says which.

use std::process::ExitCode;

use anyhow::bail;
use container::{ContainerState, Containers, Settings, Status};

use super::format::Format;

/// What `--type` restricts the lookup to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Container,
    Image,
}

/// Prints the objects named by `names`; a name that is nothing of the kind is an error after
/// the others are printed (exit code 1), with Docker's `No such …` wording.
pub fn inspect(containers: &Containers, store: &oci::Store, kind: Option<Kind>, format: Option<&str>, size: bool, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let as_container = || containers.find(name).ok().map(|s| container_json(containers, &s, size));
        let as_image = || store.find_image(name).ok().map(|(_, image)| super::image::inspect_json(store, &image));
        let object = match kind {
            Some(Kind::Container) => as_container(),
            Some(Kind::Image) => as_image().transpose()?,
            None => match as_container() {
                Some(c) => Some(c),
                None => as_image().transpose()?,
            },
        };
        match object {
            Some(o) => found.push(o),
            None => missing.push(format!(
                "No such {}: {name}",
                match kind {
                    Some(Kind::Container) => "container",
                    Some(Kind::Image) => "image",
                    None => "object",
                }
            )),
        }
    }
    match format {
        // Docker prints `[]` when nothing was found, and the error after it.
        None => println!("{}", serde_json::to_string_pretty(&found)?),
        Some(f) => {
            let format = match f.trim() {
                "json" => Format::parse(Some("{{json .}}"), "")?,
                _ => Format::parse(Some(f), "")?,
            };
            match format {
                Format::Rows(_) => format.write(&mut std::io::stdout().lock(), &[], &found)?,
                Format::Table(_) => bail!("--format {f:?}: inspect prints no table (use a template such as '{{{{.Name}}}}' or json)"),
            }
        }
    }
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("Error: {m}");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker never-set times are Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The `docker container inspect` shape of one container.
pub fn container_json(containers: &Containers, s: &ContainerState, size: bool) -> serde_json::Value {
    let dir = containers.dir_of(&s.id);
    let settings = Settings::load(&dir).unwrap_or_default();
    let running = s.status == Status::Running;
    let mut state = serde_json::json!({
        "Status": match s.status { Status::Created => "created", Status::Running if s.paused => "paused", Status::Running => "running", Status::Exited => "exited" },
        "Running": running,
        "Paused": s.paused && running,
        "Restarting": false,
        "OOMKilled": s.oom_killed,
        "Dead": false,
        "Pid": s.pid.filter(|_| running).unwrap_or(0),
        "ExitCode": s.exit_code.unwrap_or(0),
        "Error": "",
        "StartedAt": s.started_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
        "FinishedAt": s.finished_at.clone().unwrap_or_else(|| ZERO_TIME.into()),
    });
    if let Some(h) = container::health::Health::load(&dir).filter(|_| settings.config.healthcheck.as_ref().is_some_and(|h| h.test.first().is_some_and(|t| t != "NONE"))) {
        state["Health"] = serde_json::to_value(h).unwrap_or_default();
    }
    let mounts: Vec<serde_json::Value> = container::mounts::of_container(&dir).unwrap_or_default().iter().map(|m| m.inspect_json()).collect();
    let mut ports = serde_json::Map::new();
    for p in settings.config.exposed_ports.keys() {
        ports.insert(p.clone(), serde_json::Value::Null);
    }
    for p in containers.ports(s) {
        let key = format!("{}/{}", p.container_port, p.proto.as_str());
        let entry = ports.entry(key).or_insert(serde_json::Value::Null);
        if !entry.is_array() {
            *entry = serde_json::json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}));
        }
    }
    let network = network_settings(containers, s, &settings, ports);
    let mut v = serde_json::json!({
        "Id": s.id,
        "Created": s.created,
        "Path": settings.path,
        "Args": settings.args,
        "State": state,
        "Image": s.image_id,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": dir.join("container.log"),
        "Name": format!("/{}", s.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config(&settings),
        "GraphDriver": {
            "Data": {
                "LowerDir": s.lowers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":"),
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": dir.join("rootfs"),
            },
            "Name": "overlay",
        },
        "Mounts": mounts,
        "Config": settings.config,
        "NetworkSettings": network,
    });
    if size {
        let rw = crate::cmd::container::dir_size(&dir.join("upper"));
        v["SizeRw"] = rw.into();
        v["SizeRootFs"] = (rw + s.lowers.iter().map(|l| crate::cmd::container::dir_size(l)).sum::<u64>()).into();
    }
    v
}

/// Docker's values of the `HostConfig` fields builder has no flag for.
const HOST_CONFIG_DEFAULTS: &str = r#"{
    "VolumeDriver": "", "ConsoleSize": [0, 0], "CgroupnsMode": "host", "Dns": [], "DnsOptions": [], "DnsSearch": [],
    "IpcMode": "private", "Cgroup": "", "Links": null, "OomScoreAdj": 0, "PidMode": "", "SecurityOpt": null,
    "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "builder", "Isolation": "", "CpuShares": 0,
    "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
    "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "DeviceCgroupRules": null, "DeviceRequests": null,
    "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": null,
    "OomKillDisable": false, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0
}"#;

/// `HostConfig` with the fields builder has no flag for at Docker's values, so a reader of
/// Docker's shape finds every key.
fn host_config(settings: &Settings) -> serde_json::Value {
    let mut v = serde_json::to_value(&settings.host_config).unwrap_or_default();
    let privileged = settings.host_config.privileged;
    let mut defaults: serde_json::Map<String, serde_json::Value> = serde_json::from_str(HOST_CONFIG_DEFAULTS).unwrap_or_default();
    defaults.insert("MaskedPaths".into(), if privileged { serde_json::Value::Null } else { serde_json::json!(runtime::spec::MASKED_PATHS) });
    defaults.insert("ReadonlyPaths".into(), if privileged { serde_json::Value::Null } else { serde_json::json!(runtime::spec::READONLY_PATHS) });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in &defaults {
            obj.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    v
}

fn network_settings(containers: &Containers, s: &ContainerState, settings: &Settings, ports: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let mode = settings.host_config.network_mode.clone();
    let record = network::record(containers.root(), &s.id).filter(|_| s.status == Status::Running);
    let entry = |e: Option<&network::Endpoint>| {
        let (ip, gateway, prefix) = e.map_or((String::new(), String::new(), 0), |e| (e.ip.to_string(), e.gateway.to_string(), e.prefix));
        let aliases = e.map(|e| serde_json::json!(e.aliases)).unwrap_or(serde_json::Value::Null);
        let id = e.map(|e| e.network_id.clone()).unwrap_or_default();
        serde_json::json!({
            "IPAMConfig": null, "Links": null, "Aliases": aliases, "MacAddress": "", "NetworkID": id, "EndpointID": "",
            "Gateway": gateway, "IPAddress": ip, "IPPrefixLen": prefix, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DriverOpts": null, "DNSNames": null,
        })
    };
    let mut networks = serde_json::Map::new();
    match &record {
        // Every network it is on now (`network connect` included).
        Some(r) => {
            for e in &r.endpoints {
                networks.insert(e.network.clone(), entry(Some(e)));
            }
        }
        None if !mode.is_empty() => {
            networks.insert(if mode == "default" { network::BRIDGE.to_string() } else { mode.clone() }, entry(None));
        }
        None => {}
    }
    // As Docker: the top-level address is the default bridge's.
    let bridge = record.as_ref().and_then(|r| r.endpoints.iter().find(|e| e.network == network::BRIDGE));
    let (ip, gateway, prefix) = bridge.map_or((String::new(), String::new(), 0), |e| (e.ip.to_string(), e.gateway.to_string(), e.prefix));
    let sandbox_key = String::new();
    serde_json::json!({
        "Bridge": "", "SandboxID": "", "SandboxKey": sandbox_key, "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null, "EndpointID": "",
        "Gateway": gateway, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": ip,
        "IPPrefixLen": prefix, "IPv6Gateway": "", "MacAddress": "", "Networks": networks,
    })
}
