//! A compose project: the files found (or named with `-f`), read, interpolated, merged in order
//! and normalized, with its name, directory and the checks Compose makes before running
//! anything (undefined networks and volumes, `depends_on` on unknown services or in a cycle).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Loc};
use crate::model::{Condition, Config, Dependency, File, MountType, Network, Secret, Service, ServiceNetwork, Volume};
use crate::yaml::Node;
use crate::{de, dotenv, interpolate, yaml};

/// The names Compose looks for, in order, in the directory and then its parents.
pub const FILE_NAMES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

/// What the command line and the environment say about where the project is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` (in order); empty means `COMPOSE_FILE` or discovery from `working_dir`.
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_directory: Option<PathBuf>,
    /// `--env-file` (replaces `.env` in the project directory).
    pub env_files: Vec<PathBuf>,
    /// `--profile`; empty means `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// The process environment (it wins over `.env`).
    pub environment: BTreeMap<String, String>,
    /// The directory relative paths on the command line start from.
    pub working_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub name: String,
    #[serde(skip)]
    pub directory: PathBuf,
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    /// The services whose profiles are active (or that have none).
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Network>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Secret>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, Config>,
    /// Services left out because none of their profiles is active.
    #[serde(skip)]
    pub disabled: BTreeMap<String, Service>,
    /// The variables interpolation used (environment over `.env`).
    #[serde(skip)]
    pub variables: BTreeMap<String, String>,
}

/// Finds the compose file in `dir` or the nearest parent that has one.
pub fn discover(dir: &Path) -> Result<PathBuf, Error> {
    for d in dir.ancestors() {
        for name in FILE_NAMES {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::NoComposeFile { dir: dir.to_path_buf() })
}

/// The override file Compose merges on top of a discovered file (`compose.override.yaml` beside
/// `compose.yaml`, `docker-compose.override.yml` beside `docker-compose.yml`, …).
fn override_of(file: &Path) -> Option<PathBuf> {
    let stem = file.file_stem()?.to_str()?;
    let dir = file.parent()?;
    ["yaml", "yml"].iter().map(|ext| dir.join(format!("{stem}.override.{ext}"))).find(|p| p.is_file())
}

/// Compose v2's normalization of a directory name into a project name.
pub fn normalize_project_name(s: &str) -> String {
    let lower = s.to_lowercase();
    let kept: String = lower.chars().filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-').collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

fn valid_project_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// Reads, interpolates, merges and checks the project.
pub fn load(opts: &LoadOptions) -> Result<Project, Error> {
    let cwd = &opts.working_dir;
    let mut files: Vec<PathBuf> = opts.files.iter().map(|f| absolute(cwd, f)).collect();
    if files.is_empty() {
        if let Some(list) = opts.environment.get("COMPOSE_FILE").filter(|l| !l.is_empty()) {
            let sep = opts.environment.get("COMPOSE_PATH_SEPARATOR").and_then(|s| s.chars().next()).unwrap_or(':');
            files = list.split(sep).map(|f| absolute(cwd, Path::new(f))).collect();
        } else {
            let base = discover(&opts.project_directory.as_deref().map(|d| absolute(cwd, d)).unwrap_or_else(|| cwd.clone()))?;
            let extra = override_of(&base);
            files.push(base);
            files.extend(extra);
        }
    }
    let directory = match &opts.project_directory {
        Some(d) => absolute(cwd, d),
        None => files[0].parent().map(Path::to_path_buf).unwrap_or_else(|| cwd.clone()),
    };

    // Variables: `.env` (or --env-file), under the process environment.
    let mut variables = BTreeMap::new();
    let env_files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(directory.join(".env"), false)]
    } else {
        opts.env_files.iter().map(|f| (absolute(cwd, f), true)).collect()
    };
    for (path, required) in env_files {
        if !required && !path.is_file() {
            continue;
        }
        let vars = dotenv::parse(&path, &read(&path)?, &opts.environment)?;
        variables.extend(vars);
    }
    variables.extend(opts.environment.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut nodes = Vec::new();
    let mut merged = File::default();
    for path in &files {
        let mut node = yaml::parse(path, &read(path)?)?;
        interpolate::tree(&mut node, "", &variables)?;
        let file: File = de::from_node(&node, "")?;
        merge_file(&mut merged, file);
        nodes.push(node);
    }
    let locate = Locator { nodes: &nodes };

    let name = match opts.project_name.clone().or_else(|| variables.get("COMPOSE_PROJECT_NAME").cloned().filter(|n| !n.is_empty())).or(merged.name.clone()) {
        Some(n) if valid_project_name(&n) => n,
        Some(n) => return Err(Error::ProjectName { name: n }),
        None => {
            let base = directory.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let n = normalize_project_name(base);
            if n.is_empty() {
                return Err(Error::ProjectName { name: base.to_string() });
            }
            n
        }
    };

    let profiles: BTreeSet<String> = if opts.profiles.is_empty() {
        variables.get("COMPOSE_PROFILES").map(|p| p.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default()
    } else {
        opts.profiles.iter().cloned().collect()
    };

    let mut project = Project { name, directory, files, services: BTreeMap::new(), networks: merged.networks, volumes: merged.volumes, secrets: BTreeMap::new(), configs: BTreeMap::new(), disabled: BTreeMap::new(), variables };
    for (name, mut service) in merged.services {
        normalize_service(&project, &name, &mut service, &locate)?;
        let active = service.profiles.is_empty() || service.profiles.iter().any(|p| profiles.contains(p) || p == "*") || profiles.contains("*");
        if active {
            project.services.insert(name, service);
        } else {
            project.disabled.insert(name, service);
        }
    }
    project.secrets = normalize_secrets(&project, merged.secrets, &locate)?;
    project.configs = normalize_configs(&project, merged.configs, &locate)?;
    normalize_resources(&mut project);
    check(&project, &locate)?;
    Ok(project)
}

/// Finds where a key path was written, for errors found after merging.
struct Locator<'a> {
    nodes: &'a [Node],
}

impl Locator<'_> {
    fn at(&self, keys: &[&str]) -> Loc {
        // The last file that has the deepest part of the path.
        for depth in (1..=keys.len()).rev() {
            for node in self.nodes.iter().rev() {
                let mut n = Some(node);
                for k in &keys[..depth - 1] {
                    n = n.and_then(|n| n.get(k));
                }
                if let Some((key, _)) = n.and_then(|n| n.entry(keys[depth - 1])) {
                    return key.loc.clone();
                }
            }
        }
        self.nodes.first().map(|n| n.loc.clone()).unwrap_or(Loc { file: std::sync::Arc::from(Path::new("compose.yaml")), line: 1, col: 1 })
    }

    fn invalid(&self, keys: &[&str], message: String) -> Error {
        Error::Invalid { loc: self.at(keys), path: keys.join("."), message }
    }
}

fn merge_file(base: &mut File, over: File) {
    if over.name.is_some() {
        base.name = over.name;
    }
    for (name, service) in over.services {
        match base.services.get_mut(&name) {
            Some(b) => merge_service(b, service),
            None => {
                base.services.insert(name, service);
            }
        }
    }
    base.networks.extend(over.networks);
    base.volumes.extend(over.volumes);
    base.secrets.extend(over.secrets);
    base.configs.extend(over.configs);
}

fn append_unique<T: PartialEq>(base: &mut Vec<T>, over: Vec<T>) {
    for item in over {
        if !base.contains(&item) {
            base.push(item);
        }
    }
}

/// Compose's merge rules: single values are replaced, mappings merged key by key, `ports`,
/// `expose` and the like appended without duplicates, `volumes` merged by container path,
/// `command`/`entrypoint` replaced whole.
fn merge_service(b: &mut Service, o: Service) {
    macro_rules! replace {
        ($($f:ident)*) => {$( if o.$f.is_some() { b.$f = o.$f; } )*};
    }
    replace!(image command entrypoint network_mode restart working_dir user hostname container_name stop_signal stop_grace_period init read_only mem_limit cpus pids_limit scale privileged);
    b.environment.extend(o.environment);
    b.labels.extend(o.labels);
    b.extra_hosts.extend(o.extra_hosts);
    b.depends_on.extend(o.depends_on);
    b.networks.extend(o.networks);
    b.env_file.extend(o.env_file);
    append_unique(&mut b.ports, o.ports);
    append_unique(&mut b.expose, o.expose);
    append_unique(&mut b.tmpfs, o.tmpfs);
    append_unique(&mut b.profiles, o.profiles);
    append_unique(&mut b.cap_add, o.cap_add);
    append_unique(&mut b.cap_drop, o.cap_drop);
    append_unique(&mut b.devices, o.devices);
    append_unique(&mut b.group_add, o.group_add);
    append_unique(&mut b.dns, o.dns);
    append_unique(&mut b.dns_search, o.dns_search);
    append_unique(&mut b.dns_opt, o.dns_opt);
    b.sysctls.extend(o.sysctls);
    b.ulimits.extend(o.ulimits);
    for v in o.volumes {
        match b.volumes.iter_mut().find(|x| x.target == v.target) {
            Some(x) => *x = v,
            None => b.volumes.push(v),
        }
    }
    for x in o.secrets {
        match b.secrets.iter_mut().find(|y| y.target == x.target) {
            Some(y) => *y = x,
            None => b.secrets.push(x),
        }
    }
    for x in o.configs {
        match b.configs.iter_mut().find(|y| y.target == x.target) {
            Some(y) => *y = x,
            None => b.configs.push(x),
        }
    }
    match (&mut b.build, o.build) {
        (Some(bb), Some(ob)) => {
            bb.context = ob.context;
            if ob.dockerfile.is_some() {
                bb.dockerfile = ob.dockerfile;
            }
            if ob.target.is_some() {
                bb.target = ob.target;
            }
            bb.args.extend(ob.args);
            bb.labels.extend(ob.labels);
            append_unique(&mut bb.cache_from, ob.cache_from);
            append_unique(&mut bb.cache_to, ob.cache_to);
        }
        (slot, ob @ Some(_)) => *slot = ob,
        (_, None) => {}
    }
    match (&mut b.healthcheck, o.healthcheck) {
        (Some(bh), Some(oh)) => {
            if !oh.test.is_empty() {
                bh.test = oh.test;
            }
            macro_rules! hc {
                ($($f:ident)*) => {$( if oh.$f.is_some() { bh.$f = oh.$f; } )*};
            }
            hc!(interval timeout retries start_period start_interval);
            bh.disable |= oh.disable;
        }
        (slot, oh @ Some(_)) => *slot = oh,
        (_, None) => {}
    }
    if let Some(od) = o.deploy {
        let bd = b.deploy.get_or_insert_with(Default::default);
        if od.replicas.is_some() {
            bd.replicas = od.replicas;
        }
    }
}

/// Resolves what depends on the project directory and the variables: relative paths, the
/// `env_file`s (read into `environment`), environment entries without a value.
fn normalize_service(project: &Project, name: &str, s: &mut Service, locate: &Locator<'_>) -> Result<(), Error> {
    let dir = &project.directory;
    let home = project.variables.get("HOME").cloned().unwrap_or_default();
    let resolve = |p: &str| -> String {
        let path = match p.strip_prefix("~") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => PathBuf::from(format!("{home}{rest}")),
            _ => absolute(dir, Path::new(p)),
        };
        clean(&path)
    };
    if let Some(b) = &mut s.build {
        // A context may also be a git or HTTP URL, which stays as written.
        if !b.context.contains("://") && !b.context.starts_with("git@") {
            b.context = resolve(&b.context);
        }
    }
    let mut from_files = BTreeMap::new();
    for f in std::mem::take(&mut s.env_file) {
        let path = PathBuf::from(resolve(&f.path));
        if !path.is_file() {
            if f.required {
                return Err(locate.invalid(&["services", name, "env_file"], format!("env file {} not found", path.display())));
            }
            continue;
        }
        from_files.extend(dotenv::parse(&path, &read(&path)?, &project.variables)?);
    }
    for (k, v) in from_files {
        s.environment.entry(k).or_insert(Some(v));
    }
    // `- FOO` without a value: the value from the environment, or left out when unset.
    s.environment = std::mem::take(&mut s.environment)
        .into_iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k, Some(v))),
            None => project.variables.get(&k).map(|v| (k, Some(v.clone()))),
        })
        .collect();
    for v in &mut s.volumes {
        if v.kind == MountType::Bind
            && let Some(src) = &v.source {
                v.source = Some(resolve(src));
            }
    }
    if s.networks.is_empty() && s.network_mode.is_none() {
        s.networks.insert("default".into(), ServiceNetwork::default());
    }
    if let Some(other) = s.network_mode.as_deref().and_then(|m| m.strip_prefix("service:")) {
        // As Compose: a service on another's network starts after it.
        s.depends_on.entry(other.to_string()).or_insert(Dependency { condition: Condition::ServiceStarted, required: true, restart: false });
    }
    if let Some(r) = s.deploy.as_ref().and_then(|d| d.replicas) {
        s.scale.get_or_insert(r);
    }
    Ok(())
}

/// Checks each top-level secret has one source and makes its file path absolute.
fn normalize_secrets(project: &Project, secrets: BTreeMap<String, Secret>, locate: &Locator<'_>) -> Result<BTreeMap<String, Secret>, Error> {
    let mut out = BTreeMap::new();
    for (key, mut secret) in secrets {
        let at = |message: String| locate.invalid(&["secrets", &key], message);
        if secret.external {
            return Err(at("an external secret lives in Docker Swarm's secret store, which builder compose does not have; give it a `file` or an `environment` variable".into()));
        }
        match (&secret.file, &secret.environment) {
            (Some(file), None) => secret.file = Some(clean(&absolute(&project.directory, Path::new(file)))),
            (None, Some(var)) => {
                if !project.variables.contains_key(var) {
                    return Err(at(format!("the secret's variable {var} is not set")));
                }
            }
            _ => return Err(at("a secret needs exactly one of `file` and `environment`".into())),
        }
        out.insert(key, secret);
    }
    Ok(out)
}

/// Checks each top-level config has one source and makes its file path absolute.
fn normalize_configs(project: &Project, configs: BTreeMap<String, Config>, locate: &Locator<'_>) -> Result<BTreeMap<String, Config>, Error> {
    let mut out = BTreeMap::new();
    for (key, mut config) in configs {
        let at = |message: String| locate.invalid(&["configs", &key], message);
        if config.external {
            return Err(at("an external config lives in Docker Swarm's config store, which builder compose does not have; give it a `file`, an `environment` variable or its `content`".into()));
        }
        match (&config.file, &config.environment, &config.content) {
            (Some(file), None, None) => config.file = Some(clean(&absolute(&project.directory, Path::new(file)))),
            (None, Some(var), None) => {
                if !project.variables.contains_key(var) {
                    return Err(at(format!("the config's variable {var} is not set")));
                }
            }
            (None, None, Some(_)) => {}
            _ => return Err(at("a config needs exactly one of `file`, `environment` and `content`".into())),
        }
        out.insert(key, config);
    }
    Ok(out)
}

/// A host path with `.` and `..` removed without touching the filesystem, by the workspace's
/// one path cleaner (Go's `path.Clean`, as Compose cleans paths).
fn clean(p: &Path) -> String {
    dockerignore::clean_path(&p.to_string_lossy())
}

/// Gives networks and volumes the names they have on the host (`PROJECT_NAME`, or the name as
/// written for external ones) and adds the default network when a service uses it.
fn normalize_resources(p: &mut Project) {
    let uses_default = p.services.values().any(|s| s.networks.contains_key("default"));
    if uses_default && !p.networks.contains_key("default") {
        p.networks.insert("default".into(), Network::default());
    }
    for (key, n) in &mut p.networks {
        if n.name.is_none() {
            n.name = Some(if n.external { key.clone() } else { format!("{}_{key}", p.name) });
        }
    }
    for (key, v) in &mut p.volumes {
        if v.name.is_none() {
            v.name = Some(if v.external { key.clone() } else { format!("{}_{key}", p.name) });
        }
    }
}

fn check(p: &Project, locate: &Locator<'_>) -> Result<(), Error> {
    for (name, s) in &p.services {
        if s.image.is_none() && s.build.is_none() {
            return Err(locate.invalid(&["services", name], "the service has neither `image` nor `build`".into()));
        }
        for net in s.networks.keys() {
            if !p.networks.contains_key(net) {
                return Err(locate.invalid(&["services", name, "networks", net], format!("service {name:?} refers to undefined network {net:?}")));
            }
        }
        if let Some(mode) = &s.network_mode {
            if !s.networks.is_empty() {
                return Err(locate.invalid(&["services", name, "network_mode"], "`network_mode` and `networks` cannot both be set".into()));
            }
            if let Some(other) = mode.strip_prefix("service:") {
                if !p.services.contains_key(other) {
                    return Err(locate.invalid(&["services", name, "network_mode"], format!("network_mode refers to undefined service {other:?}")));
                }
            } else if !matches!(mode.as_str(), "bridge" | "host" | "none") && !mode.starts_with("container:") {
                return Err(locate.invalid(&["services", name, "network_mode"], format!("unknown network_mode {mode:?} (bridge, host, none, service:NAME or container:NAME)")));
            }
        }
        for (i, v) in s.volumes.iter().enumerate() {
            if let (MountType::Volume, Some(src)) = (v.kind, &v.source)
                && !p.volumes.contains_key(src) {
                    return Err(Error::Invalid {
                        loc: locate.at(&["services", name, "volumes"]),
                        path: format!("services.{name}.volumes[{i}]"),
                        message: format!("service {name:?} refers to undefined volume {src:?} (declare it under the top-level `volumes:`)"),
                    });
                }
        }
        for (i, secret) in s.secrets.iter().enumerate() {
            if !p.secrets.contains_key(&secret.source) {
                return Err(Error::Invalid {
                    loc: locate.at(&["services", name, "secrets"]),
                    path: format!("services.{name}.secrets[{i}]"),
                    message: format!("service {name:?} refers to undefined secret {:?} (declare it under the top-level `secrets:`)", secret.source),
                });
            }
        }
        for (i, config) in s.configs.iter().enumerate() {
            if !p.configs.contains_key(&config.source) {
                return Err(Error::Invalid {
                    loc: locate.at(&["services", name, "configs"]),
                    path: format!("services.{name}.configs[{i}]"),
                    message: format!("service {name:?} refers to undefined config {:?} (declare it under the top-level `configs:`)", config.source),
                });
            }
        }
        for (dep, d) in &s.depends_on {
            if !p.services.contains_key(dep) && d.required {
                let why = if p.disabled.contains_key(dep) { " (it is in a profile that is not active)" } else { "" };
                return Err(locate.invalid(&["services", name, "depends_on", dep], format!("service {name:?} depends on undefined service {dep:?}{why}")));
            }
        }
        if s.container_name.is_some() && s.scale.unwrap_or(1) > 1 {
            return Err(locate.invalid(&["services", name, "container_name"], "a service with `container_name` cannot have more than one replica".into()));
        }
    }
    if let Some(cycle) = find_cycle(&p.services) {
        return Err(Error::DependencyCycle { cycle });
    }
    Ok(())
}

fn find_cycle(services: &BTreeMap<String, Service>) -> Option<Vec<String>> {
    fn visit<'a>(name: &'a str, services: &'a BTreeMap<String, Service>, stack: &mut Vec<&'a str>, done: &mut BTreeSet<&'a str>) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| *s == name) {
            let mut cycle: Vec<String> = stack[pos..].iter().map(|s| s.to_string()).collect();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        stack.push(name);
        if let Some(s) = services.get(name) {
            for dep in s.depends_on.keys() {
                if let Some(c) = visit(dep, services, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.insert(name);
        None
    }
    let mut done = BTreeSet::new();
    for name in services.keys() {
        if let Some(c) = visit(name, services, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

impl Project {
    /// The services to act on: those named (and, with `with_deps`, what they depend on), or all;
    /// in `depends_on` order (dependencies first).
    pub fn ordered(&self, names: &[String], with_deps: bool) -> Result<Vec<String>, Error> {
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<String> = if names.is_empty() { self.services.keys().cloned().collect() } else { names.to_vec() };
        while let Some(n) = todo.pop() {
            let Some(s) = self.services.get(&n) else { return Err(Error::NoSuchService { name: n }) };
            if wanted.insert(n.clone()) && with_deps {
                todo.extend(s.depends_on.keys().filter(|d| self.services.contains_key(*d)).cloned());
            }
        }
        let mut order = Vec::new();
        let mut placed = BTreeSet::new();
        while order.len() < wanted.len() {
            let before = order.len();
            for n in &wanted {
                if placed.contains(n) {
                    continue;
                }
                let ready = self.services[n].depends_on.keys().all(|d| placed.contains(d) || !wanted.contains(d));
                if ready {
                    order.push(n.clone());
                }
            }
            for n in &order[before..] {
                placed.insert(n.clone());
            }
            if order.len() == before {
                break; // a cycle, refused at load
            }
        }
        Ok(order)
    }

    /// How many containers the service runs (`scale`, `deploy.replicas`, default 1).
    pub fn replicas(&self, service: &str) -> u32 {
        self.services.get(service).and_then(|s| s.scale).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests;
