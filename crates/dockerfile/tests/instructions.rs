//! The typed instruction layer: what each instruction means, checked flags,
//! heredocs, expansion, scoping, and the errors users see.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use dockerfile::scope::Scope;
use dockerfile::{
    CacheSharing, Dockerfile, ErrorKind, Instruction, MountType, NetworkMode, SecurityMode, ShellOrExec, Span,
};

fn testdata(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/parse").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn parse(text: &str) -> Dockerfile {
    Dockerfile::parse(text.as_bytes(), "Dockerfile").unwrap_or_else(|e| panic!("parse failed: {e}"))
}

/// The error a Dockerfile gives: (kind, line, column, message).
fn error_of(text: &[u8]) -> (ErrorKind, usize, usize, String) {
    let err = Dockerfile::parse(text, "Dockerfile").expect_err("expected an error");
    let e = err.dockerfile().unwrap_or_else(|| panic!("not a Dockerfile error: {err}"));
    (e.kind, e.span.line, e.span.column, e.message.clone())
}

fn only(df: &Dockerfile) -> &[Instruction] {
    &df.stages[0].instructions
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn example_dockerfile_has_two_stages_with_typed_instructions() {
    let df = Dockerfile::parse(&testdata("Dockerfile.example"), "Dockerfile").unwrap();
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(df.stages.len(), 2);
    let build = &df.stages[0];
    assert_eq!(build.from.name.as_deref(), Some("build"));
    assert_eq!(build.from.image.value, "golang:${GO_VERSION}-alpine${ALPINE_VERSION}");
    assert_eq!(build.from.platform.as_ref().map(|p| p.value.as_str()), Some("$BUILDPLATFORM"));
    assert_eq!(build.from.span, Span { line: 8, column: 1 });
    let runtime = &df.stages[1];
    let copy = runtime.instructions.iter().find_map(|i| match i {
        Instruction::Copy(c) if c.from.is_some() => Some(c),
        _ => None,
    });
    let copy = copy.expect("COPY --from");
    assert_eq!((copy.from.as_deref(), copy.chown.as_deref(), copy.chmod.as_deref()), (Some("build"), Some("app:app"), Some("0755")));
    assert_eq!(copy.sources[0].value, "/out/server");
    assert_eq!(copy.dest.value, "/usr/local/bin/server");
    let Some(Instruction::Healthcheck(h)) = runtime.instructions.iter().find(|i| i.name() == "HEALTHCHECK") else { panic!() };
    assert_eq!(h.test, ["CMD", "/usr/local/bin/server", "healthcheck"]);
    assert_eq!((h.interval, h.timeout, h.retries), (Some(30_000_000_000), Some(3_000_000_000), Some(3)));
}

#[test]
fn run_mounts_network_and_security_are_typed() {
    let df = Dockerfile::parse(&testdata("mounts.Dockerfile"), "Dockerfile").unwrap();
    let Instruction::Run(run) = &only(&df)[0] else { panic!() };
    let kinds: Vec<MountType> = run.mounts.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [MountType::Bind, MountType::Cache, MountType::Tmpfs, MountType::Secret, MountType::Ssh]);
    assert!(!run.mounts[0].readonly);
    assert_eq!(run.mounts[1].sharing, Some(CacheSharing::Private));
    assert_eq!((run.mounts[1].mode, run.mounts[1].uid, run.mounts[1].gid), (Some(0o755), Some(0), Some(0)));
    assert_eq!(run.mounts[2].size, Some(64 * 1024 * 1024));
    assert!(run.mounts[3].required);
    assert_eq!(run.mounts[3].env.as_deref(), Some("TOKEN"));
    assert_eq!(run.mounts[4].target.as_deref(), Some("/run/ssh.sock"));
    assert_eq!(run.network, Some(NetworkMode::None));
    assert_eq!(run.security, Some(SecurityMode::Sandbox));
    assert_eq!(run.command, ShellOrExec::Shell("ls /src".into()));
    assert_eq!(run.mounts[1].span, Span { line: 3, column: 5 });
}

#[test]
fn heredocs_strip_tabs_keep_quoted_bodies_literal_and_stack_on_one_line() {
    let df = Dockerfile::parse(&testdata("heredocs.Dockerfile"), "Dockerfile").unwrap();
    let ins = only(&df);
    let Instruction::Run(first) = &ins[1] else { panic!() };
    assert_eq!(first.heredocs[0].content, "echo \"hello $NAME\"\n");
    assert!(first.heredocs[0].expand);
    let Instruction::Run(second) = &ins[2] else { panic!() };
    assert_eq!(second.heredocs[0].name, "SCRIPT");
    assert!(!second.heredocs[0].expand, "a quoted delimiter disables expansion");
    let Instruction::Copy(copy) = &ins[3] else { panic!() };
    let names: Vec<&str> = copy.heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["one.txt", "two.txt"]);
    assert_eq!(copy.heredocs[1].content, "second\n");
    assert_eq!(copy.dest.value, "/data/");
    assert!(copy.sources.is_empty());
    let Instruction::Run(fd) = &ins[4] else { panic!() };
    assert_eq!((fd.heredocs[0].fd, fd.heredocs[0].content.as_str()), (3, "from fd 3\n"));
    // Heredoc bodies are expanded when the delimiter is not quoted.
    let expanded = ins[3].expand(&map(&[("NAME", "you")])).unwrap();
    let Instruction::Copy(c) = expanded else { panic!() };
    assert_eq!(c.heredocs[0].content, "first you\n");
}

#[test]
fn chomped_heredoc_body_loses_leading_tabs_in_copy() {
    let df = parse("FROM a\nCOPY <<-EOT /x\n\t\tindented\n\tEOT\n");
    let Instruction::Copy(c) = &only(&df)[0] else { panic!() };
    assert_eq!(c.heredocs[0].content, "indented\n");
}

#[test]
fn shell_and_exec_forms_are_decided_like_buildkit() {
    let df = parse("FROM a\nCMD [\"a\", \"b\"]\nCMD ['a']\nCMD [\"unterminated\"\nENTRYPOINT []\nSHELL [\"/bin/bash\", \"-c\"]\n");
    let ins = only(&df);
    let cmds: Vec<&ShellOrExec> = ins
        .iter()
        .filter_map(|i| match i {
            Instruction::Cmd(c) => Some(&c.command),
            Instruction::Entrypoint(e) => Some(&e.command),
            _ => None,
        })
        .collect();
    assert_eq!(cmds[0], &ShellOrExec::Exec(vec!["a".into(), "b".into()]));
    assert_eq!(cmds[1], &ShellOrExec::Shell("['a']".into()));
    assert_eq!(cmds[2], &ShellOrExec::Shell("[\"unterminated\"".into()));
    assert_eq!(cmds[3], &ShellOrExec::Exec(vec![]));
    let Instruction::Shell(s) = &ins[4] else { panic!() };
    assert_eq!(s.shell, ["/bin/bash", "-c"]);
}

#[test]
fn copy_and_add_flags_are_checked() {
    let df = parse(
        "FROM a\nCOPY --link --parents --exclude=*.md --exclude=tmp --chmod=u+x,go-w src/ /dst/\n\
         ADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --keep-git-dir=true --unpack=false https://x/y.tgz /y\n",
    );
    let ins = only(&df);
    let Instruction::Copy(c) = &ins[0] else { panic!() };
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, ["*.md", "tmp"]);
    assert_eq!(c.chmod.as_deref(), Some("u+x,go-w"));
    let Instruction::Add(a) = &ins[1] else { panic!() };
    assert_eq!((a.keep_git_dir, a.unpack), (Some(true), Some(false)));
    assert!(a.checksum.as_deref().is_some_and(|c| c.starts_with("sha256:")));
}

#[test]
fn healthcheck_none_and_shell_form() {
    let df = parse("FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --start-period=1m --start-interval=2s CMD curl -f http://localhost/\n");
    let ins = only(&df);
    let Instruction::Healthcheck(none) = &ins[0] else { panic!() };
    assert_eq!(none.test, ["NONE"]);
    let Instruction::Healthcheck(h) = &ins[1] else { panic!() };
    assert_eq!(h.test, ["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!((h.start_period, h.start_interval), (Some(60_000_000_000), Some(2_000_000_000)));
}

#[test]
fn onbuild_wraps_an_instruction_and_keeps_its_text() {
    let df = parse("FROM a\nONBUILD RUN echo hi\nonbuild COPY . /app\n");
    let Instruction::OnBuild(o) = &only(&df)[0] else { panic!() };
    assert_eq!(o.expression, "RUN echo hi");
    assert!(matches!(*o.instruction, Instruction::Run(_)));
    assert_eq!(only(&df)[1].original_text(), "onbuild COPY . /app");
}

#[test]
fn instruction_text_and_spans_survive_continuations() {
    let df = parse("FROM a\n\n  RUN echo a \\\n# comment inside\n      b\nENV X=1\n");
    let ins = only(&df);
    assert_eq!(ins[0].span(), Span { line: 3, column: 3 });
    assert_eq!(ins[0].original_text(), "RUN echo a       b");
    assert_eq!(ins[1].span(), Span { line: 6, column: 1 });
}

#[test]
fn expand_touches_only_what_buildkit_expands() {
    let env = map(&[("D", "/app"), ("U", "me"), ("P", "80 443"), ("C", "/cache")]);
    let df = parse("FROM a\nRUN --mount=type=cache,target=$C echo $D\nCOPY --chown=$U src $D/\nWORKDIR $D\nEXPOSE $P\nCMD echo $D\nUSER ${U}:${G:-grp}\n");
    let ins = only(&df);
    let Instruction::Run(r) = ins[0].expand(&env).unwrap() else { panic!() };
    assert_eq!(r.command, ShellOrExec::Shell("echo $D".into()), "RUN text is left to the shell");
    assert_eq!(r.mounts[0].target.as_deref(), Some("/cache"), "mount options are expanded");
    let Instruction::Copy(c) = ins[1].expand(&env).unwrap() else { panic!() };
    assert_eq!((c.chown.as_deref(), c.dest.value.as_str()), (Some("me"), "/app/"));
    let Instruction::Workdir(w) = ins[2].expand(&env).unwrap() else { panic!() };
    assert_eq!(w.path, "/app");
    let Instruction::Expose(e) = ins[3].expand(&env).unwrap() else { panic!() };
    assert_eq!(e.ports, ["80", "443"], "EXPOSE splits words after expansion");
    let Instruction::Cmd(c) = ins[4].expand(&env).unwrap() else { panic!() };
    assert_eq!(c.command, ShellOrExec::Shell("echo $D".into()));
    let Instruction::User(u) = ins[5].expand(&env).unwrap() else { panic!() };
    assert_eq!(u.user, "me:grp");
}

#[test]
fn expansion_error_names_the_instruction_position() {
    let df = parse("FROM a\nWORKDIR ${DIR:?set DIR}\n");
    let err = only(&df)[0].expand(&map(&[])).unwrap_err();
    assert_eq!(err.to_string().lines().next(), Some("Dockerfile:2:1: failed to process \"${DIR:?set DIR}\": DIR: set DIR"));
}

#[test]
fn global_args_resolve_in_from_and_are_redeclared_in_stages() {
    let df = Dockerfile::parse(&testdata("args.Dockerfile"), "Dockerfile").unwrap();
    let scope = Scope::new(&df, &map(&[("TAG", "3.20")])).unwrap();
    assert_eq!(scope.expand_from(&df.stages[0].from.image.value).unwrap(), "alpine:3.20");
    let mut stage = scope.for_stage(&["PATH=/usr/bin".to_string()]);
    for i in &df.stages[0].instructions {
        stage.apply(i).unwrap();
    }
    let run = stage.run_env();
    assert!(run.contains(&"TAG=3.20".to_string()), "ARG TAG takes the build arg: {run:?}");
    assert!(run.contains(&"LOCAL=local-3.20".to_string()));
    assert!(run.contains(&"FROM_ENV=local-3.20".to_string()));
    assert!(!run.iter().any(|v| v.starts_with("NOT_SET=")), "an ARG without value is not in the environment");
    assert_eq!(stage.image_env(), ["PATH=/usr/bin", "FROM_ENV=local-3.20", "A=1", "B="], "ENV values come from the environment before the ENV");
}

#[test]
fn stage_args_are_not_visible_without_redeclaration() {
    let df = parse("ARG V=1\nFROM a\nRUN true\nARG V\nARG W=$V-x\n");
    let scope = Scope::new(&df, &BTreeMap::new()).unwrap();
    let mut stage = scope.for_stage(&[]);
    stage.apply(&df.stages[0].instructions[0]).unwrap();
    assert!(!stage.expansion_env().iter().any(|v| v.starts_with("V=")));
    stage.apply(&df.stages[0].instructions[1]).unwrap();
    stage.apply(&df.stages[0].instructions[2]).unwrap();
    assert!(stage.expansion_env().contains(&"W=1-x".to_string()));
    assert!(stage.image_env().is_empty());
}

#[test]
fn platform_args_are_predefined_for_from() {
    let df = parse("FROM --platform=$BUILDPLATFORM img:$TARGETARCH\n");
    let scope = Scope::new(&df, &map(&[("TARGETARCH", "riscv64")])).unwrap();
    assert_eq!(scope.expand_from(&df.stages[0].from.image.value).unwrap(), "img:riscv64");
    assert!(scope.expand_from("$BUILDPLATFORM").unwrap().starts_with("linux/"));
}

// ------------------------------------------------------------------ errors

#[test]
fn unknown_instruction_is_an_error_at_its_line() {
    let (kind, line, col, msg) = error_of(b"FROM a\nFOO bar\n");
    assert_eq!((kind, line, col), (ErrorKind::UnknownInstruction, 2, 1));
    assert!(msg.starts_with("unknown instruction: FOO"), "{msg}");
}

#[test]
fn flag_on_the_wrong_instruction_names_the_flag() {
    let (kind, line, col, msg) = error_of(b"FROM a\nCOPY --network=none a b\n");
    assert_eq!((kind, line, col), (ErrorKind::Flag, 2, 6));
    assert_eq!(msg, "unknown flag: --network (COPY accepts --chown, --from, --chmod, --link, --exclude, --parents)");
    let (_, _, _, msg) = error_of(b"FROM a\nENV --x=1 A=b\n");
    assert_eq!(msg, "unknown flag: --x (ENV takes no flags)");
}

#[test]
fn flag_value_errors() {
    assert_eq!(error_of(b"FROM a\nCOPY --link=maybe a b\n").3, "expecting boolean value for flag --link, not: maybe");
    assert_eq!(error_of(b"FROM a\nCOPY --from a b\n").3, "missing a value on flag: --from");
    assert_eq!(error_of(b"FROM a\nCOPY --from=x --from=y a b\n").3, "duplicate flag specified: --from");
    assert_eq!(error_of(b"FROM a\nRUN --network=bridge true\n").3, "invalid network mode \"bridge\" (default, none, host)");
    assert_eq!(error_of(b"FROM a\nRUN --mount=type=nfs true\n").3, "unsupported mount type \"nfs\" (bind, cache, tmpfs, secret, ssh)");
    assert!(error_of(b"FROM a\nCOPY --chmod=999 a b\n").3.starts_with("invalid --chmod=999"));
    assert_eq!(error_of(b"FROM a\nHEALTHCHECK --interval=5 CMD x\n").3, "time: invalid duration \"5\"");
    assert_eq!(error_of(b"FROM a\nHEALTHCHECK --retries=-1 CMD x\n").3, "--retries cannot be negative (-1)");
}

#[test]
fn argument_errors() {
    assert_eq!(error_of(b"FROM a\nCOPY onlyone\n").3, "COPY requires at least two arguments, but only one was provided. Destination could not be determined");
    assert_eq!(error_of(b"FROM a b\n").3, "FROM requires either one or three arguments");
    assert!(error_of(b"FROM a AS 1x\n").3.starts_with("invalid name for build stage: \"1x\""));
    assert_eq!(error_of(b"FROM a\nWORKDIR\n").3, "WORKDIR requires exactly one argument");
    assert_eq!(error_of(b"FROM a\nENV A\n").3, "ENV must have two arguments");
    assert_eq!(error_of(b"FROM a\nENV A=1 B\n").3, "Syntax error - can't find = in \"B\". Must be of the form: name=value");
    assert!(error_of(b"FROM a\nSHELL /bin/sh -c\n").3.starts_with("SHELL requires the arguments to be in JSON form"));
    assert_eq!(error_of(b"FROM a\nCMD [1, 2]\n").3, "when using JSON array syntax, arrays must be comprised of strings only");
    assert_eq!(error_of(b"FROM a\nONBUILD ONBUILD RUN x\n").3, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
    assert_eq!(error_of(b"FROM a\nONBUILD FROM b\n").3, "FROM isn't allowed as an ONBUILD trigger");
    assert_eq!(error_of(b"FROM a\nONBUILD MAINTAINER me\n").3, "MAINTAINER isn't allowed as an ONBUILD trigger");
    assert_eq!(error_of(b"FROM a\nCOPY a <<EOF\nx\nEOF\n").3, "COPY cannot accept a heredoc as a destination");
    assert_eq!(error_of(b"FROM a\nHEALTHCHECK NONE x\n").3, "HEALTHCHECK NONE takes no arguments");
    assert_eq!(error_of(b"FROM a\nHEALTHCHECK CONNECT x\n").3, "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)");
    assert_eq!(error_of(b"# escape=x\nFROM a\n").3, "invalid escape token 'x' does not match ` or \\");
    assert_eq!(error_of(b"# escape=`\n# escape=\\\nFROM a\n").3, "only one escape parser directive can be used");
    let (kind, line, _, msg) = error_of(b"RUN true\nFROM a\n");
    assert_eq!((kind, line), (ErrorKind::NoStage, 1));
    assert!(msg.starts_with("RUN before the first FROM"));
}

#[test]
fn bad_input_gives_clear_errors_not_panics() {
    assert_eq!(error_of(b"").3, "file with no instructions");
    assert_eq!(error_of(b"# only\n   # comments\n\n").3, "file with no instructions");
    let (kind, line, _, msg) = error_of(&testdata("unterminated-heredoc.Dockerfile"));
    assert_eq!((kind, line, msg.as_str()), (ErrorKind::Syntax, 2, "unterminated heredoc: no line \"EOF\" ends it"));
    let (kind, line, col, _) = error_of(b"FROM a\nRUN echo \xff\xfe\n");
    assert_eq!((kind, line, col), (ErrorKind::Encoding, 2, 10));
    let (kind, line, _, msg) = error_of(b"FROM a\nRUN echo \0\n");
    assert_eq!((kind, line, msg.as_str()), (ErrorKind::Encoding, 2, "the Dockerfile contains a NUL byte"));
    let mut long = b"FROM a\nRUN echo ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1 << 20));
    let (kind, line, _, msg) = error_of(&long);
    assert_eq!((kind, line, msg.as_str()), (ErrorKind::Encoding, 2, "dockerfile line greater than max allowed size of 65535"));
    assert_eq!(error_of(b"ARG only\n").3, "the Dockerfile has no FROM instruction");
}

#[test]
fn error_display_shows_position_and_line() {
    let err = Dockerfile::parse(b"FROM a\n  COPY --nope x y\n", "build/Dockerfile").unwrap_err();
    let text = err.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("build/Dockerfile:2:8: unknown flag: --nope (COPY accepts --chown, --from, --chmod, --link, --exclude, --parents)")
    );
    assert_eq!(lines.next(), Some("    2 |   COPY --nope x y"));
}

#[test]
fn typed_instructions_serialize_to_json() {
    let df = parse("FROM a AS b\nRUN --mount=type=cache,target=/c make\n");
    let v = serde_json::to_value(&df).unwrap();
    assert_eq!(v["stages"][0]["from"]["name"], "b");
    let run = &v["stages"][0]["instructions"][0];
    assert_eq!(run["instruction"], "RUN");
    assert_eq!(run["mounts"][0]["type"], "cache");
    assert_eq!(run["command"]["shell"], "make");
    assert_eq!(run["span"]["line"], 2);
}

#[test]
fn heredoc_marker_on_a_continued_line_and_stray_double_angles() {
    let df = parse("FROM a\nENV A=x<<y\nRUN set -e \\\n && cat <<EOF \\\n && echo done\nbody line\nEOF\nLABEL b=<<c\nRUN echo \"<<not\"\nCMD z\n");
    let ins = only(&df);
    let names: Vec<&str> = ins.iter().map(|i| i.name()).collect();
    assert_eq!(names, ["ENV", "RUN", "LABEL", "RUN", "CMD"]);
    let Instruction::Run(r) = &ins[1] else { panic!() };
    assert_eq!(r.command, ShellOrExec::Shell("set -e  && cat <<EOF  && echo done".into()));
    assert_eq!(r.heredocs[0].content, "body line\n");
    assert_eq!(ins[4].span(), Span { line: 10, column: 1 });
}

#[test]
fn heredoc_looking_comment_inside_a_continued_instruction() {
    let df = parse("FROM a\nRUN one \\\n# a comment with <<EOF in it\n\n  two\nCMD z\n");
    let ins = only(&df);
    assert_eq!(ins.len(), 2);
    let Instruction::Run(r) = &ins[0] else { panic!() };
    assert_eq!(r.command, ShellOrExec::Shell("one   two".into()));
    assert!(r.heredocs.is_empty());
}

#[test]
fn json_that_go_rejects_is_shell_form_and_non_strings_are_errors() {
    let df = parse("FROM a\nCMD [\"a\tb\"]\nCMD [1e999, \"x\"]\nCMD [\"\\ud83d\\ude00\", \"\\ud800\"]\n");
    let ins = only(&df);
    let Instruction::Cmd(raw_tab) = &ins[0] else { panic!() };
    assert_eq!(raw_tab.command, ShellOrExec::Shell("[\"a\tb\"]".into()), "a raw tab inside a JSON string is not JSON");
    let Instruction::Cmd(overflow) = &ins[1] else { panic!() };
    assert!(matches!(overflow.command, ShellOrExec::Shell(_)), "a number out of float64 range is not JSON to Go");
    let Instruction::Cmd(surrogates) = &ins[2] else { panic!() };
    assert_eq!(surrogates.command, ShellOrExec::Exec(vec!["😀".into(), "\u{FFFD}".into()]));
    assert_eq!(error_of(b"FROM a\nCMD [\"a\", {\"b\": 1}]\n").3, "when using JSON array syntax, arrays must be comprised of strings only");
}
