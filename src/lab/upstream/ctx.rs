//! One request as the handlers see it: method, headers, query, body and the base URL.

use http::{HeaderMap, Method};

use super::query::Query;

pub(super) struct Ctx<'a> {
    pub(super) method: &'a Method,
    pub(super) headers: &'a HeaderMap,
    pub(super) query: Query,
    pub(super) body: &'a [u8],
    /// `<scheme>://<Host as received><base_path>`, the prefix of every `meta.location`.
    pub(super) base_url: String,
}
