//! What is wrong with a config: `Problem` (file, key, reason), the `Problems` of one file, the list
//! every stage adds to, and the did-you-mean reporting of unknown keys.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::raw::{
    RawAcme, RawAdmin, RawClient, RawConfig, RawEgress, RawLimits, RawListen, RawLog, RawReload,
    RawRoute, RawRuntime,
};

/// One thing wrong with a config, addressed as `file: key: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// All the problems found in one config, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Problems {
    /// The one problem of a file that cannot be read or parsed at all.
    pub(crate) fn whole_file(file: &Path, reason: String) -> Problems {
        Problems(vec![Problem {
            file: file.to_path_buf(),
            key: String::new(),
            reason,
        }])
    }
}

/// The problems found so far in one config file. Every stage (validation, then loading what the
/// config names) adds to it rather than stopping at the first, so an operator sees them all at once.
pub(crate) struct ProblemList {
    file: PathBuf,
    found: Vec<Problem>,
}

impl ProblemList {
    pub(crate) fn new(file: &Path) -> ProblemList {
        ProblemList {
            file: file.to_path_buf(),
            found: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, key: &str, reason: impl Into<String>) {
        self.found.push(Problem {
            file: self.file.clone(),
            key: key.to_string(),
            reason: reason.into(),
        });
    }

    /// The file the problems are about.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// How many so far: a part compares it before and after to learn whether it added any.
    pub(crate) fn count(&self) -> usize {
        self.found.len()
    }

    /// `value` when nothing was found, else every problem.
    pub(crate) fn result<T>(self, value: T) -> Result<T, Problems> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(Problems(self.found))
        }
    }

    /// Adds a key serde did not know, with the nearest known key when there is one.
    pub(super) fn unknown_key(&mut self, key: &str) {
        let reason = match suggest_key(key) {
            Some(near) => format!("unknown key; did you mean {near}?"),
            None => "unknown key (misspelt, or in the wrong table?)".to_string(),
        };
        self.add(key, reason);
    }
}

/// The closest known key to a misspelt one (`routes[0].token_fiel` -> `token_file`), from the
/// fields serde knows for that table, so the list never drifts from the structs.
pub(super) fn suggest_key(path: &str) -> Option<&'static str> {
    let plain: Vec<&str> = path
        .split('.')
        .map(|part| part.split('[').next().unwrap_or(part))
        .collect();
    let (leaf, table) = plain.split_last()?;
    let fields = match table.join(".").as_str() {
        "" => fields_of::<RawConfig>(),
        "listen" => fields_of::<RawListen>(),
        "listen.acme" => fields_of::<RawAcme>(),
        "admin" => fields_of::<RawAdmin>(),
        "limits" => fields_of::<RawLimits>(),
        "egress" => fields_of::<RawEgress>(),
        "reload" => fields_of::<RawReload>(),
        "log" => fields_of::<RawLog>(),
        "runtime" => fields_of::<RawRuntime>(),
        "routes" => fields_of::<RawRoute>(),
        "routes.clients" => fields_of::<RawClient>(),
        _ => &[],
    };
    fields
        .iter()
        .map(|f| (strsim::damerau_levenshtein(leaf, f), *f))
        .filter(|(d, f)| *d <= 2 || strsim::normalized_damerau_levenshtein(leaf, f) >= 0.5)
        .min_by_key(|(d, _)| *d)
        .map(|(_, f)| f)
}

/// The field names serde's derive gives a struct, read by asking it to deserialize itself from a
/// deserializer that only records them.
pub(super) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or(&[])
}
