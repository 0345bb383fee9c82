//! After an upstream 401: the route's token source read at once, without waiting for the poll.
//! A changed token comes back as a runtime for the one resend, and a reload follows so that every
//! later request uses it (and the redaction, expiry and readiness follow it too).

use std::sync::{Arc, Mutex, PoisonError};

use crate::body::rewrite::Needles;
use crate::config::Route;
use crate::state::reload::reload_and_log;
use crate::state::tokens::read_token;
use crate::state::v2_token::V2Token;
use crate::state::{RouteRuntime, Shared};

/// What reading the token source after a 401 found.
pub enum Reread {
    /// A token other than the one the request was sent with: the route's runtime with it.
    Changed(Box<RouteRuntime>),
    Unchanged,
    /// The source cannot be read or holds no valid token; the 401 stands.
    Failed,
}

impl Reread {
    /// The `outcome` label of `scim_proxy_token_rereads_total`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reread::Changed(_) => "changed",
            Reread::Unchanged => "unchanged",
            Reread::Failed => "failed",
        }
    }
}

/// Serialises the reloads 401s trigger, and remembers the last one's route and token, so that a
/// burst of 401s after a rotation reloads once, and a config that cannot reload is tried once per
/// new token, not once per request.
#[derive(Default)]
pub struct TokenReloads(Mutex<Option<(String, String)>>);

/// Reads `route`'s token source now and compares it with the token `runtime` sent.
pub fn reread_token(shared: &Shared, route: &Route, runtime: &RouteRuntime) -> Reread {
    let token = match read_token(&route.token).and_then(|t| V2Token::new(&t, route.upstream_auth)) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(route = %route.name, source = %route.token, error = %e, "upstream 401: cannot re-read the route's token");
            return Reread::Failed;
        }
    };
    if token.expose_for_redaction() == runtime.token.expose_for_redaction() {
        return Reread::Unchanged;
    }
    tracing::info!(route = %route.name, token = %token.fingerprint(), "upstream 401: the route's token source holds a new token; reloading");
    reload_unless_current(shared, route, &token);
    Reread::Changed(Box::new(runtime.with_token(token)))
}

/// Reloads once per rotation: a snapshot already holding `token`, or a reload already tried for
/// it, is left alone.
fn reload_unless_current(shared: &Shared, route: &Route, token: &V2Token) {
    let mut last = shared
        .token_reloads
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let this = (route.name.clone(), token.fingerprint());
    let current = shared.state.load();
    let loaded = current
        .route_named(&route.name)
        .is_some_and(|(_, r)| r.token.expose_for_redaction() == token.expose_for_redaction());
    if !loaded && last.as_ref() != Some(&this) {
        *last = Some(this);
        reload_and_log(shared, "upstream 401 with a rotated token");
    }
}

impl RouteRuntime {
    /// This runtime with `token` in place of its own: for the request that found the rotation.
    /// Counters and the pacer are shared; the expiry date belonged to the old token.
    fn with_token(&self, token: V2Token) -> RouteRuntime {
        RouteRuntime {
            base: self.base.clone(),
            token_redaction: Arc::new(Needles::masking(token.expose_for_redaction().as_bytes())),
            client_in_flight: self.client_in_flight.clone(),
            token_expiry: None,
            pacer: self.pacer.clone(),
            token,
        }
    }
}
