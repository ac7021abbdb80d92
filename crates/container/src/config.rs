//! What a new container runs: the image's config merged with the user's options, as
//! `docker run` merges them (ENTRYPOINT/CMD, ENV by key, WORKDIR, USER), and the parsing
//! of the option values (`-e`, `--env-file`, `-v`, `-m`, `--add-host`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The options of `run` / `create`, in the user's words (strings as typed).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The image as the user named it.
    pub image: String,
    /// Replaces the image's CMD when not empty.
    pub command: Vec<String>,
    /// `--entrypoint`: `Some("")` clears the image's.
    pub entrypoint: Option<String>,
    pub name: Option<String>,
    /// `-e KEY=VALUE` or `-e KEY` (copied from this process's environment).
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    /// `-v [SOURCE:]TARGET[:OPTIONS]` (a host path or a volume name).
    pub volumes: Vec<String>,
    /// `--mount type=bind|volume|tmpfs,…`.
    pub mounts: Vec<String>,
    /// `--tmpfs PATH[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    /// `bridge`, `host`, `none` or a user-defined network; empty: `bridge`.
    pub network: String,
    /// `--network-alias`: more names on a user-defined network.
    pub network_aliases: Vec<String>,
    /// `--ip`: the container's address on its (first, user-defined) network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// More networks to join (a repeated `--network`).
    pub extra_networks: Vec<network::Join>,
    /// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`.
    pub publish: Vec<String>,
    /// `-P`: every port the image EXPOSEs, on random host ports.
    pub publish_all: bool,
    /// `--expose PORT[-PORT][/tcp|/udp]`: more exposed ports, as the image's EXPOSE.
    pub expose: Vec<String>,
    pub hostname: Option<String>,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
    /// `--dns IP`, `--dns-search DOMAIN`, `--dns-option OPT`: the container's resolv.conf.
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--sysctl KEY=VALUE`: namespaced kernel parameters.
    pub sysctls: Vec<String>,
    /// `-m 64m`.
    pub memory: Option<String>,
    pub pids_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub init: bool,
    pub read_only: bool,
    /// `--rm`.
    pub auto_remove: bool,
    pub detach: bool,
    /// An external OCI runtime binary (runc) instead of the built-in one.
    pub runtime: Option<PathBuf>,
    /// `--restart`: applied by the detached container's supervisor.
    pub restart: runtime::restart::RestartPolicy,
    /// `--stop-signal`: what `stop` sends first (default: the image's STOPSIGNAL, else TERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    /// `--sig-proxy=false`: signals to this process are not passed on (the container then runs
    /// under its own shim, so this process's end does not end it).
    pub no_sig_proxy: bool,
    /// `--detach-keys` of `run -it` (see [`crate::attach::parse_detach_keys`]).
    pub detach_keys: Option<Vec<u8>>,
    /// `--label KEY=VALUE` / `-l`, after the `--label-file` lines.
    pub labels: Vec<String>,
    pub label_files: Vec<PathBuf>,
    /// `--health-*` and `--no-healthcheck`.
    pub health: HealthOptions,
    /// `--privileged`: every capability, no seccomp filter, nothing masked, a writable /sys.
    pub privileged: bool,
    /// `--cap-add` / `--cap-drop` (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--device HOST[:CONTAINER[:PERMISSIONS]]`.
    pub devices: Vec<String>,
    /// `--group-add GROUP` (a name in the image's /etc/group, or a number).
    pub group_add: Vec<String>,
    /// `--log-driver`: only `json-file`, the default.
    pub log_driver: Option<String>,
    /// `--log-opt KEY=VALUE`: `max-size`, `max-file`, `labels`, `labels-regex`, `env`, `env-regex`.
    pub log_opts: Vec<String>,
}

/// `--log-driver` and `--log-opt` read and checked: the `LogConfig.Config` of `inspect`.
pub(crate) fn log_options(opts: &RunOptions) -> Result<std::collections::BTreeMap<String, String>> {
    if let Some(d) = opts.log_driver.as_deref().filter(|d| *d != "json-file") {
        return Err(Error::option("--log-driver", d, "builder keeps logs as json-file only"));
    }
    let mut out = std::collections::BTreeMap::new();
    for o in &opts.log_opts {
        let Some((k, v)) = o.split_once('=') else { return Err(Error::option("--log-opt", o, "expected KEY=VALUE (max-size=10m, max-file=3, labels=a,b, env=A,B)")) };
        if !crate::logs::OPTIONS.contains(&k) {
            return Err(Error::option("--log-opt", o, format!("unknown option {k:?} of the json-file log ({})", crate::logs::OPTIONS.join(", "))));
        }
        out.insert(k.to_string(), v.to_string());
    }
    crate::logs::Rotation::of(&out)?;
    crate::logs::attributes(&out, &std::collections::BTreeMap::new(), &[])?;
    Ok(out)
}

/// The health check flags of `run`, as typed; they override the image's HEALTHCHECK field
/// by field, as Docker merges them.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd`: run with `/bin/sh -c`.
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    /// `--health-start-interval`: between probes during the start period.
    pub start_interval: Option<String>,
    pub retries: Option<i64>,
    /// The whole test (`["CMD", …]`, `["CMD-SHELL", …]`, `["NONE"]`), as compose gives it.
    pub test: Option<Vec<String>>,
    /// `--no-healthcheck`: none, even if the image has one.
    pub none: bool,
}

impl HealthOptions {
    /// The image's health check (from its config) with these flags applied; None when the
    /// container has no check.
    pub fn merge(&self, image: Option<crate::settings::Healthcheck>) -> Result<Option<crate::settings::Healthcheck>> {
        use crate::settings::parse_duration;
        if self.none {
            if self.cmd.is_some() {
                return Err(Error::option("--no-healthcheck", "true", "conflicts with --health-cmd"));
            }
            return Ok(Some(crate::settings::Healthcheck { test: vec!["NONE".into()], ..Default::default() }));
        }
        let mut h = image.unwrap_or_default();
        if let Some(c) = &self.cmd {
            h.test = vec!["CMD-SHELL".into(), c.clone()];
        }
        if let Some(t) = &self.test {
            if !matches!(t.first().map(String::as_str), Some("CMD" | "CMD-SHELL" | "NONE")) {
                return Err(Error::option("--health-test", &t.join(" "), "starts with CMD, CMD-SHELL or NONE"));
            }
            h.test = t.clone();
        }
        let set = |flag: &'static str, v: &Option<String>, field: &mut i64| -> Result<()> {
            if let Some(v) = v {
                *field = parse_duration(flag, v)?;
                if *field < 1_000_000 && *field != 0 {
                    return Err(Error::option(flag, v, "must be at least 1ms"));
                }
            }
            Ok(())
        };
        set("--health-interval", &self.interval, &mut h.interval)?;
        set("--health-timeout", &self.timeout, &mut h.timeout)?;
        set("--health-start-period", &self.start_period, &mut h.start_period)?;
        set("--health-start-interval", &self.start_interval, &mut h.start_interval)?;
        if let Some(r) = self.retries {
            if r < 0 {
                return Err(Error::option("--health-retries", &r.to_string(), "must not be negative"));
            }
            h.retries = r;
        }
        Ok(if h.test.is_empty() { None } else { Some(h) })
    }
}

/// The process a container runs, from the image config and the options.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
}

impl RunConfig {
    /// Merges `image` (the image's config) with `opts`, as docker does.
    pub fn new(image: &oci::spec::Config, opts: &RunOptions) -> Result<RunConfig> {
        let entrypoint: Vec<String> = match &opts.entrypoint {
            Some(e) if e.is_empty() => Vec::new(),
            Some(e) => vec![e.clone()],
            None => image.entrypoint().clone().unwrap_or_default(),
        };
        let cmd: Vec<String> = if !opts.command.is_empty() {
            opts.command.clone()
        } else if opts.entrypoint.is_some() {
            Vec::new()
        } else {
            image.cmd().clone().unwrap_or_default()
        };
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
        if argv.is_empty() {
            return Err(Error::NoCommand { image: opts.image.clone() });
        }
        let mut user_env = Vec::new();
        for f in &opts.env_files {
            user_env.extend(read_env_file(f)?);
        }
        user_env.extend(opts.env.iter().map(|e| expand_env(e)));
        Ok(RunConfig {
            argv,
            env: run_env(&image.env().clone().unwrap_or_default(), &user_env),
            cwd: opts.workdir.clone().unwrap_or_else(|| image.working_dir().clone().unwrap_or_default()),
            user: opts.user.clone().unwrap_or_else(|| image.user().clone().unwrap_or_default()),
        })
    }
}

/// "64m" -> bytes.
pub fn parse_bytes(flag: &'static str, s: &str) -> Result<i64> {
    let bytes = units::parse_bytes(s).map_err(|e| Error::option(flag, s, e.reason))?;
    i64::try_from(bytes).map_err(|_| Error::option(flag, s, "too large"))
}

fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading env file", path, e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(expand_env).collect())
}

/// `KEY` alone takes the value from this process's environment, like docker.
pub fn expand_env(e: &str) -> String {
    if e.contains('=') {
        return e.to_string();
    }
    match std::env::var(e) {
        Ok(v) => format!("{e}={v}"),
        Err(_) => e.to_string(),
    }
}

/// A new container's env as Docker merges it: the user's variables first, then the image's
/// that the user did not set (`KEY` alone, unset here, drops the image's).
pub fn run_env(image: &[String], user: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or(e).to_string();
    let mut out: Vec<String> = user.iter().filter(|u| u.contains('=')).cloned().collect();
    out.extend(image.iter().filter(|i| !user.iter().any(|u| key(u) == key(i))).cloned());
    out
}

/// Image env overridden by user env, by key.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let key = o.split('=').next().unwrap_or(o);
        out.retain(|e| e.split('=').next() != Some(key));
        if o.contains('=') {
            out.push(o.clone());
        }
    }
    out
}

/// `--add-host NAME:IP` (or `NAME=IP`; IPv6 may be in brackets).
pub fn parse_add_host(h: &str) -> Result<(String, String)> {
    let Some((name, ip)) = h.split_once([':', '=']) else { return Err(Error::option("--add-host", h, "expected NAME:IP")) };
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || name.contains(char::is_whitespace) || ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Error::option("--add-host", h, "expected NAME:IP with a host name and an IPv4 or IPv6 address"));
    }
    Ok((name.to_string(), ip.to_string()))
}

/// Docker's rule for container names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`: two characters at least.
pub fn valid_name(name: &str) -> bool {
    name.len() >= 2 && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A name for a container the user did not name, from its id.
pub fn random_name(id: &str) -> String {
    const A: [&str; 8] = ["brave", "calm", "eager", "fancy", "gentle", "happy", "keen", "lucid"];
    const N: [&str; 8] = ["turing", "hopper", "lovelace", "knuth", "ritchie", "thompson", "liskov", "dijkstra"];
    let b = u8::from_str_radix(id.get(..2).unwrap_or("0"), 16).unwrap_or(0) as usize;
    format!("{}_{}_{}", A[b % 8], N[(b / 8) % 8], id.get(2..6).unwrap_or(""))
}

/// `--dns`, `--dns-search` and `--dns-option`, checked: what replaces the resolv.conf lines.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dns {
    pub servers: Vec<std::net::IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub(crate) fn parse(opts: &RunOptions) -> Result<Option<Dns>> {
        let servers = opts.dns.iter().map(|d| d.parse().map_err(|_| Error::option("--dns", d, "not an IP address"))).collect::<Result<Vec<_>>>()?;
        for d in &opts.dns_search {
            if d.is_empty() || d.contains(char::is_whitespace) {
                return Err(Error::option("--dns-search", d, "not a domain name"));
            }
        }
        for o in &opts.dns_options {
            if o.is_empty() || o.contains(char::is_whitespace) {
                return Err(Error::option("--dns-option", o, "not a resolv.conf option (ndots:2, edns0, …)"));
            }
        }
        let dns = Dns { servers, search: opts.dns_search.clone(), options: opts.dns_options.clone() };
        Ok(Some(dns).filter(|d| *d != Dns::default()))
    }

    /// `body` (the resolv.conf the container would get) with these lines replacing its own, as
    /// Docker writes it: on a user-defined network the embedded server (127.0.0.11) stays the
    /// only name server and forwards to the given ones; `--dns-search .` means no search list.
    pub fn apply(&self, body: &str) -> String {
        let embedded = body.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["nameserver", "127.0.0.11"]);
        let mut out = String::new();
        for line in body.lines() {
            let key = line.split_whitespace().next().unwrap_or("");
            let replaced = match key {
                "nameserver" => !self.servers.is_empty() && !embedded,
                "search" | "domain" => !self.search.is_empty(),
                "options" => !self.options.is_empty(),
                _ => false,
            };
            if !replaced {
                out.push_str(line);
                out.push('\n');
            }
        }
        if !embedded {
            for s in &self.servers {
                out.push_str(&format!("nameserver {s}\n"));
            }
        }
        let search: Vec<&str> = self.search.iter().map(String::as_str).filter(|s| *s != ".").collect();
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !self.options.is_empty() {
            let mut options = self.options.clone();
            if embedded && !options.iter().any(|o| o.starts_with("ndots:")) {
                options.push("ndots:0".into());
            }
            out.push_str(&format!("options {}\n", options.join(" ")));
        }
        out
    }
}

/// `--sysctl KEY=VALUE` checked as Docker checks them: the IPC namespace's `kernel.msg*`,
/// `kernel.sem`, `kernel.shm*` and `fs.mqueue.*`, and `net.*` when the container has a network
/// namespace of its own. Any other key would change the host, and is refused.
pub(crate) fn parse_sysctls(opts: &RunOptions, own_network: bool) -> Result<std::collections::BTreeMap<String, String>> {
    const IPC: [&str; 8] = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];
    let mut out = std::collections::BTreeMap::new();
    for s in &opts.sysctls {
        let Some((k, v)) = s.split_once('=') else { return Err(Error::option("--sysctl", s, "expected KEY=VALUE (net.ipv4.ip_forward=1)")) };
        let k = k.trim().replace('/', ".");
        if k.is_empty() || k.split('.').any(|p| p.is_empty()) {
            return Err(Error::option("--sysctl", s, "expected KEY=VALUE (net.ipv4.ip_forward=1)"));
        }
        if k.starts_with("net.") {
            if !own_network {
                return Err(Error::option("--sysctl", s, "a net.* sysctl needs a network namespace of the container's own (not --network host)"));
            }
        } else if !IPC.contains(&k.as_str()) && !k.starts_with("fs.mqueue.") {
            return Err(Error::option("--sysctl", s, "not a namespaced sysctl (net.*, kernel.msg*/sem/shm*, fs.mqueue.*): it would change the host"));
        }
        out.insert(k, v.to_string());
    }
    Ok(out)
}

/// The ports of `--expose` values (`80`, `53/udp`, `8000-8002/tcp`), as EXPOSE keys (`80/tcp`):
/// each is the container part of a `-p` value, parsed as `-p` parses it.
pub fn exposed_ports(values: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values {
        let parsed = if v.contains(':') {
            Err("use PORT[-PORT][/tcp|/udp]".to_string())
        } else {
            network::parse_publish(v).map_err(|e| match e {
                network::Error::InvalidPort { reason, .. } => reason,
                other => other.to_string(),
            })
        };
        let bindings = parsed.map_err(|reason| Error::option("--expose", v, reason))?;
        out.extend(bindings.iter().map(|b| format!("{}/{}", b.container_port, b.proto.as_str())));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn expose_values_become_exposed_port_keys_and_bad_ones_are_named() {
        let v = |s: &[&str]| super::exposed_ports(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(v(&["80", "53/udp", "8000-8002/tcp"]).unwrap(), ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]);
        for bad in ["abc", "80/sctp", "0", "90-80", "99999", "8080:80"] {
            let e = v(&[bad]).unwrap_err().to_string();
            assert!(e.contains("--expose") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn dns_options_replace_the_resolv_conf_lines_as_dockers_do() {
        use super::*;
        let opts = RunOptions { dns: vec!["10.0.0.2".into()], dns_search: vec!["a.test".into()], dns_options: vec!["ndots:3".into()], ..Default::default() };
        let dns = Dns::parse(&opts).unwrap().unwrap();
        assert_eq!(dns.apply("# host\nnameserver 8.8.8.8\nsearch lan\noptions edns0\n"), "# host\nnameserver 10.0.0.2\nsearch a.test\noptions ndots:3\n");
        // On a user network the embedded server stays (it forwards to the given servers).
        let user = Dns { options: vec!["edns0".into()], ..dns.clone() };
        assert_eq!(user.apply("nameserver 127.0.0.11\noptions ndots:0\n"), "nameserver 127.0.0.11\nsearch a.test\noptions edns0 ndots:0\n");
        assert_eq!(Dns { search: vec![".".into()], ..Default::default() }.apply("nameserver 1.1.1.1\nsearch lan\n"), "nameserver 1.1.1.1\n");
        assert!(Dns::parse(&RunOptions::default()).unwrap().is_none());
        let bad = RunOptions { dns: vec!["resolver".into()], ..Default::default() };
        assert!(Dns::parse(&bad).unwrap_err().to_string().contains("--dns \"resolver\": not an IP address"));
    }

    #[test]
    fn only_namespaced_sysctls_are_accepted() {
        use super::*;
        let opts = |s: &[&str]| RunOptions { sysctls: s.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let ok = parse_sysctls(&opts(&["net.ipv4.ip_forward=1", "kernel.shmmax=100", "fs.mqueue.msg_max=20", "net/core/somaxconn=10"]), true).unwrap();
        assert_eq!(ok.get("net.core.somaxconn").map(String::as_str), Some("10"));
        assert_eq!(ok.len(), 4);
        assert!(parse_sysctls(&opts(&["vm.swappiness=1"]), true).unwrap_err().to_string().contains("not a namespaced sysctl"));
        assert!(parse_sysctls(&opts(&["kernel.hostname=x"]), true).is_err());
        assert!(parse_sysctls(&opts(&["net.ipv4.ip_forward=1"]), false).unwrap_err().to_string().contains("network namespace"));
        assert!(parse_sysctls(&opts(&["net.ipv4.ip_forward"]), true).unwrap_err().to_string().contains("KEY=VALUE"));
    }

    #[test]
    fn names_follow_dockers_pattern_of_two_characters_or_more() {
        for ok in ["db", "web-1", "a.b_c", "9lives"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", "x", "-db", "_db", "bad name", "web/1", "é1"] {
            assert!(!super::valid_name(bad), "{bad}");
        }
    }

    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> oci::spec::Config {
        let mut c = oci::spec::Config::default();
        c.set_entrypoint(Some(entrypoint.iter().map(|s| s.to_string()).collect()));
        c.set_cmd(Some(cmd.iter().map(|s| s.to_string()).collect()));
        c.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        c
    }

    #[test]
    fn command_replaces_cmd_and_entrypoint_flag_clears_cmd() {
        let img = image(&["/init"], &["serve"], &[]);
        let base = RunOptions { image: "x".into(), ..Default::default() };
        assert_eq!(RunConfig::new(&img, &base).unwrap().argv, ["/init", "serve"]);
        let opts = RunOptions { command: vec!["ls".into()], ..base.clone() };
        assert_eq!(RunConfig::new(&img, &opts).unwrap().argv, ["/init", "ls"]);
        let opts = RunOptions { entrypoint: Some("/bin/sh".into()), ..base.clone() };
        assert_eq!(RunConfig::new(&img, &opts).unwrap().argv, ["/bin/sh"]);
        let opts = RunOptions { entrypoint: Some(String::new()), ..base };
        assert!(matches!(RunConfig::new(&img, &opts), Err(Error::NoCommand { .. })));
    }

    #[test]
    fn user_env_overrides_image_env_by_key() {
        let img = image(&[], &["true"], &["A=1", "B=2"]);
        let opts = RunOptions { env: vec!["B=3".into(), "C=4".into()], ..Default::default() };
        assert_eq!(RunConfig::new(&img, &opts).unwrap().env, ["B=3", "C=4", "A=1"], "Docker's order: the user's first");
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        assert_eq!(parse_bytes("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("--memory", "1.5GB").unwrap(), 3 << 29);
        assert_eq!(
            parse_bytes("--memory", "abc").unwrap_err().to_string(),
            "invalid --memory \"abc\": use a number of bytes, or one with a unit b, k, m, g, t or p (for example 64m or 1.5g)"
        );
        assert!(parse_add_host("nohost").unwrap_err().to_string().contains("--add-host \"nohost\""));
        assert_eq!(parse_add_host("db:[::1]").unwrap(), ("db".to_string(), "::1".to_string()));
    }
}
