//! Tests of the token redactor: cases, and equality with a naive replace for any chunking.

use super::redact::*;
use bytes::BytesMut;
use proptest::prelude::*;

fn redact_chunked(hay: &[u8], needle: &[u8], repl: &[u8], splits: &[usize]) -> Vec<u8> {
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (hay.len() + 1)).collect();
    cuts.sort_unstable();
    let mut r = StreamRedact::new(needle, repl);
    let mut out = BytesMut::new();
    let mut prev = 0;
    for c in cuts {
        r.feed(&hay[prev..c], &mut out);
        assert!(r.carry.len() < r.needles.max_len.max(1));
        prev = c;
    }
    r.feed(&hay[prev..], &mut out);
    r.finish(&mut out);
    out.to_vec()
}

/// Leftmost, longest-at-a-position replacement of several needles, the obvious way.
fn naive_replace(hay: &[u8], needles: &[Vec<u8>], repl: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < hay.len() {
        let best = needles
            .iter()
            .filter(|n| !n.is_empty() && hay[i..].starts_with(n))
            .map(Vec::len)
            .max();
        match best {
            Some(len) => {
                out.extend_from_slice(repl);
                i += len;
            }
            None => {
                out.push(hay[i]);
                i += 1;
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn redact_table() {
    let token = b"tok/en+1";
    let cases: &[(&[u8], &[u8])] = &[
        (b"Bearer tok/en+1", b"Bearer [REDACTED]"),
        (br#"{"t":"tok\/en+1"}"#, br#"{"t":"[REDACTED]"}"#),
        (b"tok/en+tok/en+1tok/en+1", b"tok/en+[REDACTED][REDACTED]"),
        (b"tok/en", b"tok/en"),
        (b"", b""),
    ];
    for (hay, want) in cases {
        let all: Vec<usize> = (0..=hay.len()).collect();
        assert_eq!(redact_chunked(hay, token, b"[REDACTED]", &[]), *want);
        assert_eq!(redact_chunked(hay, token, b"[REDACTED]", &all), *want);
    }
    // `"` and `\` in a secret are matched in their escaped spellings too.
    assert_eq!(
        redact_chunked(br#"a\"b\\c / a"b\c"#, br#"a"b\c"#, b"*", &[3]),
        b"* / *"
    );
    assert_eq!(redact_chunked(b"abc", b"", b"*", &[1]), b"abc");
}

fn splits() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (d) Redaction equals a naive replace for any chunking and never leaves the needle.
    #[test]
    fn redact_is_naive_replace(
        hay in prop::collection::vec(prop::sample::select(&b"ab/\\\"c"[..]), 0..80),
        needle in prop::collection::vec(prop::sample::select(&b"ab/\\\""[..]), 1..6),
        cuts in splits(),
    ) {
        let r = StreamRedact::new(&needle, b"*");
        let got = redact_chunked(&hay, &needle, b"*", &cuts);
        prop_assert_eq!(&got, &naive_replace(&hay, &r.needles.needles, b"*"));
        prop_assert!(!contains(&got, &needle));
        if !needle.iter().any(|b| b"/\\\"".contains(b)) {
            let s = String::from_utf8(hay.clone()).unwrap();
            let n = String::from_utf8(needle.clone()).unwrap();
            prop_assert_eq!(got, s.replace(&n, "*").into_bytes());
        }
    }

    /// The same for a token with one spelling (the substring-search path), on bytes dense
    /// with partial matches.
    #[test]
    fn redact_single_spelling_is_str_replace(
        hay in prop::collection::vec(prop::sample::select(&b"aab"[..]), 0..120),
        needle in prop::collection::vec(prop::sample::select(&b"ab"[..]), 1..8),
        cuts in splits(),
    ) {
        prop_assert!(StreamRedact::new(&needle, b"*").needles.single.is_some());
        let got = redact_chunked(&hay, &needle, b"*", &cuts);
        let s = String::from_utf8(hay.clone()).unwrap();
        let n = String::from_utf8(needle.clone()).unwrap();
        prop_assert_eq!(got, s.replace(&n, "*").into_bytes());
    }
}
