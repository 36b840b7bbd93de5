//! Duplicate names in a safetensors header.
//!
//! JSON allows an object to repeat a key, and serde_json (which safetensors parses the header
//! with) keeps the last value without a word. A header that names a tensor twice is corrupt or
//! hand-edited: loading it would silently drop one of the two, so it is refused.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

/// The key reserved for string metadata in a safetensors header.
const METADATA: &str = "__metadata__";

/// A key that occurs twice in a header: a tensor name, or a name inside `__metadata__`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Duplicate {
    Tensor(String),
    Metadata(String),
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Duplicate::Tensor(k) => write!(
                f,
                "the header names tensor `{k}` twice (a reader would silently keep only one)"
            ),
            Duplicate::Metadata(k) => write!(
                f,
                "the header's {METADATA} names `{k}` twice (a reader would silently keep only \
                 one)"
            ),
        }
    }
}

/// The first key that a header (a JSON object) repeats, at the top level or inside
/// `__metadata__`. `None` when there is none, and when the header is not a JSON object at all
/// (the safetensors parser reports that, with its position).
pub(super) fn first_duplicate(header: &[u8]) -> Option<Duplicate> {
    serde_json::from_slice::<Keys<true>>(header).ok()?.0
}

/// An object whose keys are checked for repeats (the first is kept, as a `Tensor`); its values
/// are skipped, except that the top level (`TOP`) also checks `__metadata__`'s keys.
struct Keys<const TOP: bool>(Option<Duplicate>);

impl<'de, const TOP: bool> Deserialize<'de> for Keys<TOP> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const TOP: bool>;
        impl<'de, const TOP: bool> Visitor<'de> for V<TOP> {
            type Value = Keys<TOP>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys<TOP>, A::Error> {
                let mut seen = HashSet::new();
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let inner = if TOP && key == METADATA {
                        map.next_value::<Option<Keys<false>>>()?.and_then(|k| k.0)
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        None
                    };
                    if found.is_none() {
                        found = inner.map(|d| match d {
                            Duplicate::Tensor(k) | Duplicate::Metadata(k) => Duplicate::Metadata(k),
                        });
                    }
                    if !seen.insert(key.clone()) && found.is_none() {
                        found = Some(Duplicate::Tensor(key));
                    }
                }
                Ok(Keys(found))
            }
        }
        d.deserialize_map(V::<TOP>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dup(h: &str) -> Option<Duplicate> {
        first_duplicate(h.as_bytes())
    }

    #[test]
    fn repeated_keys_are_found_and_distinct_ones_are_not() {
        assert_eq!(dup(r#"{"a": 1, "b": 2}"#), None);
        assert_eq!(
            dup(r#"{"a": 1, "b": 2, "a": 3}"#),
            Some(Duplicate::Tensor("a".into()))
        );
        // Escapes are compared after decoding: "\u0061" is "a".
        assert_eq!(
            dup(r#"{"a": 1, "\u0061": 2}"#),
            Some(Duplicate::Tensor("a".into()))
        );
        assert_eq!(
            dup(r#"{"__metadata__": {"model": "x", "model": "y"}, "w": 1}"#),
            Some(Duplicate::Metadata("model".into()))
        );
        // The same name in a tensor and in the metadata is no repeat; nested objects other
        // than the metadata are not looked into.
        assert_eq!(
            dup(r#"{"__metadata__": {"w": "x"}, "w": {"shape": [1], "shape": [2]}}"#),
            None
        );
        assert_eq!(dup(r#"{"__metadata__": null}"#), None);
        // Not an object, or not JSON: left to the safetensors parser to report.
        assert_eq!(dup("[1, 2]"), None);
        assert_eq!(dup("{\"a\": "), None);
    }
}
