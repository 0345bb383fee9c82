//! The upstream leg as one phase: the send (504 after upstream_timeout, one reset retry), the
//! route held on the rate signals its answer carries, and after a 401 with a rotated token one
//! resend of a request kept whole. The IdP gets the last answer as the upstream gave it.

use std::time::Duration;

use http::{Request, Response};

use crate::body::ProxyBody;
use crate::config::Route;
use crate::error::ProxyError;
use crate::proxy::send::{self, Replay, SendContext, Upstream};
use crate::proxy::{pacing, resend};
use crate::state::{RouteRuntime, Shared};

/// What the leg gave, for the response and the traffic record.
pub(crate) struct Leg {
    /// The last answer (or failure).
    pub result: Result<Response<ProxyBody>, ProxyError>,
    /// Upstream time of every attempt together.
    pub upstream_time: Duration,
    pub retried: bool,
    /// Some: the request went once more with a rotated token.
    pub resent: Option<Resent>,
}

/// A resend after a 401 with a rotated token.
pub(crate) struct Resent {
    /// Time the resend waited for its own slot on a paced route.
    pub waited: Option<Duration>,
    /// The route's state with the new token: its mask reads the answer.
    pub runtime: Box<RouteRuntime>,
}

/// Sends `req` and, after a 401 whose token source now holds another token, `replay` once more
/// with it (never after the reset retry, never a streamed body: `replay` is None for those).
pub(crate) async fn send_upstream<'a>(
    upstream: &dyn Upstream,
    shared: &Shared,
    (route, runtime): (&Route, &RouteRuntime),
    (req, replay): (Request<ProxyBody>, Option<Replay>),
    cx: impl Fn() -> SendContext<'a>,
) -> Leg {
    let metrics = &shared.metrics.pacing;
    let sent = send::send(upstream, req, replay.as_ref(), cx()).await;
    let first = |result| Leg {
        result,
        upstream_time: sent.upstream_time,
        retried: sent.retried,
        resent: None,
    };
    let res = match sent.result {
        Ok(res) => res,
        Err(e) => return first(Err(e)),
    };
    pacing::listen(route, runtime, metrics, res.status(), res.headers());
    // A 401 may be a token rotated with immediate invalidation: its source is read now.
    let rotated = resend::reread_after_401(shared, route, runtime, res.status());
    let (Some(rotated), Some(again), false) = (rotated, &replay, sent.retried) else {
        return first(Ok(res));
    };
    // The resend takes a slot of its own; beyond max_queue_wait the 401 goes as it came.
    let Ok(waited) = pacing::pace(route, &rotated, metrics).await else {
        return first(Ok(res));
    };
    metrics.token_resend(&route.name);
    let again = send::send(
        upstream,
        resend::with_token(again, route, &rotated),
        None,
        cx(),
    )
    .await;
    if let Ok(res) = &again.result {
        pacing::listen(route, &rotated, metrics, res.status(), res.headers());
    }
    Leg {
        result: again.result,
        upstream_time: sent.upstream_time + again.upstream_time,
        retried: sent.retried,
        resent: Some(Resent {
            waited,
            runtime: rotated,
        }),
    }
}
