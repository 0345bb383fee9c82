//! `attributes` / `excludedAttributes`: which attributes an answer keeps.

use serde_json::Value;

use super::attrs::remove_ci;
use super::kind::Kind;
use super::path::parse_attr_path;
use super::query::Query;

pub(super) struct Projection {
    pub(super) include: Option<Vec<String>>,
    pub(super) exclude: Vec<String>,
}

impl Projection {
    pub(super) fn from_query(q: &Query) -> Projection {
        let names = |s: &str| -> Vec<String> {
            s.split(',')
                .filter_map(|n| parse_attr_path(n.trim(), true).ok())
                .map(|p| p.container.unwrap_or(p.attr).to_lowercase())
                .collect()
        };
        Projection {
            include: q.get("attributes").map(names).filter(|v| !v.is_empty()),
            exclude: q.get("excludedAttributes").map(names).unwrap_or_default(),
        }
    }

    pub(super) fn apply(&self, kind: Kind, v: Value) -> Value {
        const ALWAYS: [&str; 3] = ["id", "schemas", "meta"];
        let Value::Object(mut m) = v else { return v };
        let always = |k: &str| ALWAYS.iter().any(|a| a.eq_ignore_ascii_case(k));
        if let Some(inc) = &self.include {
            m.retain(|k, _| always(k) || inc.contains(&k.to_lowercase()));
        }
        m.retain(|k, _| always(k) || !self.exclude.contains(&k.to_lowercase()));
        // Netskope leaves group members out unless asked for.
        let wants_members = self
            .include
            .as_ref()
            .is_some_and(|inc| inc.iter().any(|n| n == "members"));
        if kind == Kind::Group && !wants_members {
            remove_ci(&mut m, "members");
        }
        Value::Object(m)
    }
}
