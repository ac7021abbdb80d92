//! `--filter KEY=VALUE` of `volume ls` and `volume prune`, with Docker's meaning: values of
//! one key are alternatives (any may match), different keys must all match, and every
//! `label` / `label!` filter must hold.

use crate::{Error, Result, Volume};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    /// Whether no container refers to the volume.
    Dangling(bool),
    Driver(String),
    /// Part of the name.
    Name(String),
    /// `label=KEY` or `label=KEY=VALUE`.
    Label(String, Option<String>),
    /// `label!=KEY` or `label!=KEY=VALUE`: volumes without it.
    NotLabel(String, Option<String>),
}

/// A set of filters; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(Vec<Filter>);

impl Filters {
    /// Reads `KEY=VALUE` filters; an error names the filter that cannot be read.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Filters> {
        let mut out = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let bad = |reason: &str| Error::InvalidFilter { filter: arg.to_string(), reason: reason.to_string() };
            let (key, value) = arg.split_once('=').ok_or_else(|| bad("use KEY=VALUE"))?;
            // `label!=k` arrives as key "label!".
            let label = |v: &str| match v.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (v.to_string(), None),
            };
            out.push(match key {
                "dangling" => match value {
                    "true" | "1" => Filter::Dangling(true),
                    "false" | "0" => Filter::Dangling(false),
                    _ => return Err(bad("dangling takes true or false")),
                },
                "driver" => Filter::Driver(value.to_string()),
                "name" => Filter::Name(value.to_string()),
                "label" if !value.is_empty() => {
                    let (k, v) = label(value);
                    Filter::Label(k, v)
                }
                "label!" if !value.is_empty() => {
                    let (k, v) = label(value);
                    Filter::NotLabel(k, v)
                }
                "label" | "label!" => return Err(bad("a label filter needs a KEY")),
                _ => return Err(bad("the keys are dangling, driver, label, label!, name")),
            });
        }
        Ok(Filters(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the filters need to know if the volume is in use (so listing can skip it).
    pub fn needs_use(&self) -> bool {
        self.0.iter().any(|f| matches!(f, Filter::Dangling(_)))
    }

    /// Whether `volume` (which containers use if `in_use`) passes.
    pub fn matches(&self, volume: &Volume, in_use: bool) -> bool {
        let has = |k: &str, v: &Option<String>| volume.labels.get(k).is_some_and(|have| v.as_ref().is_none_or(|want| want == have));
        let any_of = |pick: &dyn Fn(&Filter) -> Option<bool>| {
            let results: Vec<bool> = self.0.iter().filter_map(pick).collect();
            results.is_empty() || results.contains(&true)
        };
        any_of(&|f| if let Filter::Dangling(d) = f { Some(*d != in_use) } else { None })
            && any_of(&|f| if let Filter::Driver(d) = f { Some(*d == volume.driver) } else { None })
            && any_of(&|f| if let Filter::Name(n) = f { Some(volume.name.contains(n.as_str())) } else { None })
            && self.0.iter().all(|f| match f {
                Filter::Label(k, v) => has(k, v),
                Filter::NotLabel(k, v) => !has(k, v),
                _ => true,
            })
    }
}
