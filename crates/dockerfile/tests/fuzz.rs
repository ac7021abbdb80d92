//! Property tests over hostile input: the parser, the instruction layer and the
//! expander must return (an error or a value)
//! for any input, never panic or overflow the stack.
//!
//! `PROPTEST_CASES=N` runs more cases (the long fuzzing run in the README
//! uses this in release mode).

#![allow(clippy::unwrap_used)]

use dockerfile::shell::{expand_word, expand_words};
use dockerfile::Dockerfile;
use proptest::prelude::*;

/// Pieces of Dockerfile syntax, so random sequences reach deep into the parser.
const TOKENS: &[&str] = &[
    "FROM ", "RUN ", "COPY ", "ADD ", "ENV ", "ARG ", "LABEL ", "ONBUILD ", "HEALTHCHECK ", "CMD ", "ENTRYPOINT ", "SHELL ",
    "EXPOSE ", "VOLUME ", "USER ", "WORKDIR ", "STOPSIGNAL ", "MAINTAINER ", "NONE", "AS ", "\\", "`", "\n", "\r\n", " ", "\t", "#",
    "# escape=`\n", "# syntax=x\n", "<<EOF", "<<-EOF", "<<'EOF'", "2<<EOF", "EOF", "\"", "'", "[", "]", ",", "\"a\"", "{", "}",
    "--mount=type=cache,target=/x", "--mount=type=secret,id=a", "--mount=", "--from=a", "--chmod=", "--link", "--interval=",
    "--network=none", "--", "$", "${", ":-", ":+", "#", "%%", "/", "//", "=", "a", "b=c", "é", "한", "\u{a0}", "\u{85}", "1e999",
    "\\u0000", "\\ud800", "*", "?", "**",
];

fn dockerfile_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..120).prop_map(|t| t.concat())
}

fn env() -> Vec<String> {
    vec!["A=a b".into(), "E=".into(), "P=/x/y.tar.gz".into()]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = dockerfile::ast::parse(&bytes, "Dockerfile");
        let _ = Dockerfile::parse(&bytes, "Dockerfile");
    }

    #[test]
    fn dockerfile_like_text_never_panics_and_dump_is_stable(text in dockerfile_like()) {
        if let Ok(ast) = dockerfile::ast::parse(text.as_bytes(), "Dockerfile") {
            let again = dockerfile::ast::parse(text.as_bytes(), "Dockerfile").map(|a| a.dump());
            prop_assert_eq!(Ok(ast.dump()), again.map_err(|e| e.to_string()));
        }
        if let Ok(df) = Dockerfile::parse(text.as_bytes(), "Dockerfile") {
            for stage in &df.stages {
                for i in &stage.instructions {
                    let _ = i.expand(&env());
                }
            }
            let _ = serde_json::to_string(&df);
        }
    }

    #[test]
    fn arbitrary_words_never_panic_the_expander(word in "[$][{]?[A-Za-z0-9_:#%/?+*-]{0,6}[}]?|.{0,64}|([$][{]A[:]?[-+?#%/]{1,2}){0,80}") {
        let _ = expand_word(&word, &env(), '\\');
        let _ = expand_words(&word, &env(), '`');
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let nested = format!("{}x{}", "${A:-".repeat(5000), "}".repeat(5000));
    assert!(expand_word(&nested, &env(), '\\').is_err());
    let json = format!("FROM a\nCMD {}{}\n", "[".repeat(20000), "]".repeat(20000));
    let df = Dockerfile::parse(json.as_bytes(), "Dockerfile").unwrap();
    assert_eq!(df.stages[0].instructions[0].name(), "CMD");
    let stars = format!("${{P#{}}}", "*a".repeat(5000));
    assert!(expand_word(&stars, &env(), '\\').is_err());
    let long_pattern = format!("${{P#{}}}", "a".repeat(60000));
    assert_eq!(expand_word(&long_pattern, &env(), '\\').unwrap(), "/x/y.tar.gz");
}
