//! Walking an error's causes, through the `io::Error`s that hide them.

/// Every error in a chain, including those wrapped inside `io::Error`s (whose `source()` skips
/// the wrapped error: hyper-rustls wraps tokio-rustls's `io::Error` around the `rustls::Error`).
pub fn error_chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next.take() {
        if out.len() >= 32 {
            break;
        }
        out.push(err);
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    out
}

/// The first error of type `T` anywhere in the chain.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    error_chain(e)
        .into_iter()
        .find_map(|x| x.downcast_ref::<T>())
}

/// The innermost error's words: usually the most specific ("Connection refused").
pub fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    error_chain(e)
        .last()
        .map(|e| e.to_string())
        .unwrap_or_default()
}
