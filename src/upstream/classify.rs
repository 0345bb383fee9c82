//! What went wrong on the way to the upstream, in the request path's words.

use crate::error::{ErrorKind, ProxyError, error_chain};

/// Classifies a hyper-util client error by walking its source chain.
pub fn classify_upstream_error(err: &hyper_util::client::legacy::Error) -> ProxyError {
    let chain = error_chain(err);
    let tunnel = chain
        .iter()
        .find_map(|e| e.downcast_ref::<super::ForwardProxyError>());
    let tls = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>());
    let io = chain
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>());
    if let Some(t) = tunnel {
        return ProxyError::new(ErrorKind::UpstreamConnect, t.to_string());
    }
    if let Some(t) = tls {
        return ProxyError::new(
            ErrorKind::UpstreamTls,
            format!("upstream TLS failed: {}", crate::tls::describe_tls_error(t)),
        );
    }
    if err.is_connect() {
        let why = io.map(|e| e.to_string()).unwrap_or_else(|| innermost(err));
        return ProxyError::new(
            ErrorKind::UpstreamConnect,
            format!("could not connect to the upstream: {why}"),
        );
    }
    ProxyError::new(
        ErrorKind::UpstreamProtocol,
        format!("the upstream connection failed: {}", innermost(err)),
    )
}

fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    error_chain(err)
        .last()
        .map(|e| e.to_string())
        .unwrap_or_default()
}
