//! SCIM as the proxy reads it: base URLs and their rewriting, and what a request does.

pub mod base;
pub mod reading;
