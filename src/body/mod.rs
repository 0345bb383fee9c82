//! The one body type the proxy hands to hyper in both directions, and what is done to bodies on
//! the way: JSON URL rewriting, v2-token redaction, content decoding, and the traffic log's copy.

mod decode;
mod framing;
mod json_redact;
mod json_text;
mod json_urls;
mod redact;
mod request;
mod response;
mod tee;
mod transform;

#[cfg(test)]
mod json_urls_tests;
#[cfg(test)]
mod redact_tests;
#[cfg(test)]
mod test_bodies;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Streaming body, boxed once: request bodies go up and response bodies come down unbuffered.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The byte transformers under their long-standing path (benches, fuzz targets and the state
/// import them from here).
pub mod rewrite {
    pub use super::json_redact::{JsonBodyRedact, JsonStringRedact};
    pub use super::json_urls::{JsonUrlRewriter, rewrite_json};
    pub use super::redact::{Needles, StreamRedact};
    pub use super::transform::{JsonRedactBody, RedactBody, RewriteBody, Transform, Transformed};
}

/// Which bodies are rewritten and how, under their long-standing path (the proxy imports them
/// from here).
pub mod filter {
    pub use super::decode::DECODED_LIMIT;
    pub use super::framing::{WHOLE_BODY_LIMIT, is_json};
    pub use super::request::{RequestBody, request_body};
    pub use super::response::{redact, response_body};
    pub use super::tee::{TEE_LIMIT, TeeCopy, UpstreamCopy};
}
