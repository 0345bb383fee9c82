//! How personal values are logged (hashed, plain or omitted), and scrubbing them from free text.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::observe::credentials::MASK;

/// How personal values (`subject`, personal fields of captured bodies) are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    /// `h:` + the first 16 hex digits of HMAC-SHA256(key, value): lines about one user correlate.
    Hash,
    Plain,
    Omit,
}

/// The PII mode and its HMAC key. `Debug` never shows the key.
#[derive(Clone)]
pub struct PiiPolicy {
    mode: Pii,
    /// HMAC-SHA256 keyed once: each value costs its own blocks, not the key's two pads again.
    /// HMAC takes keys of any length, so this is always set; without it values are omitted.
    keyed: Option<Hmac<Sha256>>,
}

impl fmt::Debug for PiiPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiiPolicy")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PiiPolicy {
    /// With a configured key, hashes are stable across restarts.
    pub fn new(mode: Pii, key: Vec<u8>) -> PiiPolicy {
        PiiPolicy {
            mode,
            keyed: Hmac::<Sha256>::new_from_slice(&key).ok(),
        }
    }

    /// With a random key for this process: hashes correlate within one run only.
    pub fn per_process(mode: Pii) -> PiiPolicy {
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        PiiPolicy::new(mode, key)
    }

    pub fn mode(&self) -> Pii {
        self.mode
    }

    /// The value as logged; `None` under `omit`.
    pub fn apply(&self, value: &str) -> Option<String> {
        match self.mode {
            Pii::Plain => Some(value.to_owned()),
            Pii::Omit => None,
            Pii::Hash => {
                // Omitted rather than leaked, were the key ever unusable.
                let mut mac = self.keyed.clone()?;
                mac.update(value.as_bytes());
                let digest = mac.finalize().into_bytes();
                Some(format!("h:{}", hex::encode(&digest[..8])))
            }
        }
    }
}

/// Under hash/omit, replaces `subject` and e-mail-like words in free text by the policy's form.
pub(crate) fn scrub_text(text: &str, subject: Option<&str>, pii: &PiiPolicy) -> String {
    if pii.mode == Pii::Plain {
        return text.to_owned();
    }
    let masked = |s: &str| pii.apply(s).unwrap_or_else(|| MASK.to_owned());
    let mut text = text.to_owned();
    if let Some(subject) = subject.filter(|s| s.chars().count() >= 3) {
        // Upstreams echo user names in their own case ("Pat.Doe" sent, "pat.doe" in the detail).
        text = replace_ignore_ascii_case(&text, subject, &masked(subject));
    }
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| "\"'()<>[]{},;:.!?".contains(c));
        let personal = core
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
        if personal {
            out.push_str(&word.replacen(core, &masked(core), 1));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Replaces every ASCII-case-insensitive occurrence of `needle`.
fn replace_ignore_ascii_case(text: &str, needle: &str, with: &str) -> String {
    let (hay, pat) = (text.as_bytes(), needle.as_bytes());
    if pat.is_empty() || pat.len() > hay.len() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i + pat.len() <= hay.len() {
        if hay[i..i + pat.len()].eq_ignore_ascii_case(pat)
            && text.is_char_boundary(i)
            && text.is_char_boundary(i + pat.len())
        {
            out.push_str(&text[last..i]);
            out.push_str(with);
            i += pat.len();
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::test_support::{hash_policy, plain};

    #[test]
    fn hmac_matches_rfc4231_and_is_keyed() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?") = 5bdcc146bf60754e…
        let jefe = PiiPolicy::new(Pii::Hash, b"Jefe".to_vec());
        assert_eq!(
            jefe.apply("what do ya want for nothing?").as_deref(),
            Some("h:5bdcc146bf60754e")
        );
        let a = hash_policy().apply("alice@contoso.com");
        assert_eq!(
            a,
            hash_policy().apply("alice@contoso.com"),
            "stable with the same key"
        );
        let b = PiiPolicy::new(Pii::Hash, b"another-key".to_vec()).apply("alice@contoso.com");
        assert_ne!(a, b, "differs with another key");
        assert_ne!(a, hash_policy().apply("bob@contoso.com"));
        assert_ne!(
            PiiPolicy::per_process(Pii::Hash).apply("x"),
            PiiPolicy::per_process(Pii::Hash).apply("x")
        );
        assert_eq!(plain().apply("alice").as_deref(), Some("alice"));
        assert_eq!(PiiPolicy::new(Pii::Omit, vec![1]).apply("alice"), None);
        let shown = format!("{:?}", PiiPolicy::new(Pii::Hash, b"sekrit-key".to_vec()));
        assert!(
            !shown.contains("sekrit") && !shown.contains("115"),
            "{shown}"
        );
    }
}
