//! Fuzz target for `body_rewrite`: arbitrary bytes under arbitrary chunkings never panic, the chunking
//! never changes the output, input that cannot hold a match passes through byte-identical, and
//! redaction equals a naive replace.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use scim_proxy::body::rewrite::{JsonUrlRewriter, StreamRedact, rewrite_json};
use scim_proxy::scim::base::{Base, rewrite_absolute};

const SECRET: &[u8] = b"s3cr/t\"k";
const REDACTED: &[u8] = b"[REDACTED]";

fuzz_target!(|data: &[u8]| {
    // The first byte seeds the chunk sizes; the rest is the body.
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let from = Base::new("https", "acme.goskope.com", "/api/v2/scim");
    let to = Base::new("https", "addon-acme.goskope.com", "/SCIM/v2");

    let one = rewrite_json(body, &from, &to);
    let mut rw = JsonUrlRewriter::new(&from, &to);
    let mut out = BytesMut::new();
    for chunk in Chunks::new(body, seed) {
        rw.feed(chunk, &mut out);
    }
    rw.finish(&mut out);
    assert_eq!(out[..], one[..], "chunking changed the output");

    if !body.contains(&b'\\') {
        // Without escapes a string's content is its bytes: `rewrite_absolute` predicts the result.
        assert_eq!(one, unescaped_oracle(body, &from, &to));
        if !contains_ignore_case(body, b"https://") {
            assert_eq!(one, body, "non-matching input changed");
        }
    }

    // Redaction, on the raw body.
    let mut red = StreamRedact::new(SECRET, REDACTED);
    let mut out = BytesMut::new();
    for chunk in Chunks::new(body, seed.rotate_left(3)) {
        red.feed(chunk, &mut out);
    }
    red.finish(&mut out);
    let spellings: [&[u8]; 3] = [SECRET, br#"s3cr/t\"k"#, br#"s3cr\/t\"k"#];
    assert_eq!(out[..], naive_replace(body, &spellings, REDACTED)[..]);
    assert!(!out.windows(SECRET.len()).any(|w| w == SECRET));
});

/// Splits `body` into pseudo-random chunk sizes 0..=16 (empty feeds included).
struct Chunks<'a> {
    rest: &'a [u8],
    state: u32,
    done: bool,
}

impl<'a> Chunks<'a> {
    fn new(rest: &'a [u8], seed: u8) -> Self {
        Chunks {
            rest,
            state: u32::from(seed) | 0x100,
            done: false,
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        if self.rest.is_empty() {
            self.done = true;
            return Some(self.rest);
        }
        self.state = self.state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = ((self.state >> 16) % 17) as usize;
        let (chunk, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The expected rewrite of a body without backslashes: strings are the bytes between quotes.
fn unescaped_oracle(body: &[u8], from: &Base, to: &Base) -> Vec<u8> {
    let to_url = to.url();
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(open) = rest.iter().position(|&b| b == b'"') {
        out.extend_from_slice(&rest[..=open]);
        rest = &rest[open + 1..];
        let (content, terminated) = match rest.iter().position(|&b| b == b'"') {
            Some(close) => (&rest[..close], true),
            None => (rest, false),
        };
        let valid = match std::str::from_utf8(content) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&content[..e.valid_up_to()]).unwrap_or_default(),
        };
        let matched = rewrite_absolute(valid, from, to)
            .map(|r| valid.len() - (r.len() - to_url.len()))
            // The base must be followed by a boundary byte, or by the closing quote.
            .filter(|&n| n < valid.len() || (n == content.len() && terminated));
        match matched {
            Some(n) => {
                out.extend_from_slice(to_url.as_bytes());
                out.extend_from_slice(&content[n..]);
            }
            None => out.extend_from_slice(content),
        }
        if terminated {
            out.push(b'"');
            rest = &rest[content.len() + 1..];
        } else {
            rest = &[];
        }
    }
    out.extend_from_slice(rest);
    out
}

/// Leftmost, longest-at-a-position replacement of any of `needles`.
fn naive_replace(hay: &[u8], needles: &[&[u8]], repl: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        match needles
            .iter()
            .filter(|n| hay[i..].starts_with(n))
            .map(|n| n.len())
            .max()
        {
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
