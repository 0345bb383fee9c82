//! What the body tests share: a body that arrives in frames, as a chunked upstream answer does,
//! request headers, and the proxy's client-facing base.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use http::header::{self, HeaderMap, HeaderValue};

use crate::body::framing::set_length;
use crate::body::{BoxError, ProxyBody};
use crate::scim::base::Base;

pub(crate) use crate::body::json_urls_tests::up;

/// Headers with this Content-Type and, when given, Content-Length.
pub(crate) fn headers(ct: &str, len: Option<usize>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    if let Some(n) = len {
        set_length(&mut h, n);
    }
    h
}

/// The base the proxy's clients address.
pub(crate) fn client() -> Base {
    Base::new("https", "proxy.example:8443", "/SCIM/v2")
}

/// A body of unknown length arriving in frames, as a chunked upstream answer does.
struct Chunks(std::collections::VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}

pub(crate) fn chunked(chunks: Vec<Bytes>) -> ProxyBody {
    Chunks(chunks.into()).boxed_unsync()
}
