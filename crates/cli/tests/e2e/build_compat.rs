//! End-to-end: `builder build` gives what BuildKit gives. Each test pins a difference the
//! differential check (testdata/build/differential.sh, against `docker build`) found, with the
//! values BuildKit produced; none of them needs dockerd.
use crate::util::*;

use std::collections::BTreeMap;
use std::path::Path;

/// One entry of the image's filesystem, as the differential check lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    owner: (u64, u64),
    body: Vec<u8>,
    link: String,
}

/// Builds `ctx` with `--output type=tar` and returns the image's filesystem by path.
fn build_files(b: &Builder, ctx: &Path) -> BTreeMap<String, Entry> {
    let out = tempfile::tempdir().expect("tmp");
    let tar_path = out.path().join("fs.tar");
    let dest = format!("type=tar,dest={}", tar_path.display());
    b.ok(&["build", "-q", "--output", &dest, ctx.to_str().expect("utf8")]);
    let mut files = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(&tar_path).expect("open tar"));
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).trim_start_matches("./").trim_end_matches('/').to_string();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Fifo => 'p',
            _ => 'f',
        };
        let link = h.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).expect("read entry");
        let entry = Entry { kind, mode: h.mode().expect("mode") & 0o7777, owner: (h.uid().expect("uid"), h.gid().expect("gid")), body, link };
        files.insert(name, entry);
    }
    files
}

/// Builds `ctx` as `tag` and returns its image config.
fn build_config(b: &Builder, ctx: &Path, tag: &str) -> serde_json::Value {
    b.ok(&["build", "-q", "-t", tag, ctx.to_str().expect("utf8")]);
    image_config(b, tag)
}

/// The image config of `tag` in the store.
fn image_config(b: &Builder, tag: &str) -> serde_json::Value {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(b.root().join("index.json")).expect("index")).expect("json");
    let full = format!("docker.io/library/{tag}");
    let m = index["manifests"].as_array().expect("manifests").iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == full.as_str()).expect("tag in index");
    let blob = |d: &str| std::fs::read(b.root().join("blobs/sha256").join(d.trim_start_matches("sha256:"))).expect("blob");
    let manifest: serde_json::Value = serde_json::from_slice(&blob(m["digest"].as_str().expect("digest"))).expect("manifest");
    serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().expect("config digest"))).expect("config")
}

/// `created_by` of the history entries this build added (after the base image's one entry).
fn history(config: &serde_json::Value) -> Vec<String> {
    config["history"].as_array().expect("history").iter().skip(1).map(|h| h["created_by"].as_str().unwrap_or_default().to_string()).collect()
}

fn file<'a>(files: &'a BTreeMap<String, Entry>, path: &str) -> &'a Entry {
    files.get(path).unwrap_or_else(|| panic!("{path} is not in the image: {:?}", files.keys().filter(|k| !k.starts_with("bin/")).collect::<Vec<_>>()))
}

#[test]
fn history_text_is_what_buildkit_writes() {
    let b = with_busybox();
    let df = r#"FROM busybox:test
ARG V=1
ARG NOVALUE
ENV A=1 B="two words"
ENV legacy form value
LABEL one=1 "two words"="x y"
EXPOSE 80 53/UDP 8000-8001
VOLUME ["/v1", "/v2"]
USER 1000:1000
WORKDIR app
WORKDIR sub
STOPSIGNAL SIGINT
MAINTAINER Someone <someone@example.com>
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --retries=5 CMD ["/bin/true", "arg"]
ONBUILD RUN echo child
USER root
COPY --chown=1000:1000 --chmod=600 a.txt /owned.txt
COPY --from=busybox:test /etc/passwd /passwd
RUN echo "$V" > /v.txt
ENV V=from-env
RUN echo "$V" > /v2.txt
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT echo "quoted \"arg\""
CMD ["x"]
"#;
    let ctx = context(&[("Dockerfile", df), ("a.txt", "a\n")]);
    let config = build_config(&b, ctx.path(), "history:1");
    let expected = [
        "ARG V=1",
        "ARG NOVALUE",
        "ENV A=1 B=two words",
        "ENV legacy=form value",
        "LABEL one=1 two words=x y",
        "EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]",
        "VOLUME [/v1 /v2]",
        "USER 1000:1000",
        "WORKDIR /app",
        "WORKDIR /app/sub",
        "STOPSIGNAL SIGINT",
        "MAINTAINER Someone <someone@example.com>",
        "HEALTHCHECK {Test:[CMD /bin/true arg] Interval:30s Timeout:3s StartPeriod:1m30s StartInterval:0s Retries:5}",
        "USER root",
        "COPY --chown=1000:1000 --chmod=600 a.txt /owned.txt # buildkit",
        "COPY /etc/passwd /passwd # buildkit",
        "RUN |2 V=1 NOVALUE= /bin/sh -c echo \"$V\" > /v.txt # buildkit",
        "ENV V=from-env",
        "RUN |2 V=from-env NOVALUE= /bin/sh -c echo \"$V\" > /v2.txt # buildkit",
        "SHELL [/bin/sh -ec]",
        r#"ENTRYPOINT ["/bin/sh" "-ec" "echo \"quoted \\\"arg\\\"\""]"#,
        r#"CMD ["x"]"#,
    ];
    assert_eq_text(&expected.join("\n"), &history(&config).join("\n"));
    let comments: Vec<&str> = config["history"].as_array().expect("history").iter().skip(1).map(|h| h["comment"].as_str().unwrap_or_default()).collect();
    assert!(comments.iter().all(|c| *c == "buildkit.dockerfile.v0"), "{comments:?}");
    assert_eq!(config["config"]["OnBuild"], serde_json::json!(["RUN echo child"]), "the trigger stays in the config, with no history step");
    assert_eq!(config["config"]["ArgsEscaped"], true, "BuildKit sets ArgsEscaped with every CMD");
    assert_eq!(config["author"], "Someone <someone@example.com>", "MAINTAINER is the image's author");
}

#[test]
fn expose_ranges_name_every_port() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nEXPOSE 8000-8002/tcp 53/UDP 443\nEXPOSE 9000-9001\n")]);
    let config = build_config(&b, ctx.path(), "ports:1");
    let ports: Vec<&String> = config["config"]["ExposedPorts"].as_object().expect("ports").keys().collect();
    assert_eq!(ports, ["443/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp", "9000/tcp", "9001/tcp"]);
    let bad = context(&[("Dockerfile", "FROM busybox:test\nEXPOSE 80/http\n")]);
    let err = b.fails(&["build", "-q", bad.path().to_str().expect("utf8")]);
    assert!(err.contains("invalid proto: http") && err.contains("Dockerfile:2"), "{err}");
}

#[test]
fn copy_onto_a_symlink_writes_where_the_link_points() {
    let b = with_busybox();
    let df = "FROM busybox:test
RUN mkdir -p /real/dir && ln -s /real/dir /linkdir && ln -s real /rel && echo x > /real/file && ln -s /real/file /linkfile && ln -s /nowhere /dangling
COPY a.txt /linkdir/
COPY a.txt /rel/dir/b.txt
COPY a.txt /linkfile
COPY a.txt /dangling
COPY dir /linkdir/sub
";
    let ctx = context(&[("Dockerfile", df), ("a.txt", "a\n"), ("dir/inner/i", "i\n")]);
    let files = build_files(&b, ctx.path());
    for (link, target) in [("linkdir", "/real/dir"), ("rel", "real"), ("linkfile", "/real/file"), ("dangling", "/nowhere")] {
        let e = file(&files, link);
        assert_eq!((e.kind, e.link.as_str()), ('l', target), "{link} stays a symlink");
    }
    for path in ["real/dir/a.txt", "real/dir/b.txt", "real/file", "nowhere"] {
        assert_eq!(file(&files, path).body, b"a\n", "{path}");
    }
    assert_eq!(file(&files, "real/dir/sub/inner/i").body, b"i\n");
}

#[test]
fn hardlinks_in_one_copy_source_stay_hardlinks() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nCOPY . /ctx/\nCOPY hl1 hl2 /pair/\n"), ("hl1", "linked\n"), ("sub/s", "s\n")]);
    std::fs::hard_link(ctx.path().join("hl1"), ctx.path().join("hl2")).expect("link");
    std::fs::hard_link(ctx.path().join("hl1"), ctx.path().join("sub/hl3")).expect("link");
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "ctx/hl1").kind, 'f');
    for linked in ["ctx/hl2", "ctx/sub/hl3"] {
        let e = file(&files, linked);
        assert_eq!((e.kind, e.link.as_str()), ('h', "ctx/hl1"), "{linked}");
    }
    // Two sources are two copies, as in BuildKit: no link between them.
    assert_eq!((file(&files, "pair/hl1").kind, file(&files, "pair/hl2").kind), ('f', 'f'));
    assert_eq!(file(&files, "pair/hl2").body, b"linked\n");
}

#[test]
fn copy_chmod_keeps_special_bits_and_gives_new_directories_its_permissions() {
    let b = with_busybox();
    let df = "FROM busybox:test
COPY --chmod=4755 a.txt /m3
COPY --chmod=700 dir /m4
COPY --chmod=1777 dir/ /m5/
COPY --chown=1:1 --chmod=444 dir /m7
COPY --chmod=640 a.txt /new/parent/a.txt
COPY --chmod=u+x a.txt /sym/a.txt
";
    let ctx = context(&[("Dockerfile", df), ("a.txt", "a\n"), ("dir/f", "f\n"), ("dir/sub/s", "s\n")]);
    let files = build_files(&b, ctx.path());
    let mode = |p: &str| file(&files, p).mode;
    assert_eq!(mode("m3"), 0o4755);
    assert_eq!((mode("m4"), mode("m4/sub"), mode("m4/f")), (0o700, 0o700, 0o700));
    assert_eq!((mode("m5"), mode("m5/sub"), mode("m5/sub/s")), (0o777, 0o1777, 0o1777));
    assert_eq!((mode("m7"), file(&files, "m7").owner, mode("m7/f")), (0o444, (1, 1), 0o444));
    assert_eq!((mode("new"), mode("new/parent"), mode("new/parent/a.txt")), (0o640, 0o640, 0o640));
    assert_eq!((mode("sym"), mode("sym/a.txt")), (0o755, 0o744), "a symbolic --chmod leaves new directories at 0755");
}

#[test]
fn add_unpacks_only_what_holds_a_tar() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nADD notatar.gz /notatar/\nADD fake.tar /fake/\nADD real.tar.gz /real/\n"), ("fake.tar", "not a tar\n")]);
    let gz = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut e, data).expect("gzip");
        e.finish().expect("gzip")
    };
    std::fs::write(ctx.path().join("notatar.gz"), gz(b"just text\n")).expect("write");
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    t.append_data(&mut h, "in/a", &b"a\n"[..]).expect("tar");
    std::fs::write(ctx.path().join("real.tar.gz"), gz(&t.into_inner().expect("tar"))).expect("write");
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "notatar/notatar.gz").body, gz(b"just text\n"), "a gzip of text is copied as it is");
    assert_eq!(file(&files, "fake/fake.tar").body, b"not a tar\n");
    let a = file(&files, "real/in/a");
    assert_eq!((a.body.as_slice(), a.mode), (&b"a\n"[..], 0o600));
}

#[test]
fn add_unpacks_bzip2_and_xz_tars() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nADD rootfs.tar.xz /\nADD more.tar.bz2 /opt/\n"), ("t/in/a", "a\n"), ("t/in/deep/d", "d\n")]);
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh").arg("-c").arg(cmd).current_dir(ctx.path()).status().expect("sh");
        assert!(st.success(), "{cmd}");
    };
    sh("chmod 700 t/in/deep && tar -cJf rootfs.tar.xz -C t in && tar -cjf more.tar.bz2 -C t in && rm -r t");
    let files = build_files(&b, ctx.path());
    for root in ["in", "opt/in"] {
        assert_eq!(file(&files, &format!("{root}/a")).body, b"a\n", "{root}");
        assert_eq!(file(&files, &format!("{root}/deep")).mode, 0o700, "{root}");
        assert_eq!(file(&files, &format!("{root}/deep/d")).body, b"d\n", "{root}");
    }
    assert!(!files.contains_key("rootfs.tar.xz") && !files.contains_key("opt/more.tar.bz2"));
}

#[test]
fn a_fifo_in_the_context_is_copied_without_waiting_for_a_writer() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nCOPY . /ctx/\n"), ("a.txt", "a\n")]);
    nix::unistd::mkfifo(&ctx.path().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "ctx/a.txt").body, b"a\n");
    assert_eq!(file(&files, "ctx/fifo").kind, 'p');
}

#[test]
fn workdir_follows_symlinks_and_is_owned_by_the_user() {
    let b = with_busybox();
    let df = "FROM busybox:test\nRUN mkdir /real && ln -s /real /link\nWORKDIR /link/made\nUSER app\nWORKDIR /as-app/deep\nRUN touch f\n";
    let ctx = context(&[("Dockerfile", df)]);
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "link").kind, 'l');
    assert_eq!(file(&files, "real/made").kind, 'd');
    for d in ["as-app", "as-app/deep"] {
        assert_eq!((file(&files, d).mode, file(&files, d).owner), (0o755, (1000, 1000)), "{d}");
    }
    assert_eq!(file(&files, "as-app/deep/f").owner, (1000, 1000));
}

#[test]
fn copy_flags_and_paths_expand_args_and_env() {
    let b = with_busybox();
    let df = "FROM busybox:test
ARG OWNER=1234
ARG GROUP=5678
ARG MODE=0640
ARG SRC=a.txt
ENV DEST=/dest
COPY --chown=${OWNER}:${GROUP} ${SRC} ${DEST}/owned
COPY --chmod=${MODE} $SRC $DEST/moded
WORKDIR ${DEST}/sub-${SRC}
ADD ${SRC} .
";
    let ctx = context(&[("Dockerfile", df), ("a.txt", "a\n")]);
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "dest/owned").owner, (1234, 5678));
    assert_eq!(file(&files, "dest/moded").mode, 0o640, "--chmod expands, as in current BuildKit");
    assert_eq!(file(&files, "dest/sub-a.txt/a.txt").body, b"a\n");
}

#[test]
fn run_sees_the_env_buildkit_gives_it_and_no_hostname_variable() {
    let b = with_busybox();
    let df = "FROM busybox:test AS base\nENV B=1 A=2\nENV PATH=/opt/bin:$PATH\nFROM base\nENV B=3 C=$A\nENV A=\nENV D=\"$B $C\" E='${B}'\nRUN env | sort > /env.txt && hostname > /hostname.txt\n";
    let ctx = context(&[("Dockerfile", df)]);
    let files = build_files(&b, ctx.path());
    let env = String::from_utf8_lossy(&file(&files, "env.txt").body).into_owned();
    let expected = "A=\nB=3\nC=2\nD=3 2\nE=${B}\nHOME=/root\nPATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nPWD=/\nSHLVL=1\n";
    assert_eq_text(expected, &env);
    assert_eq!(file(&files, "hostname.txt").body, b"buildkitsandbox\n");
}

/// A loopback HTTP server answering every request by its path: `/go` redirects (relative
/// Location) to `/files/target.txt`; any other path gets its own name as the body. Stops when
/// the test ends (the thread is detached; the listener lives as long as the process).
fn http_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut s) = stream else { continue };
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut r, &mut line);
            loop {
                let mut h = String::new();
                if std::io::BufRead::read_line(&mut r, &mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let reply = if path == "/go" {
                "HTTP/1.1 302 Found\r\nLocation: files/target.txt\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{path}", path.len())
            };
            let _ = std::io::Write::write_all(&mut s, reply.as_bytes());
        }
    });
    addr
}

#[test]
fn add_of_a_url_names_and_modes_the_file_as_buildkit_does() {
    let b = with_busybox();
    let addr = http_server();
    let df = format!(
        "FROM busybox:test
ADD http://{addr}/dl/file.txt?version=1 /query/
ADD http://{addr}/name%20with%20space.txt /encoded/
ADD http://{addr}/ /root-url/
ADD http://{addr}/go /redirected
ADD --chmod=644 http://{addr}/mode /chmodded
ADD --chown=1:2 http://{addr}/owner /owned/
"
    );
    let ctx = context(&[("Dockerfile", &df)]);
    let files = build_files(&b, ctx.path());
    let f = |p: &str| file(&files, p);
    assert_eq!((f("query/file.txt").body.as_slice(), f("query/file.txt").mode), (&b"/dl/file.txt?version=1"[..], 0o600), "downloads are 0600");
    assert_eq!(f("encoded/name with space.txt").body, b"/name%20with%20space.txt");
    assert_eq!(f("root-url/__unnamed__").body, b"/");
    assert_eq!(f("redirected").body, b"/files/target.txt", "a relative Location resolves against the request");
    assert_eq!(f("chmodded").mode, 0o644, "--chmod applies to downloads in current BuildKit");
    assert_eq!(f("owned/owner").owner, (1, 2));
}

#[test]
fn every_chmod_that_parses_builds_and_the_rest_is_refused_at_parse_time() {
    let b = with_busybox();
    let df = "FROM busybox:test\nCOPY --chmod=g=u a /g\nCOPY --chmod=u+x-w a /ux\nARG M=go=u\nCOPY --chmod=$M a /arg\n";
    let ctx = context(&[("Dockerfile", df), ("a", "a\n")]);
    std::fs::set_permissions(ctx.path().join("a"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).expect("chmod");
    let files = build_files(&b, ctx.path());
    assert_eq!((file(&files, "g").mode, file(&files, "ux").mode, file(&files, "arg").mode), (0o660, 0o540, 0o666));

    // What cannot apply never reaches the build: builder parse names file:line:col.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox:test\nCOPY --chmod=u+rwu a /b\n").expect("write");
    let err = b.fails(&["parse", "--format", "json", "-f", &ctx.path().join("Dockerfile").display().to_string()]);
    assert!(err.contains("Dockerfile:2:") && err.contains("invalid --chmod=u+rwu"), "{err}");
    // From a variable, the build refuses it at the line before running anything.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox:test\nARG M=u*x\nCOPY --chmod=$M a /b\n").expect("write");
    let err = b.fails(&["build", "--progress", "plain", &ctx.path().display().to_string()]);
    assert!(err.contains("Dockerfile:3") && err.contains("invalid --chmod=u*x"), "{err}");
}

#[test]
fn a_failed_download_names_the_url_and_the_add_line() {
    let b = with_busybox();
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let ctx = context(&[("Dockerfile", &format!("FROM busybox:test\nRUN true\nADD http://127.0.0.1:{port}/f.txt /f.txt\n"))]);
    let log = b.fails(&["build", "--progress", "plain", &ctx.path().display().to_string()]);
    assert!(log.contains(&format!("http://127.0.0.1:{port}/f.txt")) && log.contains("at Dockerfile:3"), "{log}");
}

#[test]
fn heredocs_run_scripts_by_their_shebang_and_copy_like_files() {
    let b = with_busybox();
    let df = "FROM busybox:test
RUN <<EOF
#!/bin/awk -f
BEGIN { print \"from awk\" > \"/awk.txt\" }
EOF
RUN <<EOF
echo plain > /plain.txt
EOF
COPY <<EOF /etc
into an existing directory
EOF
COPY --chmod=u+x <<run.sh /bin/
#!/bin/sh
run.sh
COPY --chown=1000:1000 <<EOF /new/dir/file
owned
EOF
RUN test ! -e /dev/pipes
";
    let ctx = context(&[("Dockerfile", df)]);
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "awk.txt").body, b"from awk\n", "a #! script runs with its interpreter");
    assert_eq!(file(&files, "plain.txt").body, b"plain\n");
    assert_eq!((file(&files, "etc").kind, file(&files, "etc/EOF").body.as_slice()), ('d', &b"into an existing directory\n"[..]));
    assert_eq!(file(&files, "bin/run.sh").mode, 0o744, "heredocs are 0644 before --chmod");
    assert_eq!(file(&files, "new/dir/file").owner, (1000, 1000));
    assert!(!files.keys().any(|k| k.starts_with("dev/")), "no /dev/pipes stub is left");
}

#[test]
fn copy_parents_keeps_the_path_below_the_pivot() {
    let b = with_busybox();
    let df = "FROM busybox:test\nCOPY --parents src/a/*.txt /full/\nCOPY --parents ./src/./a/x.txt src/./b /pivot/\n";
    let ctx = context(&[("Dockerfile", df), ("src/a/x.txt", "x\n"), ("src/a/y.md", "y\n"), ("src/b/z.txt", "z\n")]);
    let files = build_files(&b, ctx.path());
    assert_eq!(file(&files, "full/src/a/x.txt").body, b"x\n");
    assert!(!files.contains_key("full/src/a/y.md"));
    assert_eq!(file(&files, "pivot/a/x.txt").body, b"x\n");
    assert_eq!(file(&files, "pivot/b/z.txt").body, b"z\n");
    assert!(!files.contains_key("pivot/src"), "{:?}", files.keys().filter(|k| k.starts_with("pivot")).collect::<Vec<_>>());
}

#[test]
fn a_later_arg_wins_over_an_env_of_the_same_name_in_run_but_not_in_the_image() {
    let b = with_busybox();
    let df = "FROM busybox:test
ENV X=from-env
ARG X=from-arg
ARG Y=from-arg
ENV Y=from-env
ARG Z
ENV Z=${Z:-z-default}
RUN echo \"X=$X Y=$Y Z=$Z\" > /result
ARG X
RUN echo \"X=$X\" > /result2
";
    let ctx = context(&[("Dockerfile", df)]);
    let out = tempfile::tempdir().expect("tmp");
    let dest = format!("type=tar,dest={}", out.path().join("fs.tar").display());
    b.ok(&["build", "-q", "--build-arg", "Z=from-cli", "-t", "clash:1", "--output", &dest, ctx.path().to_str().expect("utf8")]);
    b.ok(&["build", "-q", "--build-arg", "Z=from-cli", "-t", "clash:1", ctx.path().to_str().expect("utf8")]);
    let mut files = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(out.path().join("fs.tar")).expect("tar"));
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).trim_start_matches("./").to_string();
        let mut body = String::new();
        if std::io::Read::read_to_string(&mut e, &mut body).is_ok() {
            files.insert(name, body);
        }
    }
    assert_eq!(files.get("result").map(String::as_str), Some("X=from-arg Y=from-env Z=from-cli\n"));
    assert_eq!(files.get("result2").map(String::as_str), Some("X=from-arg\n"), "declared again without a value, an ARG keeps its value");
    let config = image_config(&b, "clash:1");
    let env: Vec<&str> = config["config"]["Env"].as_array().expect("env").iter().filter_map(|v| v.as_str()).collect();
    assert!(env.contains(&"X=from-env") && env.contains(&"Z=from-cli"), "{env:?}");
    let h = history(&config);
    assert!(h.contains(&"RUN |3 X=from-arg Y=from-env Z=from-cli /bin/sh -c echo \"X=$X\" > /result2 # buildkit".to_string()), "{h:#?}");
}

#[test]
fn a_scratch_stage_has_buildkits_workdir_and_path() {
    let b = Builder::new();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a.txt /\n"), ("a.txt", "a\n")]);
    let config = build_config(&b, ctx.path(), "scratch:1");
    assert_eq!(config["config"]["WorkingDir"], "/");
    assert_eq!(config["config"]["Env"], serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]));
}

#[test]
fn a_wildcard_matching_a_dangling_symlink_names_the_missing_file() {
    let b = with_busybox();
    let ctx = context(&[("Dockerfile", "FROM busybox:test\nCOPY sym-* /glob/\n"), ("file.txt", "f\n")]);
    std::os::unix::fs::symlink("file.txt", ctx.path().join("sym-file")).expect("link");
    std::os::unix::fs::symlink("missing", ctx.path().join("sym-broken")).expect("link");
    let err = b.fails(&["build", "-q", ctx.path().to_str().expect("utf8")]);
    assert!(err.contains("\"/missing\": not found") && err.contains("sym-broken"), "{err}");
}

/// A builder root with `mini:1`: busybox and /etc/passwd only (no /dev, /proc, /sys, /tmp), the
/// minimal base of testdata/build/differential.sh's second pass.
fn with_minimal_base() -> Builder {
    let b = Builder::new();
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("sh");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let tar = dir.path().join("mini.tar");
    let st = std::process::Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().expect("tar");
    assert!(st.success());
    b.ok(&["import", tar.to_str().expect("utf8"), "mini:1"]);
    b
}

#[test]
fn a_run_on_a_base_without_dev_proc_sys_leaves_no_mount_points_in_the_layer() {
    let b = with_minimal_base();
    let df = "FROM mini:1
RUN --mount=type=tmpfs,target=/scratch/tmp --mount=type=cache,target=/var/cache/x /bin/busybox sh -c 'echo ran > /ran.txt; test -d /proc/self && test -c /dev/null'
";
    let ctx = context(&[("Dockerfile", df)]);
    let files = build_files(&b, ctx.path());
    let names: Vec<&String> = files.keys().filter(|k| !k.starts_with("bin")).collect();
    assert_eq!(names, ["etc", "etc/passwd", "ran.txt"], "the sandbox's /dev, /proc, /sys, /etc/hosts… and mount targets are not in the image");
}

#[test]
fn copy_chmod_to_a_new_directory_of_a_minimal_base_gives_it_the_mode() {
    // BuildKit's COPY creates the missing parents of the destination with --chmod's octal bits
    // (dockerfile2llb passes the mode to the copy's mkdir of parents): `/newdir` is 0640 as with
    // Debian's `docker build`.
    let b = with_minimal_base();
    let ctx = context(&[("Dockerfile", "FROM mini:1\nCOPY --chmod=0640 src/file /newdir/file\n"), ("src/file", "f\n")]);
    let files = build_files(&b, ctx.path());
    assert_eq!((file(&files, "newdir").mode, file(&files, "newdir/file").mode), (0o640, 0o640));
    assert!(!files.contains_key("tmp") && !files.contains_key("dev"), "{:?}", files.keys().collect::<Vec<_>>());
}
