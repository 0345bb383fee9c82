//! The in-memory store: users and groups with server-assigned ids, timestamps and versions
//! (weak ETags), and the uniqueness rule on userName / displayName.

use http::StatusCode;
use serde_json::{Map, Value};

use super::attrs::get_ci;
use super::error::ScimError;
use super::kind::Kind;
use super::time::now_rfc3339;

pub(super) struct Res {
    pub(super) id: String,
    /// Client attributes as sent (minus `id`/`meta`), after normalisation.
    pub(super) attrs: Map<String, Value>,
    pub(super) created: String,
    pub(super) modified: String,
    pub(super) version: u64,
}

impl Res {
    pub(super) fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
    pub(super) fn touch(&mut self) {
        self.version = self.version.saturating_add(1);
        self.modified = now_rfc3339();
    }
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) users: Vec<Res>,
    pub(super) groups: Vec<Res>,
}

impl Store {
    pub(super) fn list(&self, kind: Kind) -> &Vec<Res> {
        match kind {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }
    pub(super) fn list_mut(&mut self, kind: Kind) -> &mut Vec<Res> {
        match kind {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }
    pub(super) fn position(&self, kind: Kind, id: &str) -> Result<usize, ScimError> {
        self.list(kind)
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.resource_type())))
    }
    pub(super) fn check_unique(
        &self,
        kind: Kind,
        attrs: &Map<String, Value>,
        except: Option<&str>,
    ) -> Result<(), ScimError> {
        let attr = kind.unique_attr();
        let Some(Value::String(wanted)) = get_ci(attrs, attr) else {
            return Ok(());
        };
        let wanted = wanted.to_lowercase();
        let taken = self.list(kind).iter().any(|r| {
            Some(r.id.as_str()) != except
                && matches!(get_ci(&r.attrs, attr), Some(Value::String(s)) if s.to_lowercase() == wanted)
        });
        if taken {
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                format!(
                    "{} with {attr} {wanted:?} already exists",
                    kind.resource_type()
                ),
            ));
        }
        Ok(())
    }
}
