//! Masking the v2 token inside JSON strings whatever their escapes ([`JsonStringRedact`]).

use std::sync::Arc;

use bytes::BytesMut;

use crate::body::json_text::{decode_json_string, json_escape, string_end};
use crate::body::redact::{Needles, StreamRedact};

/// Longest JSON string held back to be judged decoded; a longer one is judged in pieces.
const HOLD_LIMIT: usize = 64 * 1024;

/// Masks the secret inside JSON strings whatever their escapes (`\u002d`, `\/`, ...): a string
/// with a backslash is decoded and, when it holds the secret, written back re-escaped with the
/// secret masked. Strings without a backslash cost one scan and pass unchanged (the raw spelling
/// is [`StreamRedact`]'s, which runs after this). A string open at a chunk end is held until its
/// closing quote, up to [`HOLD_LIMIT`]; beyond that it is judged in pieces, and a piece ending
/// in a prefix of the secret has that prefix masked too (conservative).
#[derive(Debug, Clone)]
pub struct JsonStringRedact {
    needles: Arc<Needles>,
    /// Raw content of the open string held since its quote (or since the last piece).
    held: Vec<u8>,
    holding: bool,
    /// The next input byte is escaped (a backslash ended the last chunk).
    escaped: bool,
}

impl JsonStringRedact {
    pub fn shared(needles: Arc<Needles>) -> Self {
        JsonStringRedact {
            needles,
            held: Vec::new(),
            holding: false,
            escaped: false,
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        if self.needles.secret.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        let mut i = 0;
        if self.holding {
            let (end, _, escaped) = string_end(input, self.escaped);
            match end {
                Some(e) => {
                    self.held.extend_from_slice(&input[..e]);
                    self.emit_held(out, false);
                    self.holding = false;
                    out.extend_from_slice(b"\"");
                    i = e + 1;
                }
                None => {
                    self.held.extend_from_slice(input);
                    self.escaped = escaped;
                    if self.held.len() > HOLD_LIMIT {
                        self.emit_held(out, true);
                    }
                    return;
                }
            }
        }
        self.scan(input, i, out);
    }

    /// The strings of `input` from `i`, which is outside any string: only those with a backslash
    /// are looked at ([`next_escaped`]); one long enough to hold the secret is decoded and, when
    /// it does, written back re-escaped with the secret masked.
    fn scan(&mut self, input: &[u8], mut i: usize, out: &mut BytesMut) {
        let mut copied = i;
        loop {
            match next_escaped(input, i) {
                Escaped::NoneLeft { open: None } => break,
                Escaped::NoneLeft { open: Some(s) } => {
                    out.extend_from_slice(&input[copied..s]);
                    self.hold_from(&input[s..], false, out);
                    return;
                }
                Escaped::Open { start, escaped } => {
                    out.extend_from_slice(&input[copied..start]);
                    self.hold_from(&input[start..], escaped, out);
                    return;
                }
                Escaped::Closed { start, end } => {
                    // Decoding never lengthens a string: a shorter one cannot hold the secret.
                    if end - start >= self.needles.secret.len() {
                        let (decoded, _) = decode_json_string(&input[start..end], false);
                        let (masked, changed) = mask_secret(&decoded, &self.needles, false);
                        if changed {
                            out.extend_from_slice(&input[copied..start]);
                            out.extend_from_slice(&json_escape(&masked, false));
                            copied = end;
                        }
                    }
                    i = end + 1;
                }
            }
        }
        out.extend_from_slice(&input[copied..]);
    }

    /// Holds the open string `rest` (its content after the quote) until its closing quote.
    fn hold_from(&mut self, rest: &[u8], escaped: bool, out: &mut BytesMut) {
        self.held.clear();
        self.held.extend_from_slice(rest);
        self.holding = true;
        self.escaped = escaped;
        if self.held.len() > HOLD_LIMIT {
            self.emit_held(out, true);
        }
    }

    /// Ends the body: an unterminated string is judged as it is. Resets for reuse.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.holding {
            self.emit_held(out, false);
        }
        self.holding = false;
        self.escaped = false;
        self.held.clear();
    }

    /// Writes what is held (all of it, or with `piece` up to an incomplete escape at its end).
    fn emit_held(&mut self, out: &mut BytesMut, piece: bool) {
        // Most strings hold no escape and not the secret: written as they are, nothing allocated.
        if !piece
            && memchr::memchr(b'\\', &self.held).is_none()
            && self.needles.secret_finder.find(&self.held).is_none()
        {
            out.extend_from_slice(&self.held);
            self.held.clear();
            return;
        }
        let held = std::mem::take(&mut self.held);
        let (decoded, used) = decode_json_string(&held, piece);
        let (masked, changed) = mask_secret(&decoded, &self.needles, piece);
        if changed {
            out.extend_from_slice(&json_escape(&masked, false));
        } else {
            out.extend_from_slice(&held[..used]);
        }
        self.held = held;
        self.held.drain(..used);
    }

    pub(crate) fn is_idle(&self) -> bool {
        !self.holding
    }
}

/// `decoded` with every occurrence of the secret replaced by the mask (and with `piece`, a tail
/// that may continue into the secret), and whether anything was replaced.
fn mask_secret(decoded: &[u8], needles: &Needles, piece: bool) -> (Vec<u8>, bool) {
    let secret = &needles.secret;
    let mut out = Vec::with_capacity(decoded.len());
    let mut changed = false;
    let mut run = 0;
    for k in needles.secret_finder.find_iter(decoded) {
        if k < run {
            continue;
        }
        out.extend_from_slice(&decoded[run..k]);
        out.extend_from_slice(&needles.replacement);
        run = k + secret.len();
        changed = true;
    }
    let rest = &decoded[run..];
    let tail = if piece {
        (1..secret.len().min(rest.len() + 1))
            .rev()
            .find(|&n| secret.starts_with(&rest[rest.len() - n..]))
            .unwrap_or(0)
    } else {
        0
    };
    out.extend_from_slice(&rest[..rest.len() - tail]);
    if tail > 0 {
        out.extend(std::iter::repeat_n(b'*', tail));
        changed = true;
    }
    (out, changed)
}

/// Whether masking the whole JSON `input` ([`JsonBodyRedact`]) would change it: a spelling of the
/// token in it as written, or a string with escapes that decodes to hold it (or an open string too
/// long to be judged whole). False means the masked body is `input` itself, so a caller can skip
/// both passes and the copy. Follows the strings as [`JsonStringRedact::feed`] does.
pub fn masks_anything(input: &[u8], needles: &Needles) -> bool {
    if needles.secret.is_empty() {
        return false;
    }
    if needles.occurs_in(input) {
        return true;
    }
    let holds = |raw: &[u8]| {
        raw.len() >= needles.secret.len() && {
            let (decoded, _) = decode_json_string(raw, false);
            needles.secret_finder.find(&decoded).is_some()
        }
    };
    let mut i = 0;
    loop {
        match next_escaped(input, i) {
            // An open string without escapes is judged as written: no spelling, no change.
            Escaped::NoneLeft { open } => {
                return open.is_some_and(|s| input.len() - s > HOLD_LIMIT);
            }
            Escaped::Open { start, .. } => {
                let open = &input[start..];
                return open.len() > HOLD_LIMIT || holds(open);
            }
            Escaped::Closed { start, end } => {
                if holds(&input[start..end]) {
                    return true;
                }
                i = end + 1;
            }
        }
    }
}

/// The next JSON string with a backslash in `input` from `i` (outside any string), as the
/// string pass sees strings: any `"` outside a string opens one.
enum Escaped {
    /// No backslash left; `open` is where the content of a last string, left open, begins.
    NoneLeft { open: Option<usize> },
    /// A string with a backslash, its content `start..end` (the closing quote at `end`).
    Closed { start: usize, end: usize },
    /// A string with a backslash left open from `start`; `escaped`: the input ends on a backslash.
    Open { start: usize, escaped: bool },
}

/// Jumps from one backslash to the next: the quotes before it, counted, tell whether it is inside
/// a string (odd) and which quote opened that string; only that string is followed to its end.
fn next_escaped(input: &[u8], mut i: usize) -> Escaped {
    loop {
        let Some(k) = memchr::memchr(b'\\', &input[i..]) else {
            // An odd count of quotes leaves the last string open.
            let open = (count_quotes(&input[i..]) % 2 == 1)
                .then(|| memchr::memrchr(b'"', &input[i..]).map(|q| i + q + 1))
                .flatten();
            return Escaped::NoneLeft { open };
        };
        let b = i + k;
        let before = &input[i..b];
        let Some(q) = memchr::memrchr(b'"', before).filter(|_| count_quotes(before) % 2 == 1)
        else {
            // A backslash between strings is an ordinary byte here.
            i = b + 1;
            continue;
        };
        let start = i + q + 1;
        let (end, _, escaped) = string_end(&input[start..], false);
        return match end {
            Some(e) => Escaped::Closed {
                start,
                end: start + e,
            },
            None => Escaped::Open { start, escaped },
        };
    }
}

/// How many `"` are in `bytes` (written as a sum, which the compiler vectorizes).
fn count_quotes(bytes: &[u8]) -> usize {
    bytes.iter().map(|&b| usize::from(b == b'"')).sum()
}

/// The token masked in a JSON body, one pass serving streamed bodies and whole ones alike: inside
/// its strings by [`JsonStringRedact`], then in its raw and escaped spellings by [`StreamRedact`].
#[derive(Debug, Clone)]
pub struct JsonBodyRedact {
    strings: JsonStringRedact,
    raw: StreamRedact,
    /// What the string pass wrote, for the raw pass to read.
    between: BytesMut,
}

impl JsonBodyRedact {
    pub fn shared(needles: Arc<Needles>) -> Self {
        JsonBodyRedact {
            strings: JsonStringRedact::shared(needles.clone()),
            raw: StreamRedact::shared(needles),
            between: BytesMut::new(),
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        self.between.clear();
        self.strings.feed(input, &mut self.between);
        if !self.between.is_empty() {
            self.raw.feed(&self.between, out);
        }
    }

    /// Ends the body: what either pass holds back goes out. Resets for reuse.
    pub fn finish(&mut self, out: &mut BytesMut) {
        self.between.clear();
        self.strings.finish(&mut self.between);
        if !self.between.is_empty() {
            self.raw.feed(&self.between, out);
        }
        self.raw.finish(out);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.strings.is_idle() && self.raw.is_idle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_redact_chunked(input: &[u8], secret: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut r = JsonStringRedact::shared(Arc::new(Needles::masking(secret)));
        let mut out = BytesMut::new();
        let mut prev = 0;
        for c in cuts {
            r.feed(&input[prev..c], &mut out);
            prev = c;
        }
        r.feed(&input[prev..], &mut out);
        r.finish(&mut out);
        out.to_vec()
    }

    /// The decoded strings of a JSON document, keys included.
    fn all_strings(v: &serde_json::Value, into: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => into.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| all_strings(x, into)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
                into.push(k.clone());
                all_strings(x, into);
            }),
            _ => {}
        }
    }

    #[test]
    fn escaped_token_spellings_are_masked_in_any_chunking() {
        let secret = b"V2TOKEN-SECRET/9x";
        let spellings = [
            r"V2TOKEN\u002dSECRET\/9x",
            r"V2TOKEN-SECRET/\u0039x",
            r"\u0056\u0032TOKEN-SECRET\/9x",
            r"V2TOKEN\u002DSECRET/9\u0078",
        ];
        for sp in spellings {
            let doc = format!(r#"{{"detail":"bad token pre{sp}post","keep":"a\u00e9b","n":1}}"#);
            for cuts in [vec![], vec![3, 17], (0..doc.len()).collect::<Vec<_>>()] {
                let got = json_redact_chunked(doc.as_bytes(), secret, &cuts);
                let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
                let mut strings = Vec::new();
                all_strings(&v, &mut strings);
                assert!(
                    strings.iter().all(|s| !s.contains("V2TOKEN-SECRET/9x")),
                    "{sp}"
                );
                assert_eq!(v["detail"], format!("bad token pre{}post", "*".repeat(17)));
                // A string without the token keeps its spelling.
                assert!(got.windows(8).any(|w| w == br"a\u00e9b"));
            }
        }
    }

    /// The string pass as first written, string by string, for one whole input: what the
    /// backslash-to-backslash scan must equal.
    fn string_by_string(input: &[u8], needles: &Needles) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut i, mut copied) = (0, 0);
        while let Some(k) = memchr::memchr(b'"', &input[i..]) {
            let s = i + k + 1;
            let (end, backslash, _) = string_end(&input[s..], false);
            let Some(e) = end else {
                out.extend_from_slice(&input[copied..s]);
                let (decoded, _) = decode_json_string(&input[s..], false);
                let (masked, changed) = mask_secret(&decoded, needles, false);
                match changed {
                    true => out.extend_from_slice(&json_escape(&masked, false)),
                    false => out.extend_from_slice(&input[s..]),
                }
                return out;
            };
            if backslash {
                let (decoded, _) = decode_json_string(&input[s..s + e], false);
                let (masked, changed) = mask_secret(&decoded, needles, false);
                if changed {
                    out.extend_from_slice(&input[copied..s]);
                    out.extend_from_slice(&json_escape(&masked, false));
                    copied = s + e;
                }
            }
            i = s + e + 1;
        }
        out.extend_from_slice(&input[copied..]);
        out
    }

    #[test]
    fn the_scan_from_backslash_to_backslash_equals_the_string_by_string_pass() {
        let secret = b"tok-12/3";
        let needles = Needles::masking(secret);
        let pieces: [&[u8]; 14] = [
            b"\"",
            b"\\",
            b"\\\"",
            b"tok-12/3",
            b"tok\\u002d12\\/3",
            b"to",
            b"k-12/3",
            b"\\u0074ok-12/3",
            b"ab",
            b":",
            b",",
            b"\\n",
            b"\\",
            b" ",
        ];
        // A small deterministic generator: every run sees the same documents.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..4000 {
            let doc: Vec<u8> = (0..next(24))
                .flat_map(|_| pieces[next(pieces.len())].to_vec())
                .collect();
            let want = string_by_string(&doc, &needles);
            let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            // What says "nothing to mask" must be right: the body then goes out as it is.
            let whole = body_redact_chunked(&doc, secret, &[]);
            assert!(
                masks_anything(&doc, &needles) || whole == doc,
                "{} masked to {}",
                show(&doc),
                show(&whole)
            );
            let got = json_redact_chunked(&doc, secret, &[]);
            assert_eq!(show(&got), show(&want), "{}", show(&doc));
            // Chunked, a string held across chunks may be masked by either pass: with the raw
            // pass after it, every chunking gives what the whole input gives.
            let want = crate::body::transform::Transform::run_whole(
                &mut StreamRedact::shared(Arc::new(Needles::masking(secret))),
                &want,
            );
            let cut = next(doc.len() + 1);
            for cuts in [vec![cut], (0..doc.len()).collect::<Vec<_>>()] {
                let got = body_redact_chunked(&doc, secret, &cuts);
                assert_eq!(show(&got), show(&want), "{} cut at {cuts:?}", show(&doc));
            }
        }
    }

    fn body_redact_chunked(input: &[u8], secret: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut r = JsonBodyRedact::shared(Arc::new(Needles::masking(secret)));
        let mut out = BytesMut::new();
        let mut prev = 0;
        for &c in cuts {
            r.feed(&input[prev..c], &mut out);
            prev = c;
        }
        r.feed(&input[prev..], &mut out);
        r.finish(&mut out);
        out.to_vec()
    }

    #[test]
    fn a_body_is_found_to_need_masking_only_when_it_holds_the_token() {
        let needles = Needles::masking(b"V2TOKEN-SECRET/9x");
        let plain = br#"{"id":"1","version":"W/\"a330bc54\"","x":"V2TOKEN-SECRET/9"}"#;
        assert!(!masks_anything(plain, &needles));
        for held in [
            r#"{"detail":"bad V2TOKEN-SECRET/9x"}"#,
            r#"{"detail":"bad V2TOKEN-SECRET\/9x"}"#,
            r#"{"detail":"bad V2TOKEN\u002dSECRET/9x"}"#,
            r#"{"a":"\"","detail":"open V2TOKEN\u002dSECRET/9x"#,
        ] {
            assert!(masks_anything(held.as_bytes(), &needles), "{held}");
        }
    }

    #[test]
    fn plain_json_passes_unchanged_and_long_strings_are_judged_in_pieces() {
        let secret = b"tok-123";
        let plain = br#"{"a":"b","c":["d\"e",1]}"#;
        assert_eq!(json_redact_chunked(plain, secret, &[5]), plain.to_vec());
        // A string longer than the hold limit, with the token escaped right across a piece edge.
        let pad = "x".repeat(HOLD_LIMIT);
        let doc = format!(r#"{{"p":"{pad}tok\u002d123{pad}"}}"#);
        let cut = doc.find("tok").unwrap() + 2;
        let got = json_redact_chunked(doc.as_bytes(), secret, &[cut, cut + 4]);
        let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
        assert!(!v["p"].as_str().unwrap().contains("tok-123"));
    }
}
