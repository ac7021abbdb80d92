//! `builder network create / ls / inspect / rm / prune / connect / disconnect`: the networks
//! of `--root`, as `docker network` shows them. The networks themselves are the `network`
//! crate; connecting a container goes through the `container` crate.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use network::{Network, Networks, NewNetwork};

use crate::Globals;
use crate::cmd::format::Format;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a bridge network; prints its id.
    Create {
        /// Network driver (only "bridge").
        #[arg(short, long)]
        driver: Option<String>,
        /// Subnet in CIDR form (default: a free /16 or /20 from Docker's pools).
        #[arg(long)]
        subnet: Option<String>,
        /// The gateway (the host's address on the network; default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// No route out of the network and no NAT.
        #[arg(long)]
        internal: bool,
        /// Set metadata on the network (KEY=VALUE).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        name: String,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        /// Only display network ids.
        #[arg(short, long)]
        quiet: bool,
        /// Filter (driver=, id=, label=KEY[=VALUE], name=, type=custom|builtin).
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// table, table TEMPLATE, json, or a Go template ({{.ID}} {{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Labels}} {{.CreatedAt}}).
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate the ids.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show networks as JSON, with their running containers and published ports.
    Inspect {
        /// A Go template run over each network's JSON ({{.IPAM.Config}}).
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks (refused while a running container is on one).
    #[command(visible_alias = "remove")]
    Rm {
        /// Do not fail when a network does not exist.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove the user-defined networks no container uses.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
        /// Only networks matching (label=KEY[=VALUE], label!=KEY[=VALUE]).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
    },
    /// Connect a container to a network (a running one at once).
    Connect {
        /// Another name of the container on this network.
        #[arg(long = "alias", value_name = "ALIAS")]
        aliases: Vec<String>,
        /// The container's IPv4 address on this network.
        #[arg(long, value_name = "ADDRESS")]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Accepted for Docker compatibility.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

impl Command {
    pub fn run(self, globals: &Globals) -> anyhow::Result<ExitCode> {
        let root = globals.root();
        let networks = Networks::open(&root);
        let containers = || container::Containers::open(&root).with_context(|| format!("opening the containers of {}", root.display()));
        match self {
            Command::Create { driver, subnet, gateway, internal, labels, name } => {
                let labels = key_values(&labels)?;
                let n = networks.create(&NewNetwork { name, driver, subnet, gateway, internal, labels })?;
                println!("{}", n.id);
                Ok(ExitCode::SUCCESS)
            }
            Command::Ls { quiet, filters, format, no_trunc } => ls(&networks, quiet, &filters, format.as_deref(), no_trunc),
            Command::Inspect { format, networks: names } => inspect(&root, &networks, format.as_deref(), &names),
            Command::Rm { force, networks: names } => {
                let mut failed = false;
                for name in &names {
                    match networks.remove(name) {
                        Ok(_) => println!("{name}"),
                        Err(network::Error::UnknownNetwork(_)) if force => {}
                        Err(e) => {
                            eprintln!("error: {e}");
                            failed = true;
                        }
                    }
                }
                Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
            }
            Command::Prune { force, filters } => prune(&networks, &containers()?, force, &filters),
            Command::Connect { aliases, ip, network, container } => {
                let ip = ip.map(|ip| super::container::ipv4("--ip", &ip)).transpose()?;
                let cs = containers()?;
                let state = cs.find(&container)?;
                cs.connect(&state, &network::Join { network, aliases, ip })?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Disconnect { force: _, network, container } => {
                let cs = containers()?;
                let state = cs.find(&container)?;
                cs.disconnect(&state, &network)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn key_values(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        if k.is_empty() {
            bail!("invalid --label {item:?}: use KEY=VALUE");
        }
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

/// `--filter` of `ls` and `prune`: every key must match (values of one key: any of them).
struct Filters(Vec<(String, String)>);

impl Filters {
    fn parse(items: &[String], allowed: &[&str]) -> anyhow::Result<Filters> {
        let mut out = Vec::new();
        for f in items {
            let Some((k, v)) = f.split_once('=') else { bail!("invalid --filter {f:?}: use KEY=VALUE") };
            if !allowed.contains(&k) {
                bail!("invalid --filter {f:?}: {k} is not one of {}", allowed.join(", "));
            }
            if k == "type" && !["custom", "builtin"].contains(&v) {
                bail!("invalid --filter {f:?}: type is custom or builtin");
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Filters(out))
    }

    fn matches(&self, n: &Network) -> bool {
        let label = |spec: &str| match spec.split_once('=') {
            Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
            None => n.labels.contains_key(spec),
        };
        let keys: std::collections::BTreeSet<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.into_iter().all(|key| {
            let mut values = self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str());
            match key {
                "name" => values.any(|v| n.name.contains(v)),
                "id" => values.any(|v| n.id.starts_with(v)),
                "driver" => values.any(|v| n.driver == v),
                "type" => values.any(|v| (v == "builtin") == n.is_builtin()),
                "label" => values.all(label),
                "label!" => values.all(|v| !label(v)),
                _ => true,
            }
        })
    }
}

fn ls(networks: &Networks, quiet: bool, filters: &[String], format: Option<&str>, no_trunc: bool) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(filters, &["name", "id", "driver", "label", "type"])?;
    let shown: Vec<Network> = networks.list()?.into_iter().filter(|n| filters.matches(n)).collect();
    let id = |n: &Network| if no_trunc { n.id.clone() } else { n.id[..12].to_string() };
    let titles = [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"), ("Scope", "SCOPE"), ("IPv6", "IPV6"), ("Internal", "INTERNAL"), ("Labels", "LABELS"), ("CreatedAt", "CREATED AT")];
    crate::cmd::format::list(&shown, quiet, id, format, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", &titles, |n| {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        serde_json::json!({"ID": id(n), "Name": n.name, "Driver": n.driver, "Scope": "local", "IPv6": "false", "Internal": n.internal.to_string(), "Labels": labels.join(","), "CreatedAt": n.created})
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `docker network inspect`'s JSON, plus each container's published ports.
fn inspect_json(root: &std::path::Path, n: &Network) -> serde_json::Value {
    let mut containers = serde_json::Map::new();
    for r in network::endpoints(root, &n.id) {
        for e in r.endpoints.iter().filter(|e| e.network_id == n.id) {
            let ports: Vec<String> = if r.ip() == Some(e.ip) { r.ports.iter().map(|p| p.to_string()).collect() } else { Vec::new() };
            containers.insert(
                r.container.clone(),
                serde_json::json!({"Name": r.name, "EndpointID": format!("{}-{}", &r.container[..12], e.ifname), "MacAddress": "", "IPv4Address": format!("{}/{}", e.ip, e.prefix), "IPv6Address": "", "Aliases": e.aliases, "Ports": ports}),
            );
        }
    }
    let config: Vec<serde_json::Value> = match (n.subnet, n.gateway) {
        (Some(s), Some(g)) => vec![serde_json::json!({"Subnet": s.to_string(), "Gateway": g.to_string()})],
        _ => Vec::new(),
    };
    let mut options = serde_json::Map::new();
    if !n.bridge.is_empty() {
        options.insert("com.docker.network.bridge.name".into(), n.bridge.clone().into());
    }
    serde_json::json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    })
}

fn inspect(root: &std::path::Path, networks: &Networks, format: Option<&str>, names: &[String]) -> anyhow::Result<ExitCode> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match networks.get(name) {
            Ok(n) => found.push(inspect_json(root, &n)),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    match format {
        Some(f) => Format::parse(Some(f), "")?.write(&mut std::io::stdout().lock(), &[], &found)?,
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn prune(networks: &Networks, containers: &container::Containers, force: bool, filters: &[String]) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(filters, &["label", "label!"])?;
    if !force {
        print!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Any container, running or not, that will join a network keeps it.
    let mut used = std::collections::BTreeSet::new();
    for c in containers.list()? {
        for j in containers.networks_of(&c)? {
            if let Ok(n) = networks.get(&j.network) {
                used.insert(n.id);
            }
        }
    }
    let mut deleted = Vec::new();
    for n in networks.list()? {
        if n.is_builtin() || used.contains(&n.id) || !filters.matches(&n) {
            continue;
        }
        match networks.remove(&n.id) {
            Ok(_) => deleted.push(n.name),
            Err(network::Error::InUse { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for name in &deleted {
            println!("{name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
