//! One certificate order with instant-acme (RFC 8555; the crate signs every request): the
//! account (stored, or created with the contact and External Account Binding), the order for the
//! configured names, the challenge answers put where the listeners find them, a fresh key and
//! its CSR (rcgen), and the issued chain.

use std::time::Duration;

use base64::Engine;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, ExternalAccountKey, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::AcmeCell;
use super::challenge::tls_alpn_certificate;
use super::http::AcmeHttp;
use super::store::Store;
use crate::config::{Acme, AcmeChallenge, TokenSource};

/// How long the CA may take to validate, and then to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(120));

/// An issued certificate: the chain (leaf first) and its new key, both PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `acme.domains`, answering the challenges through `cell`.
pub async fn obtain(acme: &Acme, cell: &AcmeCell, store: &Store) -> Result<Issued, String> {
    let account = account(acme, store).await?;
    let identifiers: Vec<Identifier> = acme
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("the CA refused the order: {e}"))?;
    let _answers = ClearOnDrop(cell);
    answer_challenges(&mut order, acme, cell).await?;
    let status = order
        .poll_ready(&POLL)
        .await
        .map_err(|e| format!("the order failed: {e}"))?;
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order).await);
    }
    let key = KeyPair::generate().map_err(|e| format!("cannot make the certificate key: {e}"))?;
    let csr = csr(&acme.domains, &key)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| format!("the CA refused to finalize the order: {e}"))?;
    let chain_pem = order
        .poll_certificate(&POLL)
        .await
        .map_err(|e| format!("the CA did not issue the certificate: {e}"))?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The stored account for this directory, or a new one (stored at once).
async fn account(acme: &Acme, store: &Store) -> Result<Account, String> {
    let http = || AcmeHttp::new(acme.ca_file.as_deref()).map(Box::new);
    let reach = |e: instant_acme::Error| format!("ACME directory {}: {e}", acme.directory);
    if let Some(credentials) = store.load_account(&acme.directory) {
        return Account::builder_with_http(http()?)
            .from_credentials(credentials)
            .await
            .map_err(reach);
    }
    let eab = match &acme.eab {
        Some(eab) => Some(ExternalAccountKey::new(
            eab.kid.clone(),
            &eab_hmac_key(&eab.hmac_key)?,
        )),
        None => None,
    };
    let contact = [acme.contact.as_str()];
    let new_account = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(&new_account, acme.directory.clone(), eab.as_ref())
        .await
        .map_err(|e| match (&acme.eab, &e) {
            (Some(eab), instant_acme::Error::Api(_)) => format!(
                "the CA refused the account (External Account Binding, eab_kid {:?}): {e}",
                eab.kid
            ),
            _ => reach(e),
        })?;
    store.save_account(&acme.directory, credentials)?;
    Ok(account)
}

/// The EAB HMAC key: base64url as CAs hand it out (padding and surrounding space tolerated).
fn eab_hmac_key(source: &TokenSource) -> Result<Vec<u8>, String> {
    let text = match source {
        TokenSource::File(p) => std::fs::read_to_string(p).map_err(|e| {
            format!(
                "listen.acme.eab_hmac_key_file: cannot read {}: {e}",
                p.display()
            )
        })?,
        TokenSource::Env(name) => std::env::var(name)
            .map_err(|_| format!("listen.acme.eab_hmac_key_env: {name} is not set"))?,
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| format!("the EAB HMAC key ({source}) is not base64url"))
}

/// Puts each pending authorization's answer where the listener finds it, then tells the CA.
async fn answer_challenges(order: &mut Order, acme: &Acme, cell: &AcmeCell) -> Result<(), String> {
    let kind = match acme.challenge {
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        AcmeChallenge::Http01(_) => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(result) = authorizations.next().await {
        let mut authz = result.map_err(|e| format!("cannot read an authorization: {e}"))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("the CA's authorization for {domain} is {other:?}")),
        }
        let Some(mut challenge) = authz.challenge(kind.clone()) else {
            return Err(format!("the CA offers no {kind:?} challenge for {domain}"));
        };
        let key_authorization = challenge.key_authorization();
        match acme.challenge {
            AcmeChallenge::TlsAlpn01 => {
                let (key, pem) =
                    tls_alpn_certificate(&domain, key_authorization.digest().as_ref())?;
                cell.set_alpn_challenge(&domain, key, &pem);
            }
            AcmeChallenge::Http01(_) => {
                cell.set_http_challenge(&challenge.token, key_authorization.as_str())
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("the CA refused the {kind:?} challenge for {domain}: {e}"))?;
    }
    Ok(())
}

/// What the CA said about each failed challenge of an invalid order.
async fn why_invalid(order: &mut Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let _ = authz.refresh().await;
        let domain = authz.identifier().to_string();
        for c in &authz.challenges {
            if let Some(error) = &c.error {
                reasons.push(format!("{domain} ({:?}): {error}", c.r#type));
            }
        }
    }
    if reasons.is_empty() {
        "the CA marked the order invalid without saying why".to_string()
    } else {
        format!("the CA could not validate {}", reasons.join("; "))
    }
}

/// A CSR for `domains` (all as SANs, the first also the common name).
fn csr(domains: &[String], key: &KeyPair) -> Result<Vec<u8>, String> {
    let why = |e: rcgen::Error| format!("cannot make the certificate request: {e}");
    let mut params = CertificateParams::new(domains.to_vec()).map_err(why)?;
    let mut name = DistinguishedName::new();
    if let Some(first) = domains.first() {
        name.push(DnType::CommonName, first.clone());
    }
    params.distinguished_name = name;
    Ok(params.serialize_request(key).map_err(why)?.der().to_vec())
}

/// Challenge answers live only as long as their order.
struct ClearOnDrop<'a>(&'a AcmeCell);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.clear_challenges();
    }
}
