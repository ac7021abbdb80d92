//! A serde `Deserializer` over the positioned YAML tree, so the typed model is plain
//! `#[derive(Deserialize)]` structs while every error still names file, line and key path.
//!
//! Plain scalars take the type the field asks for (`ports: - 80` into a string, `replicas: "3"`
//! into a number after interpolation), as Compose's loader does. Struct fields named `x-…`
//! (Compose extensions) are skipped; everything else a struct does not know is an error.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, Loc};
use crate::yaml::{Kind, Node};

#[derive(Debug)]
pub struct DeError {
    message: String,
    at: Option<(Loc, String)>,
}

impl DeError {
    fn at(mut self, node: &Node, path: &str) -> Self {
        if self.at.is_none() {
            self.at = Some((node.loc.clone(), path.to_string()));
        }
        self
    }

    pub fn into_error(self, fallback: &Node) -> Error {
        let (loc, path) = self.at.unwrap_or_else(|| (fallback.loc.clone(), String::new()));
        Error::Key { loc, path: if path.is_empty() { "(top level)".into() } else { path }, message: self.message }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), at: None }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = if crate::model::UNSUPPORTED_COMPOSE_KEYS.contains(&field) {
            format!("the Compose key `{field}` is not supported by builder compose")
        } else {
            format!("unknown key `{field}` (expected one of: {})", expected.join(", "))
        };
        DeError { message, at: None }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Map => "a mapping".to_string(),
            de::Unexpected::Unit => "null".to_string(),
            de::Unexpected::Str(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        // serde names a struct by its Rust name; the user wrote a YAML mapping.
        let expected = exp.to_string();
        let expected = if expected.starts_with("struct ") { "a mapping".to_string() } else { expected };
        DeError { message: format!("wrong type: expected {expected}, found {found}"), at: None }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError { message: format!("missing key `{field}`"), at: None }
    }
}

/// Deserializes a typed value from the tree; `path` is the key path of `node`.
pub fn from_node<'a, T: serde::Deserialize<'a>>(node: &'a Node, path: &str) -> Result<T, Error> {
    T::deserialize(NodeDe { node, path: path.to_string() }).map_err(|e| e.into_error(node))
}

pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.kind {
            Kind::Scalar { value, plain } => Some((value.as_str(), *plain)),
            _ => None,
        }
    }

    fn unexpected(&self) -> de::Unexpected<'a> {
        match &self.node.kind {
            Kind::Scalar { .. } if self.node.is_null() => de::Unexpected::Unit,
            Kind::Scalar { value, .. } => de::Unexpected::Str(value),
            Kind::Seq(_) => de::Unexpected::Seq,
            Kind::Map(_) => de::Unexpected::Map,
        }
    }

    fn wrong<V: Visitor<'a>>(&self, visitor: &V) -> DeError {
        de::Error::invalid_type(self.unexpected(), visitor)
    }

    fn map<V: Visitor<'a>>(self, visitor: V, skip_extensions: bool) -> Result<V::Value, DeError> {
        let empty: &[(Node, Node)] = &[];
        let entries = match &self.node.kind {
            Kind::Map(entries) => entries.as_slice(),
            _ if self.node.is_null() => empty,
            _ => return Err(self.wrong(&visitor).at(self.node, &self.path)),
        };
        let access = MapDe { entries: entries.iter(), value: None, path: &self.path, skip_extensions };
        visitor.visit_map(access).map_err(|e: DeError| e.at(self.node, &self.path))
    }

    fn number<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Some((s, _)) = self.scalar() else { return Err(self.wrong(&visitor).at(self.node, &self.path)) };
        let r = if let Ok(n) = s.parse::<u64>() {
            visitor.visit_u64(n)
        } else if let Ok(n) = s.parse::<i64>() {
            visitor.visit_i64(n)
        } else if let Ok(n) = s.parse::<f64>() {
            visitor.visit_f64(n)
        } else {
            Err(self.wrong(&visitor))
        };
        r.map_err(|e: DeError| e.at(self.node, &self.path))
    }
}

macro_rules! numbers {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> { self.number(visitor) }
    )*};
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Map(_) => return self.map(visitor, false),
            Kind::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter(), index: 0, path: &self.path }),
            _ if self.node.is_null() => visitor.visit_unit(),
            Kind::Scalar { value, plain: true } => match value.as_str() {
                "true" | "True" | "TRUE" => visitor.visit_bool(true),
                "false" | "False" | "FALSE" => visitor.visit_bool(false),
                s => {
                    if let Ok(n) = s.parse::<u64>() {
                        visitor.visit_u64(n)
                    } else if let Ok(n) = s.parse::<i64>() {
                        visitor.visit_i64(n)
                    } else if s.contains(|c: char| c.is_ascii_digit()) && !s.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E') && s.parse::<f64>().is_ok() {
                        visitor.visit_f64(s.parse::<f64>().unwrap_or_default())
                    } else {
                        visitor.visit_str(s)
                    }
                }
            },
            Kind::Scalar { value, .. } => visitor.visit_str(value),
        };
        r.map_err(|e: DeError| e.at(self.node, &self.path))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match self.scalar().map(|(s, _)| s.to_ascii_lowercase()) {
            Some(s) if matches!(s.as_str(), "true" | "yes" | "on") => true,
            Some(s) if matches!(s.as_str(), "false" | "no" | "off") => false,
            _ => return Err(self.wrong(&visitor).at(self.node, &self.path)),
        };
        visitor.visit_bool(b).map_err(|e: DeError| e.at(self.node, &self.path))
    }

    numbers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32 deserialize_f64);

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((s, _)) if !self.node.is_null() => visitor.visit_str(s).map_err(|e: DeError| e.at(self.node, &self.path)),
            _ => Err(self.wrong(&visitor).at(self.node, &self.path)),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none().map_err(|e: DeError| e.at(self.node, &self.path))
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_unit().map_err(|e: DeError| e.at(self.node, &self.path))
        } else {
            Err(self.wrong(&visitor).at(self.node, &self.path))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            Kind::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter(), index: 0, path: &self.path }).map_err(|e: DeError| e.at(self.node, &self.path)),
            _ if self.node.is_null() => visitor.visit_seq(SeqDe { items: [].iter(), index: 0, path: &self.path }).map_err(|e: DeError| e.at(self.node, &self.path)),
            _ => Err(self.wrong(&visitor).at(self.node, &self.path)),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(self, _: &'static str, _: usize, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.map(visitor, false)
    }

    fn deserialize_struct<V: Visitor<'a>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        self.map(visitor, true)
    }

    fn deserialize_enum<V: Visitor<'a>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((s, _)) => visitor.visit_enum(s.into_deserializer()).map_err(|e: DeError| e.at(self.node, &self.path)),
            None => Err(self.wrong(&visitor).at(self.node, &self.path)),
        }
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'a> SeqAccess<'a> for SeqDe<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        // Errors a value's own Deserialize raises after reading (a bad short syntax) belong here.
        seed.deserialize(NodeDe { node, path: path.clone() }).map(Some).map_err(|e| e.at(node, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'p str,
    skip_extensions: bool,
}

impl<'a> MapAccess<'a> for MapDe<'a, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        loop {
            let Some((key, value)) = self.entries.next() else { return Ok(None) };
            let name = key.as_str().unwrap_or_default();
            if self.skip_extensions && name.starts_with("x-") {
                continue;
            }
            let path = child(self.path, name);
            let k = seed.deserialize(KeyDe { node: key }).map_err(|e| e.at(key, &path))?;
            self.value = Some((value, path));
            return Ok(Some(k));
        }
    }

    fn next_value_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let Some((node, path)) = self.value.take() else { return Err(de::Error::custom("value without a key")) };
        seed.deserialize(NodeDe { node, path: path.clone() }).map_err(|e| e.at(node, &path))
    }
}

/// A mapping key: always a string (Compose keys, service names, variable names).
struct KeyDe<'a> {
    node: &'a Node,
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.node.as_str().unwrap_or_default())
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
