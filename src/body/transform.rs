//! Driving the byte transformers over an `http_body::Body` frame by frame ([`Transformed`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::body::BoxError;
use crate::body::json_redact::JsonBodyRedact;
use crate::body::json_urls::JsonUrlRewriter;
use crate::body::redact::{Needles, StreamRedact};
use crate::scim::base::Base;

/// The streaming byte transformers: driven frame by frame by [`Transformed`], or over one
/// whole buffer by [`Transform::run_whole`].
pub trait Transform {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut);
    fn finish(&mut self, out: &mut BytesMut);
    fn is_idle(&self) -> bool;

    /// The transformed form of one complete input.
    fn run_whole(&mut self, input: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(input.len() + input.len() / 8);
        self.feed(input, &mut out);
        self.finish(&mut out);
        out.freeze()
    }
}

/// Each transformer keeps its own `feed`/`finish`/`is_idle` (callable without this trait in
/// scope, as benches and fuzz targets do); the trait forwards to them.
macro_rules! transform_by_own_methods {
    ($($t:ty),*) => {$(
        impl Transform for $t {
            fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
                <$t>::feed(self, input, out);
            }
            fn finish(&mut self, out: &mut BytesMut) {
                <$t>::finish(self, out);
            }
            fn is_idle(&self) -> bool {
                <$t>::is_idle(self)
            }
        }
    )*};
}

transform_by_own_methods!(JsonUrlRewriter, StreamRedact, JsonBodyRedact);

/// A body streamed through a [`Transform`]: data frames go through `t`; other frames (trailers)
/// pass after the transformer has been flushed, so no held-back byte ends up behind them. Its
/// length is unknown: the caller drops `Content-Length`.
pub struct Transformed<B, T> {
    inner: B,
    t: T,
    out: BytesMut,
    /// A non-data frame waiting until the flushed bytes have been returned.
    held: Option<Frame<Bytes>>,
    done: bool,
}

impl<B, T> Transformed<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    T: Transform,
{
    fn with(inner: B, t: T) -> Self {
        Transformed {
            inner,
            t,
            out: BytesMut::new(),
            held: None,
            done: false,
        }
    }

    fn take_out(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(Some(Ok(Frame::data(self.out.split().freeze()))))
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    self.done = true;
                    self.t.finish(&mut self.out);
                    if !self.out.is_empty() {
                        return self.take_out();
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.t.feed(&data, &mut self.out);
                        // An empty result (all held back) is not worth a frame: poll on.
                        if !self.out.is_empty() {
                            return self.take_out();
                        }
                    }
                    Err(frame) => {
                        self.t.finish(&mut self.out);
                        if self.out.is_empty() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        self.held = Some(frame);
                        return self.take_out();
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.done || (self.inner.is_end_stream() && self.t.is_idle()))
    }
}

impl<B, T> Body for Transformed<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    T: Transform + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Transformed::poll_frame(self.get_mut(), cx)
    }

    fn is_end_stream(&self) -> bool {
        Transformed::is_end_stream(self)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A body with base URLs in its JSON strings rewritten (see [`JsonUrlRewriter`]).
pub type RewriteBody<B> = Transformed<B, JsonUrlRewriter>;

impl<B> Transformed<B, JsonUrlRewriter>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn new(inner: B, from: &Base, to: &Base) -> Self {
        Transformed::with(inner, JsonUrlRewriter::new(from, to))
    }
}

/// A body with a secret redacted (see [`StreamRedact`]).
pub type RedactBody<B> = Transformed<B, StreamRedact>;

impl<B> Transformed<B, StreamRedact>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn shared(inner: B, needles: Arc<Needles>) -> Self {
        Transformed::with(inner, StreamRedact::shared(needles))
    }
}

/// A JSON body with the secret masked in its strings, whatever their escapes, and in its raw
/// spellings (see [`JsonBodyRedact`]).
pub type JsonRedactBody<B> = Transformed<B, JsonBodyRedact>;

impl<B> Transformed<B, JsonBodyRedact>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn json_strings(inner: B, needles: Arc<Needles>) -> Self {
        Transformed::with(inner, JsonBodyRedact::shared(needles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    use crate::body::json_urls_tests::{CL, UP, client, up};

    #[tokio::test(flavor = "current_thread")]
    async fn bodies_stream_and_keep_trailers() {
        use http_body_util::BodyExt;

        struct Frames(VecDeque<Frame<Bytes>>);
        impl Body for Frames {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(self.get_mut().0.pop_front().map(Ok))
            }
        }

        let text = format!(r#"{{"location":"{UP}/Users/1","t":"s3cr3t","u":"{UP}"#);
        let mut frames: VecDeque<Frame<Bytes>> = text
            .as_bytes()
            .chunks(5)
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        frames.push_back(Frame::trailers(trailers.clone()));

        // As the proxy sends a JSON answer down: rewritten, then redacted.
        let rewritten = RewriteBody::new(Frames(frames), &up(), &client());
        let body = RedactBody::shared(rewritten, Arc::new(Needles::new(b"s3cr3t", b"***")));
        assert_eq!(body.size_hint().exact(), None);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        // The unterminated last string was cut off by the trailers: left as it was.
        assert_eq!(
            collected.to_bytes(),
            format!(r#"{{"location":"{CL}/Users/1","t":"***","u":"{UP}"#)
        );

        let empty = RewriteBody::new(Frames(VecDeque::new()), &up(), &client());
        assert!(!empty.is_end_stream());
        assert!(empty.collect().await.unwrap().to_bytes().is_empty());
    }
}
