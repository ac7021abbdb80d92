//! Compose keys that take more than one shape (`command: a b` or `command: [a, b]`,
//! `environment` as a mapping or a list of `K=V`, …), read through serde without losing the
//! position of an error.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A scalar (as text), or `T` read from a mapping.
pub enum StrOrMap<T> {
    Str(String),
    Map(T),
}

/// A scalar (as text), or `T` read from a list.
pub enum StrOrSeq<T> {
    Str(String),
    Seq(T),
}

/// `M` read from a mapping, or `S` read from a list.
pub enum MapOrSeq<M, S> {
    Map(M),
    Seq(S),
}

macro_rules! scalar_visits {
    ($wrap:path) => {
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
    };
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOrMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOrMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a mapping")
            }
            scalar_visits!(StrOrMap::Str);
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(m)).map(StrOrMap::Map)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOrSeq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = StrOrSeq<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list")
            }
            scalar_visits!(StrOrSeq::Str);
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
                T::deserialize(SeqAccessDeserializer::new(s)).map(StrOrSeq::Seq)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de, M: Deserialize<'de>, S: Deserialize<'de>> Deserialize<'de> for MapOrSeq<M, S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<M, S>(PhantomData<(M, S)>);
        impl<'de, M: Deserialize<'de>, S: Deserialize<'de>> Visitor<'de> for V<M, S> {
            type Value = MapOrSeq<M, S>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping or a list")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                M::deserialize(de::value::MapDeserializer::new(std::iter::empty::<(String, String)>())).map(MapOrSeq::Map)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
                M::deserialize(MapAccessDeserializer::new(m)).map(MapOrSeq::Map)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
                S::deserialize(SeqAccessDeserializer::new(s)).map(MapOrSeq::Seq)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `environment`, `labels`, `build.args`: a mapping (a null value means "take it from the
/// environment" for `environment`) or a list of `KEY=VALUE` / `KEY`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping(pub BTreeMap<String, Option<String>>);

impl<'de> Deserialize<'de> for Mapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match MapOrSeq::<BTreeMap<String, Option<String>>, Vec<String>>::deserialize(d)? {
            MapOrSeq::Map(m) => Mapping(m),
            MapOrSeq::Seq(items) => Mapping(
                items
                    .into_iter()
                    .map(|item| match item.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (item, None),
                    })
                    .collect(),
            ),
        })
    }
}

/// A string or a list of strings (`tmpfs`, `env_file`'s short form, `cache_from` …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StrOrSeq::<Vec<String>>::deserialize(d)? {
            StrOrSeq::Str(s) => OneOrMany(vec![s]),
            StrOrSeq::Seq(v) => OneOrMany(v),
        })
    }
}

/// Splits a command written as one string into words the way Compose does (shell quoting
/// rules, no expansion): `sh -c 'echo hi'` is `["sh", "-c", "echo hi"]`.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated single quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated double quote in {s:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated double quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A duration as Compose writes them (Go's syntax: `1m30s`, `500ms`, `2h`, `1.5s`; not negative).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match units::parse_duration(s.trim()) {
        Ok(ns) if ns >= 0 => Ok(std::time::Duration::from_nanos(ns as u64)),
        Ok(_) => Err(format!("invalid duration {s:?}: a duration here is not negative")),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes a duration back in Go's syntax, as `compose config` prints it.
pub fn format_duration(d: std::time::Duration) -> String {
    units::format_duration(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(split_words("sh -c 'echo $HOME; ls'").unwrap(), ["sh", "-c", "echo $HOME; ls"]);
        assert_eq!(split_words(r#"echo "a \"b\"" c\ d ''"#).unwrap(), ["echo", "a \"b\"", "c d", ""]);
        assert!(split_words("echo 'open").is_err());
    }

    #[test]
    fn durations_read_and_print_in_go_syntax() {
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("1.5s").unwrap().as_millis(), 1500);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(format_duration(parse_duration("90s").unwrap()), "1m30s");
        assert_eq!(format_duration(parse_duration("2h").unwrap()), "2h0m0s");
        assert_eq!(format_duration(parse_duration("1.5s").unwrap()), "1.5s");
        assert_eq!(format_duration(parse_duration("250ms").unwrap()), "250ms");
    }
}
