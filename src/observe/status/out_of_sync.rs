//! The out-of-sync set: users and groups whose latest write through the proxy failed and has not
//! succeeded since. Bounded (the oldest evicted first); pure, so the live status and
//! `report --out-of-sync` compute the same list from the same writes.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::failure::Failure;

/// How many resources the live set keeps before it evicts the oldest.
pub const MAX_OUT_OF_SYNC: usize = 10_000;

/// What a resource is known by: its id (from the path, or the created resource's id), or its
/// subject as logged when no id is known yet (a failed create).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum Identity {
    Id(String),
    Subject(String),
}

/// A resource on a route: `User` or `Group` and its identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    route: String,
    resource: String,
    identity: Identity,
}

/// One resource out of sync, as `/status.json` and `report --out-of-sync --json` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub route: String,
    pub resource: String,
    pub identity: Identity,
    /// Its subject as logged, from the latest of its failed writes that named it (a PATCH often
    /// names nobody).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When its first failed write since the last success arrived.
    pub since: String,
    /// Failed writes since the last success.
    pub failures: u32,
    /// The latest failed write.
    pub last: Failure,
}

/// The set, in the order resources last failed; `evicted` counts the ones pushed out.
#[derive(Debug)]
pub struct OutOfSync {
    limit: usize,
    entries: HashMap<Key, (u64, Entry)>,
    order: BTreeMap<u64, Key>,
    next: u64,
    pub evicted: u64,
}

impl OutOfSync {
    pub fn new(limit: usize) -> OutOfSync {
        OutOfSync {
            limit: limit.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            evicted: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A failed write. Without an id or subject (a create under `pii = "omit"`), nothing names
    /// the resource and it cannot be listed.
    pub fn failed(&mut self, failure: Failure) {
        let (Some(route), Some(resource)) = (failure.route.clone(), failure.resource.clone())
        else {
            return;
        };
        let identity = match (&failure.resource_id, &failure.subject) {
            (Some(id), _) => Identity::Id(id.clone()),
            (None, Some(subject)) => Identity::Subject(subject.clone()),
            (None, None) => return,
        };
        let key = Key {
            route,
            resource,
            identity,
        };
        let seq = self.next;
        self.next += 1;
        let entry = match self.entries.remove(&key) {
            Some((old, mut entry)) => {
                self.order.remove(&old);
                entry.failures = entry.failures.saturating_add(1);
                if failure.subject.is_some() {
                    entry.subject = failure.subject.clone();
                }
                entry.last = failure;
                entry
            }
            None => Entry {
                route: key.route.clone(),
                resource: key.resource.clone(),
                identity: key.identity.clone(),
                subject: failure.subject.clone(),
                since: failure.ts.clone(),
                failures: 1,
                last: failure,
            },
        };
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (seq, entry));
        while self.entries.len() > self.limit {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            self.evicted += 1;
        }
    }

    /// A successful write: the resource is in sync again, by its id and by its subject.
    pub fn succeeded(
        &mut self,
        route: &str,
        resource: &str,
        resource_id: Option<&str>,
        subject: Option<&str>,
    ) {
        if self.entries.is_empty() {
            return;
        }
        let identities = [
            resource_id.map(|i| Identity::Id(i.to_owned())),
            subject.map(|s| Identity::Subject(s.to_owned())),
        ];
        for identity in identities.into_iter().flatten() {
            let key = Key {
                route: route.to_owned(),
                resource: resource.to_owned(),
                identity,
            };
            if let Some((seq, _)) = self.entries.remove(&key) {
                self.order.remove(&seq);
            }
        }
    }

    /// The entries, the latest failure first.
    pub fn entries(&self) -> Vec<Entry> {
        self.order
            .values()
            .rev()
            .filter_map(|k| self.entries.get(k).map(|(_, e)| e.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: Option<&str>, subject: Option<&str>, ts: &str) -> Failure {
        Failure {
            ts: ts.into(),
            request_id: format!("r-{ts}"),
            route: Some("acme".into()),
            client: Some("okta".into()),
            method: "POST".into(),
            op: Some("user.create".into()),
            resource: Some("User".into()),
            resource_id: id.map(Into::into),
            subject: subject.map(Into::into),
            status: 409,
            upstream_status: Some(409),
            scim_type: Some("uniqueness".into()),
            detail: Some("exists".into()),
            error: None,
        }
    }

    #[test]
    fn a_later_success_clears_by_id_or_by_subject() {
        let mut set = OutOfSync::new(10);
        set.failed(failure(None, Some("h:aa"), "1"));
        set.failed(failure(Some("7"), Some("h:bb"), "2"));
        set.failed(failure(Some("7"), None, "3"));
        let entries = set.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].identity, Identity::Id("7".into()));
        assert_eq!(
            entries[0].subject.as_deref(),
            Some("h:bb"),
            "kept from the earlier failure"
        );
        assert_eq!((entries[0].failures, entries[0].since.as_str()), (2, "2"));
        set.succeeded("acme", "User", Some("9"), Some("h:aa"));
        set.succeeded("other", "User", Some("7"), None);
        set.succeeded("acme", "Group", Some("7"), None);
        assert_eq!(
            set.entries().len(),
            1,
            "another route or resource is not it"
        );
        set.succeeded("acme", "User", Some("7"), None);
        assert!(set.is_empty());
    }

    #[test]
    fn the_oldest_is_evicted_past_the_limit_and_unnamed_failures_are_not_kept() {
        let mut set = OutOfSync::new(2);
        set.failed(failure(None, None, "0"));
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            set.failed(failure(Some(id), None, &i.to_string()));
        }
        let ids: Vec<_> = set.entries().into_iter().map(|e| e.identity).collect();
        assert_eq!(ids, [Identity::Id("c".into()), Identity::Id("b".into())]);
        assert_eq!(set.evicted, 1);
    }
}
