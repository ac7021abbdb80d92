use super::*;
use crate::model::{Condition, Port, RestartPolicy};

struct Dir(#[allow(dead_code)] tempfile::TempDir);

impl Dir {
    fn new(name: &str) -> (Dir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        (Dir(t), d)
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    if let Some(p) = dir.join(name).parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(dir.join(name), text).unwrap();
}

fn opts(dir: &Path) -> LoadOptions {
    LoadOptions { working_dir: dir.to_path_buf(), ..LoadOptions::default() }
}

fn load_text(text: &str) -> Result<Project, Error> {
    let (_t, d) = Dir::new("app");
    write(&d, "compose.yaml", text);
    load(&opts(&d))
}

fn err(text: &str) -> String {
    load_text(text).unwrap_err().to_string()
}

const WORDPRESS: &str = r#"version: "3" # the file format version
services:
  mysql-db:
    image: mysql:5.7
    volumes:
      - ./mysql:/var/lib/mysql
    environment:
      MYSQL_ROOT_PASSWORD: wordpress
      MYSQL_DATABASE: wordpress
  wordpress:
    image: wordpress:latest
    volumes:
      - ./wordpress-html:/var/www/html
    ports:
      - 3000:80
    restart: always
    depends_on:
      - mysql-db
    environment:
      WORDPRESS_DB_HOST: mysql-db:3306
"#;

#[test]
fn the_tutorials_wordpress_file_loads_with_the_legacy_version_key() {
    let (_t, d) = Dir::new("My WordPress");
    write(&d, "docker-compose.yml", WORDPRESS);
    let p = load(&opts(&d)).unwrap();
    assert_eq!(p.name, "mywordpress");
    let wp = &p.services["wordpress"];
    assert_eq!(wp.ports, vec![Port { target: 80, published: Some("3000".into()), host_ip: None, protocol: "tcp".into(), mode: "ingress".into(), name: None, app_protocol: None }]);
    assert_eq!(wp.restart, Some(RestartPolicy::Always));
    assert_eq!(wp.environment["WORDPRESS_DB_HOST"].as_deref(), Some("mysql-db:3306"));
    assert_eq!(wp.volumes[0].kind, MountType::Bind);
    assert_eq!(wp.volumes[0].source.as_deref(), Some(d.join("wordpress-html").to_str().unwrap()));
    assert_eq!(wp.depends_on["mysql-db"].condition, Condition::ServiceStarted);
    assert!(wp.networks.contains_key("default"));
    assert_eq!(p.networks["default"].name.as_deref(), Some("mywordpress_default"));
    assert_eq!(p.ordered(&[], true).unwrap(), ["mysql-db", "wordpress"]);
}

#[test]
fn discovery_prefers_compose_yaml_and_searches_parent_directories() {
    let (_t, d) = Dir::new("proj");
    write(&d, "docker-compose.yml", "services: {a: {image: old}}\n");
    write(&d, "compose.yaml", "services: {a: {image: new}}\n");
    std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    let p = load(&opts(&d.join("sub/deeper"))).unwrap();
    assert_eq!(p.services["a"].image.as_deref(), Some("new"));
    assert_eq!(p.directory, d);
    assert_eq!(p.name, "proj");
}

#[test]
fn no_compose_file_is_an_error_naming_the_directory() {
    let (_t, d) = Dir::new("empty");
    let e = load(&opts(&d)).unwrap_err().to_string();
    assert!(e.contains("no compose file") && e.contains("empty"), "{e}");
}

#[test]
fn the_override_file_is_merged_when_files_are_discovered() {
    let (_t, d) = Dir::new("p");
    write(&d, "compose.yaml", "services: {a: {image: busybox, environment: {A: '1', B: '1'}}}\n");
    write(&d, "compose.override.yaml", "services: {a: {environment: {B: '2'}}}\n");
    let p = load(&opts(&d)).unwrap();
    assert_eq!(p.services["a"].environment["A"].as_deref(), Some("1"));
    assert_eq!(p.services["a"].environment["B"].as_deref(), Some("2"));
}

#[test]
fn later_files_override_earlier_ones_as_compose_merges() {
    let (_t, d) = Dir::new("p");
    write(
        &d,
        "base.yaml",
        "services:\n  web:\n    image: web:1\n    command: [serve, --port, '80']\n    environment: [A=1, B=1]\n    ports: ['80:80']\n    volumes: ['./a:/data', 'logs:/logs']\n    labels: {x: '1'}\nvolumes: {logs: {}}\n",
    );
    write(
        &d,
        "prod.yaml",
        "services:\n  web:\n    image: web:2\n    command: serve --prod\n    environment: {B: '2', C: '3'}\n    ports: ['80:80', '443:443']\n    volumes: ['./b:/data']\n  cache:\n    image: redis\n",
    );
    let p = load(&LoadOptions { files: vec!["base.yaml".into(), "prod.yaml".into()], ..opts(&d) }).unwrap();
    let web = &p.services["web"];
    assert_eq!(web.image.as_deref(), Some("web:2"));
    assert_eq!(web.command.as_deref(), Some(&["serve".to_string(), "--prod".to_string()][..]));
    let env: Vec<_> = web.environment.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or(""))).collect();
    assert_eq!(env, ["A=1", "B=2", "C=3"]);
    assert_eq!(web.ports.iter().map(|p| p.target).collect::<Vec<_>>(), [80, 443]);
    assert_eq!(web.volumes.len(), 2);
    assert_eq!(web.volumes[0].source.as_deref(), Some(d.join("b").to_str().unwrap()));
    assert_eq!(web.labels["x"], "1");
    assert!(p.services.contains_key("cache"));
}

#[test]
fn project_name_comes_from_flag_env_file_key_then_directory() {
    let (_t, d) = Dir::new("Web_App.2");
    write(&d, "compose.yaml", "name: fromfile\nservices: {a: {image: x}}\n");
    assert_eq!(load(&opts(&d)).unwrap().name, "fromfile");
    let mut o = opts(&d);
    o.environment.insert("COMPOSE_PROJECT_NAME".into(), "fromenv".into());
    assert_eq!(load(&o).unwrap().name, "fromenv");
    o.project_name = Some("flag".into());
    assert_eq!(load(&o).unwrap().name, "flag");
    o.project_name = Some("Bad Name".into());
    assert!(load(&o).unwrap_err().to_string().contains("invalid project name \"Bad Name\""));
    write(&d, "compose.yaml", "services: {a: {image: x}}\n");
    assert_eq!(load(&opts(&d)).unwrap().name, "web_app2");
    assert_eq!(normalize_project_name("--My.Project"), "myproject");
}

#[test]
fn project_directory_holds_env_and_anchors_relative_paths() {
    let (_t, d) = Dir::new("p");
    write(&d, "files/compose.yaml", "services: {a: {image: 'busybox:${TAG}', volumes: ['./data:/data']}}\n");
    write(&d, "root/.env", "TAG=1.36\n");
    let p = load(&LoadOptions { files: vec!["files/compose.yaml".into()], project_directory: Some("root".into()), ..opts(&d) }).unwrap();
    assert_eq!(p.name, "root");
    assert_eq!(p.services["a"].image.as_deref(), Some("busybox:1.36"));
    assert_eq!(p.services["a"].volumes[0].source.as_deref(), Some(d.join("root/data").to_str().unwrap()));
}

#[test]
fn interpolation_reads_dotenv_under_the_environment() {
    let (_t, d) = Dir::new("p");
    write(&d, ".env", "TAG=from-dotenv\nPORT=8080\n# comment\n");
    write(&d, "compose.yaml", "services:\n  a:\n    image: app:${TAG}\n    ports: ['${PORT}:80']\n    command: echo $$HOME ${MISSING:-fallback}\n    deploy: {replicas: '${N:-2}'}\n");
    let mut o = opts(&d);
    o.environment.insert("TAG".into(), "from-env".into());
    let p = load(&o).unwrap();
    let a = &p.services["a"];
    assert_eq!(a.image.as_deref(), Some("app:from-env"));
    assert_eq!(a.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(a.command.as_deref().unwrap(), ["echo", "$HOME", "fallback"]);
    assert_eq!(p.replicas("a"), 2);
}

#[test]
fn env_file_flag_replaces_dotenv() {
    let (_t, d) = Dir::new("p");
    write(&d, ".env", "TAG=dotenv\n");
    write(&d, "prod.env", "TAG=prod\n");
    write(&d, "compose.yaml", "services: {a: {image: 'app:${TAG}'}}\n");
    let p = load(&LoadOptions { env_files: vec!["prod.env".into()], ..opts(&d) }).unwrap();
    assert_eq!(p.services["a"].image.as_deref(), Some("app:prod"));
    let e = load(&LoadOptions { env_files: vec!["nope.env".into()], ..opts(&d) }).unwrap_err().to_string();
    assert!(e.contains("nope.env"), "{e}");
}

#[test]
fn a_missing_required_variable_names_file_line_and_key() {
    let e = err("services:\n  db:\n    image: mysql\n    environment:\n      PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD in .env}\n");
    assert!(e.contains("compose.yaml:5:17: services.db.environment.PASSWORD: required variable DB_PASSWORD is missing a value: set DB_PASSWORD in .env"), "{e}");
}

#[test]
fn a_bad_interpolation_format_is_an_error() {
    let e = err("services:\n  a:\n    image: 'app:${TAG'\n");
    assert!(e.contains("compose.yaml:3:12: services.a.image: invalid interpolation format"), "{e}");
}

#[test]
fn an_unknown_key_names_file_line_and_path() {
    let e = err("services:\n  web:\n    image: busybox\n    imagee: typo\n");
    assert!(e.contains("compose.yaml:4:5: services.web.imagee: unknown key `imagee` (expected one of: image, build"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    ports:\n      - target: 80\n        publishd: 8080\n");
    assert!(e.contains("compose.yaml:6:9: services.web.ports[0].publishd: unknown key"), "{e}");
    let e = err("servics: {}\n");
    assert!(e.contains("compose.yaml:1:1: servics: unknown key"), "{e}");
}

#[test]
fn a_known_compose_key_we_do_not_support_says_so() {
    let e = err("services:\n  web:\n    image: busybox\n    shm_size: 64m\n");
    assert!(e.contains("services.web.shm_size: the Compose key `shm_size` is not supported by builder compose"), "{e}");
    let e = err("services: {}\nextends: {}\n");
    assert!(e.contains("extends: the Compose key `extends` is not supported"), "{e}");
}

#[test]
fn wrong_types_name_the_key_path() {
    let e = err("services:\n  web:\n    image: busybox\n    ports:\n      - 80:http\n");
    assert!(e.contains("compose.yaml:5:9: services.web.ports[0]: invalid port \"80:http\""), "{e}");
    let e = err("services:\n  web:\n    image: [busybox]\n");
    assert!(e.contains("compose.yaml:3:12: services.web.image: wrong type: expected a string, found a list"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    deploy:\n      replicas: many\n");
    assert!(e.contains("compose.yaml:5:17: services.web.deploy.replicas: wrong type"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    environment: 12\n");
    assert!(e.contains("services.web.environment: wrong type: expected a mapping or a list"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    read_only: maybe\n");
    assert!(e.contains("services.web.read_only: wrong type"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    restart: sometimes\n");
    assert!(e.contains("services.web.restart: invalid restart policy \"sometimes\""), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    stop_grace_period: soon\n");
    assert!(e.contains("services.web.stop_grace_period: invalid duration"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    mem_limit: lots\n");
    assert!(e.contains("services.web.mem_limit: invalid size \"lots\": use a number of bytes"), "{e}");
    let e = err("services:\n  web:\n    image: busybox\n    depends_on:\n      db: {condition: service_ready}\n  db: {image: x}\n");
    assert!(e.contains("services.web.depends_on.db.condition: unknown variant `service_ready`"), "{e}");
}

#[test]
fn yaml_syntax_errors_name_the_file_and_line() {
    let e = err("services:\n  web:\n    image: busybox\n   bad: indent\n");
    assert!(e.contains("compose.yaml:4:"), "{e}");
}

#[test]
fn depends_on_cycles_are_refused() {
    let e = err("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n  c: {image: x, depends_on: [a]}\n");
    assert_eq!(e, "depends_on cycle: a -> b -> c -> a");
    let e = err("services:\n  a: {image: x, depends_on: [a]}\n");
    assert_eq!(e, "depends_on cycle: a -> a");
}

#[test]
fn references_to_undefined_things_are_errors() {
    let e = err("services:\n  a:\n    image: x\n    depends_on: [db]\n");
    assert!(e.contains("compose.yaml:4:") && e.contains("services.a.depends_on.db: service \"a\" depends on undefined service \"db\""), "{e}");
    let e = err("services:\n  a:\n    image: x\n    volumes: ['data:/data']\n");
    assert!(e.contains("services.a.volumes[0]: service \"a\" refers to undefined volume \"data\""), "{e}");
    let e = err("services:\n  a:\n    image: x\n    networks: [front]\n");
    assert!(e.contains("services.a.networks.front: service \"a\" refers to undefined network \"front\""), "{e}");
    let e = err("services:\n  a:\n    command: true\n");
    assert!(e.contains("compose.yaml:2:3: services.a: the service has neither `image` nor `build`"), "{e}");
}

#[test]
fn short_and_long_forms_become_one_normal_form() {
    let p = load_text(
        r#"
services:
  web:
    build: ./web
    entrypoint: /bin/sh -c
    environment: [A=1, "B=x=y", C]
    env_file: []
    ports:
      - "127.0.0.1:8080:80"
      - "9090-9091:8080-8081/udp"
      - 3000
      - "[::1]:53:53/udp"
      - target: 22
        published: "2222"
        host_ip: 0.0.0.0
    expose: [3000, "4000"]
    volumes:
      - data:/var/lib/data:ro
      - /cache
      - type: tmpfs
        target: /run
        tmpfs: {size: 64m}
    tmpfs: /tmp
    networks:
      back:
        aliases: [api]
      front:
    labels: [com.example=1, flag]
    extra_hosts: ["db.local:10.0.0.2", "v6=::1"]
    healthcheck:
      test: curl -f http://localhost/
      interval: 1m30s
      retries: 3
    mem_limit: 512m
    cpus: "0.5"
    stop_grace_period: 1m
    init: yes
    restart: on-failure:3
  db:
    image: postgres
    depends_on:
      web: {condition: service_healthy}
volumes:
  data:
networks:
  back: {internal: true, ipam: {config: [{subnet: 172.28.0.0/16}]}}
  front: {external: true}
"#,
    )
    .unwrap();
    let web = &p.services["web"];
    assert!(web.build.as_ref().unwrap().context.ends_with("/app/web"));
    assert_eq!(web.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c"]);
    assert_eq!(web.environment.get("A"), Some(&Some("1".into())));
    assert_eq!(web.environment.get("B"), Some(&Some("x=y".into())));
    assert!(!web.environment.contains_key("C"), "an unset variable without a value is left out");
    let ports: Vec<String> =
        web.ports.iter().map(|p| format!("{}:{}:{}/{}", p.host_ip.as_deref().unwrap_or(""), p.published.as_deref().unwrap_or(""), p.target, p.protocol)).collect();
    assert_eq!(ports, ["127.0.0.1:8080:80/tcp", ":9090:8080/udp", ":9091:8081/udp", "::3000/tcp", "::1:53:53/udp", "0.0.0.0:2222:22/tcp"]);
    assert_eq!(web.expose, ["3000", "4000"]);
    assert_eq!((web.volumes[0].kind, web.volumes[0].source.as_deref(), web.volumes[0].read_only), (MountType::Volume, Some("data"), true));
    assert_eq!((web.volumes[1].kind, web.volumes[1].source.as_deref()), (MountType::Volume, None));
    assert_eq!(web.volumes[2].tmpfs.as_ref().unwrap().size, Some(64 << 20));
    assert_eq!(web.tmpfs, ["/tmp"]);
    assert_eq!(web.networks["back"].aliases, ["api"]);
    assert!(web.networks.contains_key("front"));
    assert_eq!(web.labels["flag"], "");
    assert_eq!(web.extra_hosts["db.local"], "10.0.0.2");
    assert_eq!(web.extra_hosts["v6"], "::1");
    let hc = web.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!(hc.interval.unwrap().as_secs(), 90);
    assert_eq!(web.mem_limit, Some(512 << 20));
    assert_eq!(web.cpus, Some(0.5));
    assert_eq!(web.init, Some(true));
    assert_eq!(web.restart, Some(RestartPolicy::OnFailure(Some(3))));
    assert_eq!(p.services["db"].depends_on["web"].condition, Condition::ServiceHealthy);
    assert_eq!(p.networks["front"].name.as_deref(), Some("front"));
    assert_eq!(p.networks["back"].name.as_deref(), Some("app_back"));
    assert!(p.networks["back"].internal);
    assert_eq!(p.volumes["data"].name.as_deref(), Some("app_data"));
    assert_eq!(p.networks["default"].name.as_deref(), Some("app_default"), "db uses the default network");
    assert!(!p.services["web"].networks.contains_key("default"));
    assert_eq!(p.ordered(&["db".into()], true).unwrap(), ["web", "db"]);
    assert_eq!(p.ordered(&["db".into()], false).unwrap(), ["db"]);
}

#[test]
fn service_env_files_fill_environment_under_its_own_entries() {
    let (_t, d) = Dir::new("p");
    write(&d, "web.env", "A=from-file\nB=from-file\n");
    write(&d, "compose.yaml", "services:\n  web:\n    image: x\n    env_file: [web.env, {path: optional.env, required: false}]\n    environment: {B: own}\n");
    let p = load(&opts(&d)).unwrap();
    let env = &p.services["web"].environment;
    assert_eq!(env["A"].as_deref(), Some("from-file"));
    assert_eq!(env["B"].as_deref(), Some("own"));
    write(&d, "compose.yaml", "services:\n  web:\n    image: x\n    env_file: missing.env\n");
    let e = load(&opts(&d)).unwrap_err().to_string();
    assert!(e.contains("services.web.env_file: env file") && e.contains("missing.env not found"), "{e}");
}

#[test]
fn extensions_and_anchors_share_fragments() {
    let p = load_text("x-common: &common\n  image: busybox\n  environment: {TZ: UTC}\nservices:\n  a:\n    <<: *common\n    x-note: ignored\n  b:\n    <<: *common\n    image: alpine\n").unwrap();
    assert_eq!(p.services["a"].image.as_deref(), Some("busybox"));
    assert_eq!(p.services["b"].image.as_deref(), Some("alpine"));
    assert_eq!(p.services["b"].environment["TZ"].as_deref(), Some("UTC"));
}

#[test]
fn profiles_leave_services_out_unless_active() {
    let (_t, d) = Dir::new("p");
    write(&d, "compose.yaml", "services:\n  app: {image: x}\n  debug: {image: y, profiles: [dev]}\n");
    let p = load(&opts(&d)).unwrap();
    assert_eq!(p.services.keys().collect::<Vec<_>>(), ["app"]);
    assert!(p.disabled.contains_key("debug"));
    let p = load(&LoadOptions { profiles: vec!["dev".into()], ..opts(&d) }).unwrap();
    assert_eq!(p.services.len(), 2);
}

#[test]
fn config_output_is_normalized_and_loads_back_the_same() {
    let p = load_text("version: '2.4'\nservices:\n  web:\n    image: busybox\n    command: echo 'hello world'\n    ports: ['8080:80']\n    environment: [GREETING=hi, EMPTY=]\n    healthcheck: {test: [CMD, 'true'], interval: 90s}\n").unwrap();
    let yaml = p.to_yaml();
    assert!(yaml.starts_with("name: app\nnetworks:\n  default:\n    name: app_default\nservices:\n  web:\n    command:\n      - echo\n      - hello world\n"), "{yaml}");
    assert!(yaml.contains("    environment:\n      EMPTY: \"\"\n      GREETING: hi\n"), "{yaml}");
    assert!(yaml.contains("      interval: 1m30s\n"), "{yaml}");
    assert!(yaml.contains("    ports:\n      - mode: ingress\n        protocol: tcp\n        published: \"8080\"\n        target: 80\n"), "{yaml}");
    let again = load_text(&yaml).unwrap();
    assert_eq!(again.services, p.services);
    assert_eq!(again.to_yaml(), yaml);
}

#[test]
fn ulimits_take_one_number_or_soft_and_hard() {
    let p = load_text("services:\n  a:\n    image: x\n    ulimits:\n      nproc: 65535\n      nofile: {soft: 1024, hard: 2048}\n").unwrap();
    let u = &p.services["a"].ulimits;
    assert_eq!((u["nproc"].soft, u["nproc"].hard, u["nofile"].soft, u["nofile"].hard), (65535, 65535, 1024, 2048));
    let e = err("services:\n  a:\n    image: x\n    ulimits:\n      nofile: {soft: 4096, hard: 2048}\n");
    assert!(e.contains("ulimits.nofile: soft limit 4096 is above the hard limit 2048"), "{e}");
    let e = err("services:\n  a:\n    image: x\n    ulimits:\n      nofile: lots\n");
    assert!(e.contains("ulimits.nofile: \"lots\" is not a number"), "{e}");
}
