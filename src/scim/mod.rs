//! SCIM as the proxy reads it: base URLs and their rewriting, and what a request does.

pub(crate) mod attrs;
pub mod base;
mod filter;
mod patch;
mod query;
mod request;
mod response;
mod response_summary;

#[cfg(test)]
mod reading_tests;

/// The reading of one exchange under its long-standing path (the proxy and the traffic log import
/// it from here).
pub mod reading {
    pub(crate) use super::attrs::{attr_segments, get_ci};
    pub use super::filter::filter_eq_value;
    pub(crate) use super::filter::{FilterToken, filter_tokens};
    pub(crate) use super::query::form_decode;
    pub use super::request::{Resource, ScimReading, read_request};
    pub use super::response::{complete_from_response, scim_error};
}
