//! How answers go on the wire: whole with Content-Length, or (when asked) in two chunks of
//! unannounced length, as many real upstreams send them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::response::Resp;

/// A response body sent whole with its length, or in two chunks of unannounced length.
pub(super) struct Framed {
    pub(super) chunks: VecDeque<Bytes>,
    /// The exact length, when announced.
    pub(super) sized: Option<u64>,
}

impl Body for Framed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        self.sized
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

pub(super) async fn framed(resp: Resp, chunked: bool) -> Response<Framed> {
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let len = bytes.len() as u64;
    let chunks: VecDeque<Bytes> = match (bytes.is_empty(), chunked) {
        (true, _) => VecDeque::new(),
        (false, false) => [bytes].into(),
        (false, true) => {
            parts.headers.remove(CONTENT_LENGTH);
            let half = bytes.len() / 2;
            [bytes.slice(..half), bytes.slice(half..)].into()
        }
    };
    let sized = (!chunked || chunks.is_empty()).then_some(len);
    Response::from_parts(parts, Framed { chunks, sized })
}
