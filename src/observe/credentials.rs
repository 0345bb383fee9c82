//! Names that say a value is a credential (query parameters, JSON keys), and the mask written
//! instead of one.

/// What a masked secret is written as.
pub(crate) const MASK: &str = "***";

/// Credential-looking parameter names: the usual exact names, and anything naming a token, secret,
/// password or API key (`id_token`, `client_secret`, `x-api-key`, `subscription-key`).
pub(crate) fn is_credential_param(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    const EXACT: [&str; 13] = [
        "access_token",
        "token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "auth",
        "authorization",
        "bearer",
        "code",
        "sig",
        "signature",
    ];
    EXACT.contains(&n.as_str()) || is_secret_name(&n) || n.ends_with("_key") || n.ends_with("-key")
}

/// Key names that hold secrets wherever they appear (query names, JSON keys).
pub(crate) fn is_secret_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "credential",
        "privatekey",
    ]
    .iter()
    .any(|s| n.contains(s))
        || matches!(
            n.as_str(),
            "key" | "auth" | "authorization" | "bearer" | "signature"
        )
}
