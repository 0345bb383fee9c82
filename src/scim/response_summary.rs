//! The few attributes of a SCIM answer that its reading needs (`id`, the subject attribute, and a
//! `Resources` list's length and first item), read in one pass over the JSON without building the
//! document: everything else is skipped unparsed.
//!
//! Keys are matched as `get_ci` matches them in a parsed object: the exact key (its last occurrence,
//! as a map keeps it), else the case-insensitive match that sorts first.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The `visit_*` methods of a visitor that answers `$value` to any scalar (bool, number, null,
/// and each `$extra` kind), which needs no skipping.
macro_rules! skip_scalars {
    ($value:expr $(, $extra:ident: $ty:ty)*) => {
        $(fn $extra<E>(self, _: $ty) -> Result<Self::Value, E> {
            Ok($value)
        })*
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// One wanted key's value, chosen as [`crate::scim::reading::get_ci`] would choose it.
#[derive(Debug)]
struct Pick<T> {
    exact: Option<T>,
    folded: Option<(String, T)>,
}

impl<T> Default for Pick<T> {
    fn default() -> Self {
        Pick {
            exact: None,
            folded: None,
        }
    }
}

impl<T> Pick<T> {
    /// Whether `key` can be chosen for `wanted`, and so its value must be read.
    fn wants(&self, key: &str, wanted: &str) -> bool {
        key == wanted
            || (self.exact.is_none()
                && key.eq_ignore_ascii_case(wanted)
                && self.folded.as_ref().is_none_or(|(k, _)| key <= k.as_str()))
    }

    fn offer(&mut self, key: &str, wanted: &str, value: T) {
        if key == wanted {
            self.exact = Some(value);
        } else {
            self.folded = Some((key.to_owned(), value));
        }
    }

    fn take(self) -> Option<T> {
        self.exact.or(self.folded.map(|(_, v)| v))
    }
}

/// What a resource object says of itself.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// `id` when it is a string (`Some(None)`: present, not a string).
    id: Pick<Option<String>>,
    subject: Pick<Option<String>>,
    resources: Pick<List>,
}

/// A `Resources` value.
#[derive(Debug)]
pub(crate) enum List {
    /// An array: its length and its first item, when that is an object.
    Array(usize, Option<Box<Summary>>),
    NotArray,
}

/// What the reading takes from an answer.
pub(crate) enum Answer {
    /// A single resource (or an object without `Resources`).
    Resource(Summary),
    /// A list: its length and first item.
    List(usize, Option<Box<Summary>>),
    /// `Resources` that is not an array, or a body that is not an object.
    Other,
}

impl Summary {
    /// `id` and the subject, each when it is a string.
    pub(crate) fn into_parts(self) -> (Option<String>, Option<String>) {
        (self.id.take().flatten(), self.subject.take().flatten())
    }
}

/// Reads `body` for the subject attribute `attr` (`userName`, `displayName`); `None` when it is not
/// JSON at all.
pub(crate) fn read_answer(body: &[u8], attr: &'static str) -> Option<Answer> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = (&mut de)
        .deserialize_any(ObjectVisitor { attr, top: true })
        .ok()?;
    // Trailing bytes after the document make it not JSON, as `from_slice` says.
    de.end().ok()?;
    Some(match top {
        None => Answer::Other,
        Some(mut s) => match std::mem::take(&mut s.resources).take() {
            None => Answer::Resource(s),
            Some(List::Array(n, first)) => Answer::List(n, first),
            Some(List::NotArray) => Answer::Other,
        },
    })
}

/// An object's summary (`Some`), or `None` for any other value (skipped).
struct ObjectVisitor {
    attr: &'static str,
    /// Only the top level's `Resources` counts.
    top: bool,
}

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Option<Summary>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut s = Summary::default();
        while let Some(key) = map.next_key::<KeyText<'de>>()? {
            let key = key.as_str();
            if s.id.wants(key, "id") {
                let v = map.next_value_seed(StringOrSkip)?;
                s.id.offer(key, "id", v);
            } else if s.subject.wants(key, self.attr) {
                let v = map.next_value_seed(StringOrSkip)?;
                s.subject.offer(key, self.attr, v);
            } else if self.top && s.resources.wants(key, "Resources") {
                let v = map.next_value_seed(ListSeed { attr: self.attr })?;
                s.resources.offer(key, "Resources", v);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }

    skip_scalars!(None, visit_str: &str);
}

impl<'de> DeserializeSeed<'de> for ObjectVisitor {
    type Value = Option<Summary>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key, borrowed from the body when it has no escapes.
enum KeyText<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyText<'_> {
    fn as_str(&self) -> &str {
        match self {
            KeyText::Borrowed(s) => s,
            KeyText::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText::Borrowed(s))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(KeyText::Owned(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(KeyText::Owned(s))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A string value (`Some`), or any other value skipped (`None`).
struct StringOrSkip;

impl<'de> DeserializeSeed<'de> for StringOrSkip {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StringOrSkip {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Some(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Some(s))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }

    skip_scalars!(None);
}

/// A `Resources` value: an array's length and first item, or not an array (skipped).
struct ListSeed {
    attr: &'static str,
}

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = List;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = List;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let item = ObjectVisitor {
            attr: self.attr,
            top: false,
        };
        let Some(first) = seq.next_element_seed(item)? else {
            return Ok(List::Array(0, None));
        };
        let mut n = 1;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(List::Array(n, first.map(Box::new)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| List::NotArray)
    }

    skip_scalars!(List::NotArray, visit_str: &str);
}
