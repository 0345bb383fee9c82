//! Streaming body rewriting: base URLs inside JSON strings (`JsonUrlRewriter`) and token redaction (`StreamRedact`).
//!
//! Both work on arbitrary chunkings with a small bounded carry, never validate or buffer the body, and
//! pass any byte they do not rewrite through unchanged. `RewriteBody` / `RedactBody` apply them to an
//! `http_body::Body` frame by frame.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::body::BoxError;
use crate::scim::base::Base;

/// One accepted spelling of the `from` base: origin bytes (compared ASCII-case-insensitively) then path.
#[derive(Debug, Clone)]
struct Pattern {
    bytes: Vec<u8>,
    ci_len: usize,
}

impl Pattern {
    fn eq_at(&self, idx: usize, d: u8) -> bool {
        let p = self.bytes[idx];
        if idx < self.ci_len {
            p.eq_ignore_ascii_case(&d)
        } else {
            p == d
        }
    }
}

/// Where the scanner is relative to JSON strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside any string: only `"` matters.
    Outside,
    /// At the start of a string, decoding it while it may still start with a pattern.
    Matching,
    /// Inside a string that is decided: copied through until the closing `"`.
    InString { escaped: bool },
}

/// Escape decoding state while `Matching`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// `n` hex digits of `\uXXXX` read into `v`; `high` is a preceding high surrogate.
    Hex {
        n: u8,
        v: u32,
        high: Option<u32>,
    },
    /// A high surrogate was read; a `\u` low surrogate must follow.
    AfterHigh(u32),
    AfterHighBackslash(u32),
}

/// What one decoded character did to the match.
enum Verdict {
    Continue,
    Match,
    Kill,
}

/// Streaming rewriter of JSON strings that start with the `from` base URL.
///
/// Feed it any chunking of the body; the output is the same as for one chunk. It only looks at
/// string boundaries (`"` and `\`), so invalid JSON or non-JSON passes through byte for byte, except
/// for quoted strings that do match. A matched prefix is written as `to`'s URL, unescaped; the rest
/// of the string is copied exactly as it was (escapes included).
#[derive(Debug, Clone)]
pub struct JsonUrlRewriter {
    patterns: Vec<Pattern>,
    /// `to`'s URL as JSON string content.
    replacement: Vec<u8>,
    state: State,
    /// Raw bytes of the current string since its opening quote, while `Matching` (bounded by the
    /// longest pattern plus escape overhead: at most 12 raw bytes per decoded character).
    pending: Vec<u8>,
    /// Offset in `pending` where the character being decoded began.
    char_start: usize,
    /// Decoded bytes of the current string matched so far by every live pattern.
    matched: usize,
    /// Bit `i` set while `patterns[i]` still matches.
    alive: u8,
    esc: Esc,
    /// Bytes a string's raw content can begin with and still match (an escape, or a pattern's
    /// first byte in either case).
    may_start: [bool; 256],
}

impl JsonUrlRewriter {
    pub fn new(from: &Base, to: &Base) -> Self {
        let patterns: Vec<Pattern> = std::iter::once(from.origin())
            .chain(from.origin_default_port())
            .map(|origin| {
                let mut bytes = origin.as_bytes().to_vec();
                bytes.extend_from_slice(from.path().as_bytes());
                Pattern {
                    bytes,
                    ci_len: origin.len(),
                }
            })
            .collect();
        let mut may_start = [false; 256];
        may_start[usize::from(b'\\')] = true;
        // The first byte is in the origin, compared without case.
        for &b in patterns.iter().filter_map(|p| p.bytes.first()) {
            may_start[usize::from(b.to_ascii_lowercase())] = true;
            may_start[usize::from(b.to_ascii_uppercase())] = true;
        }
        JsonUrlRewriter {
            may_start,
            patterns,
            replacement: json_escape(to.url().as_bytes(), false),
            state: State::Outside,
            pending: Vec::new(),
            char_start: 0,
            matched: 0,
            alive: 0,
            esc: Esc::None,
        }
    }

    /// Rewrites `input`, appending to `out`; may hold back the start of an undecided string.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        // Bytes outside `Matching` come out as they went in: they are copied in runs from `copied`.
        let mut copied = 0;
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Outside | State::InString { .. } => {
                    i = self.skip_decided(input, i);
                    if self.state == State::Matching {
                        out.extend_from_slice(&input[copied..i]);
                        copied = i;
                    }
                }
                State::Matching => {
                    if self.esc == Esc::None {
                        i += self.match_plain_run(&input[i..], out);
                    }
                    if self.state == State::Matching && i < input.len() && self.step(input[i], out)
                    {
                        i += 1;
                    }
                    copied = i;
                }
            }
        }
        out.extend_from_slice(&input[copied..]);
    }

    /// Follows string boundaries from `i` (outside a string, or inside one already decided) until
    /// an opening quote whose string may start with a pattern (`Matching` has then begun at the
    /// returned index) or the end of `input`. The state lives in a local for the tight loop.
    fn skip_decided(&mut self, input: &[u8], mut i: usize) -> usize {
        let mut state = self.state;
        while i < input.len() {
            match state {
                State::Outside => {
                    // Between strings there are usually only a few bytes (`":"`, `","`).
                    let gap = &input[i..];
                    let near = gap.iter().take(4).position(|&b| b == b'"');
                    let Some(k) = near.or_else(|| find2(gap, b'"', b'"')) else {
                        i = input.len();
                        break;
                    };
                    i += k + 1;
                    match input.get(i) {
                        // Most strings (keys, ids) are decided by their first byte.
                        Some(&b) if !self.may_start[usize::from(b)] => {
                            state = State::InString { escaped: false };
                        }
                        _ => {
                            self.begin_string();
                            return i;
                        }
                    }
                }
                State::InString { escaped: true } => {
                    i += 1;
                    state = State::InString { escaped: false };
                }
                State::InString { escaped: false } => match find2(&input[i..], b'"', b'\\') {
                    None => i = input.len(),
                    Some(k) => {
                        i += k;
                        state = if input[i] == b'"' {
                            State::Outside
                        } else {
                            State::InString { escaped: true }
                        };
                        i += 1;
                    }
                },
                State::Matching => break,
            }
        }
        self.state = state;
        i
    }

    /// Ends the body: an undecided string (truncated input) is emitted unchanged. Resets for reuse.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.state == State::Matching {
            out.extend_from_slice(&self.pending);
        }
        self.pending.clear();
        self.state = State::Outside;
    }

    fn begin_string(&mut self) {
        self.state = State::Matching;
        self.pending.clear();
        self.char_start = 0;
        self.matched = 0;
        // At most two patterns (origin, origin with default port).
        self.alive = (1u8 << self.patterns.len()) - 1;
        self.esc = Esc::None;
    }

    /// One raw byte while `Matching`. Returns false when `b` must be re-read in the new state.
    fn step(&mut self, b: u8, out: &mut BytesMut) -> bool {
        let decoded: Option<([u8; 4], usize)> = match self.esc {
            Esc::None => match b {
                b'"' => {
                    if self.complete_pattern() {
                        out.extend_from_slice(&self.replacement);
                    } else {
                        out.extend_from_slice(&self.pending);
                    }
                    out.extend_from_slice(b"\"");
                    self.pending.clear();
                    self.state = State::Outside;
                    return true;
                }
                b'\\' => {
                    self.char_start = self.pending.len();
                    self.accept(b, Esc::Backslash);
                    return true;
                }
                _ => {
                    self.char_start = self.pending.len();
                    Some(([b, 0, 0, 0], 1))
                }
            },
            Esc::Backslash => match b {
                b'u' => {
                    self.accept(
                        b,
                        Esc::Hex {
                            n: 0,
                            v: 0,
                            high: None,
                        },
                    );
                    return true;
                }
                _ => simple_escape(b).map(|d| ([d, 0, 0, 0], 1)),
            },
            Esc::Hex { n, v, high } => match hex_val(b) {
                None => None,
                Some(h) => {
                    let v = (v << 4) | h;
                    if n < 3 {
                        self.accept(b, Esc::Hex { n: n + 1, v, high });
                        return true;
                    }
                    match (high, v) {
                        (None, 0xD800..=0xDBFF) => {
                            self.accept(b, Esc::AfterHigh(v));
                            return true;
                        }
                        (Some(h), 0xDC00..=0xDFFF) => {
                            utf8(0x10000 + ((h - 0xD800) << 10) + (v - 0xDC00))
                        }
                        (None, _) => utf8(v),
                        (Some(_), _) => None,
                    }
                }
            },
            Esc::AfterHigh(h) => {
                if b == b'\\' {
                    self.accept(b, Esc::AfterHighBackslash(h));
                    return true;
                }
                None
            }
            Esc::AfterHighBackslash(h) => {
                if b == b'u' {
                    self.accept(
                        b,
                        Esc::Hex {
                            n: 0,
                            v: 0,
                            high: Some(h),
                        },
                    );
                    return true;
                }
                None
            }
        };
        let verdict = match decoded {
            // Invalid escapes and lone surrogates can never be part of the base.
            None => Verdict::Kill,
            Some((buf, len)) => self.judge(&buf[..len]),
        };
        match verdict {
            Verdict::Continue => {
                self.accept(b, Esc::None);
                true
            }
            Verdict::Match => {
                // The boundary character (`/`, `?`, `#`) stays as it was written.
                self.pending.push(b);
                out.extend_from_slice(&self.replacement);
                out.extend_from_slice(&self.pending[self.char_start..]);
                self.pending.clear();
                self.state = State::InString { escaped: false };
                true
            }
            Verdict::Kill => {
                // `b` is not taken: it is re-read by the plain string scanner, which must know
                // whether it follows a backslash (`\q` consumes `q`; in `\u1"` the quote ends the string).
                let escaped = matches!(self.esc, Esc::Backslash | Esc::AfterHighBackslash(_));
                out.extend_from_slice(&self.pending);
                self.pending.clear();
                self.state = State::InString { escaped };
                false
            }
        }
    }

    /// The fast path of `step` for a run of plain bytes (no `"`, no `\\`), which decode to
    /// themselves: the patterns are compared slice-wise instead of byte by byte. Returns how many
    /// bytes were consumed; the byte after them, if any, is left to `step`.
    fn match_plain_run(&mut self, input: &[u8], out: &mut BytesMut) -> usize {
        let end = memchr::memchr2(b'"', b'\\', input).unwrap_or(input.len());
        let run = &input[..end];
        if run.is_empty() {
            return 0;
        }
        // Per pattern: where it first matches (at a boundary byte) or dies, within `run`.
        let mut first_match: Option<usize> = None;
        let mut last_death: usize = 0;
        let mut alive = self.alive;
        for (idx, p) in self.patterns.iter().enumerate() {
            if self.alive & (1 << idx) == 0 {
                continue;
            }
            let rest = &p.bytes[self.matched.min(p.bytes.len())..];
            let common = rest.len().min(run.len());
            let differs = (0..common).find(|&k| !p.eq_at(self.matched + k, run[k]));
            let event = match differs {
                Some(k) => Some((k, false)),
                None if run.len() > rest.len() => {
                    let k = rest.len();
                    // A pattern only matches on its first byte past the end when that byte is a boundary.
                    Some((k, matches!(run[k], b'/' | b'?' | b'#')))
                }
                None => None,
            };
            match event {
                Some((k, true)) => first_match = Some(first_match.map_or(k, |m| m.min(k))),
                Some((k, false)) => {
                    alive &= !(1 << idx);
                    last_death = last_death.max(k);
                }
                None => {}
            }
        }
        if let Some(k) = first_match {
            // As in `step`: a match wins over deaths at the same byte; the boundary byte stays as written.
            out.extend_from_slice(&self.replacement);
            out.extend_from_slice(&run[k..=k]);
            self.pending.clear();
            self.state = State::InString { escaped: false };
            return k + 1;
        }
        if alive == 0 {
            // The string cannot match: what was held back goes out, and the killing byte is
            // re-read by the plain string scanner.
            out.extend_from_slice(&self.pending);
            out.extend_from_slice(&run[..last_death]);
            self.pending.clear();
            self.state = State::InString { escaped: false };
            return last_death;
        }
        self.alive = alive;
        self.matched += run.len();
        self.pending.extend_from_slice(run);
        self.char_start = self.pending.len() - 1;
        run.len()
    }

    fn accept(&mut self, b: u8, esc: Esc) {
        self.pending.push(b);
        self.esc = esc;
    }

    fn complete_pattern(&self) -> bool {
        self.patterns
            .iter()
            .enumerate()
            .any(|(i, p)| self.alive & (1 << i) != 0 && p.bytes.len() == self.matched)
    }

    /// Applies one decoded character (its UTF-8 bytes) to every live pattern.
    fn judge(&mut self, d: &[u8]) -> Verdict {
        let mut alive = self.alive;
        for (k, &byte) in d.iter().enumerate() {
            let pos = self.matched + k;
            for (i, p) in self.patterns.iter().enumerate() {
                if alive & (1 << i) == 0 {
                    continue;
                }
                if pos < p.bytes.len() {
                    if !p.eq_at(pos, byte) {
                        alive &= !(1 << i);
                    }
                } else if k == 0 && matches!(byte, b'/' | b'?' | b'#') {
                    return Verdict::Match;
                } else {
                    alive &= !(1 << i);
                }
            }
            if alive == 0 {
                return Verdict::Kill;
            }
        }
        self.alive = alive;
        self.matched += d.len();
        Verdict::Continue
    }

    fn is_idle(&self) -> bool {
        self.state != State::Matching || self.pending.is_empty()
    }
}

fn simple_escape(b: u8) -> Option<u8> {
    Some(match b {
        b'"' | b'\\' | b'/' => b,
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    })
}

fn hex_val(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

fn utf8(cp: u32) -> Option<([u8; 4], usize)> {
    let c = char::from_u32(cp)?;
    let mut buf = [0u8; 4];
    let len = c.encode_utf8(&mut buf).len();
    Some((buf, len))
}

/// JSON string content for `s`: `"` and `\` (and control bytes) escaped; `/` too when `slash`.
fn json_escape(s: &[u8], slash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            b'/' if slash => out.extend_from_slice(b"\\/"),
            0x00..=0x1F => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xF)]);
            }
            _ => out.push(b),
        }
    }
    out
}

/// Index of the first `a` or `b` in `hay`. Eight bytes at a time (SWAR), inlined: in SCIM JSON the
/// next quote is usually a few bytes away, where a call into `memchr` measured no faster. The lowest
/// flagged byte of the zero-byte test is always exact.
fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let va = LO * u64::from(a);
    let vb = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut off = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        let xa = x ^ va;
        let xb = x ^ vb;
        let hit = (xa.wrapping_sub(LO) & !xa & HI) | (xb.wrapping_sub(LO) & !xb & HI);
        if hit != 0 {
            return Some(off + (hit.trailing_zeros() / 8) as usize);
        }
        off += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|k| off + k)
}

/// One-shot form of [`JsonUrlRewriter`].
pub fn rewrite_json(input: &[u8], from: &Base, to: &Base) -> Vec<u8> {
    let mut rw = JsonUrlRewriter::new(from, to);
    let mut out = BytesMut::with_capacity(input.len() + input.len() / 8 + 64);
    rw.feed(input, &mut out);
    rw.finish(&mut out);
    out.into()
}

/// What a needle does at one position of the stream.
enum At {
    Full(usize),
    /// The remaining bytes are a proper prefix of a (longer) needle: wait for more.
    Partial,
    No,
}

/// Streaming replacement of a secret (and its JSON-escaped spellings) in any byte stream.
///
/// Leftmost matches are replaced, the longest when spellings overlap; the result equals a naive
/// `replace` over the whole body for any chunking. The carry between chunks is shorter than the
/// longest spelling. The replacement should share no byte with the needle, or the output could
/// still contain it where a replacement abuts original bytes.
#[derive(Debug, Clone)]
pub struct StreamRedact {
    needles: Arc<Needles>,
    carry: Vec<u8>,
    scratch: Vec<u8>,
}

/// What [`StreamRedact`] looks for and writes instead: built once per v2 token and shared, so a
/// response does not rebuild the escaped spellings.
#[derive(Debug)]
pub struct Needles {
    needles: Vec<Vec<u8>>,
    first: [bool; 256],
    /// The distinct first bytes of the needles (usually one).
    starts: Vec<u8>,
    max_len: usize,
    replacement: Vec<u8>,
    /// A prepared substring search when there is exactly one spelling.
    single: Option<memchr::memmem::Finder<'static>>,
    /// The secret itself, as JSON strings decode to it.
    secret: Vec<u8>,
}

impl Needles {
    /// `needle` as is and as it appears inside JSON strings (`"`, `\` escaped, with or without
    /// `/` escaped as `\/`). An empty needle redacts nothing.
    pub fn new(needle: &[u8], replacement: &[u8]) -> Self {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        if !needle.is_empty() {
            for n in [
                needle.to_vec(),
                json_escape(needle, false),
                json_escape(needle, true),
            ] {
                if !needles.contains(&n) {
                    needles.push(n);
                }
            }
        }
        let mut first = [false; 256];
        let mut starts = Vec::new();
        for n in &needles {
            first[usize::from(n[0])] = true;
            if !starts.contains(&n[0]) {
                starts.push(n[0]);
            }
        }
        let single = match needles.as_slice() {
            [one] => Some(memchr::memmem::Finder::new(one).into_owned()),
            _ => None,
        };
        Needles {
            secret: needle.to_vec(),
            single,
            max_len: needles.iter().map(Vec::len).max().unwrap_or(0),
            needles,
            first,
            starts,
            replacement: replacement.to_vec(),
        }
    }

    /// The token masked with as many `*`.
    pub fn masking(secret: &[u8]) -> Self {
        Needles::new(secret, &vec![b'*'; secret.len()])
    }

    /// The secret as it is (for checks on decoded text).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Whether every replacement keeps the length (no escaped spelling is longer than the mask).
    pub fn keeps_length(&self) -> bool {
        self.needles
            .iter()
            .all(|n| n.len() == self.replacement.len())
    }
}

impl StreamRedact {
    /// Redacts `needle` as is and as it appears inside JSON strings (see [`Needles::new`]).
    pub fn new(needle: &[u8], replacement: &[u8]) -> Self {
        StreamRedact::shared(Arc::new(Needles::new(needle, replacement)))
    }

    pub fn shared(needles: Arc<Needles>) -> Self {
        StreamRedact {
            needles,
            carry: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        if self.needles.needles.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        let mut start = 0;
        if !self.carry.is_empty() {
            // Positions inside the carry see it joined with enough of `input` to decide: a match
            // starting there is at most `max_len` long.
            let c = self.carry.len();
            let take = input.len().min(self.needles.max_len - 1);
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.extend_from_slice(&self.carry);
            scratch.extend_from_slice(&input[..take]);
            self.carry.clear();
            let mut i = 0;
            while i < c {
                match self.at(&scratch[i..], false) {
                    At::Full(len) => {
                        out.extend_from_slice(&self.needles.replacement);
                        i += len;
                    }
                    At::Partial => {
                        // Only possible when all of `input` is in `scratch`.
                        self.carry.extend_from_slice(&scratch[i..]);
                        self.scratch = scratch;
                        return;
                    }
                    At::No => {
                        out.extend_from_slice(&scratch[i..=i]);
                        i += 1;
                    }
                }
            }
            self.scratch = scratch;
            start = i - c;
        }
        self.scan(&input[start..], out);
    }

    /// Emits what is still held back (no needle can complete any more). Resets for reuse.
    pub fn finish(&mut self, out: &mut BytesMut) {
        let carry = std::mem::take(&mut self.carry);
        let mut i = 0;
        while i < carry.len() {
            match self.at(&carry[i..], true) {
                At::Full(len) => {
                    out.extend_from_slice(&self.needles.replacement);
                    i += len;
                }
                At::Partial | At::No => {
                    out.extend_from_slice(&carry[i..=i]);
                    i += 1;
                }
            }
        }
        self.carry = carry;
        self.carry.clear();
    }

    fn scan(&mut self, hay: &[u8], out: &mut BytesMut) {
        // The substring search pays a setup per call that a short input does not win back.
        const SEARCH_FROM: usize = if cfg!(test) { 1 } else { 2048 };
        let needles = Arc::clone(&self.needles);
        if let Some(finder) = needles.single.as_ref().filter(|_| hay.len() >= SEARCH_FROM) {
            return self.scan_single(finder, hay, out);
        }
        let mut run = 0;
        let mut j = 0;
        while j < hay.len() {
            // Jump to the next byte that can start a needle (memchr's SIMD scan).
            match self.next_candidate(&hay[j..]) {
                Some(k) => j += k,
                None => break,
            }
            match self.at(&hay[j..], false) {
                At::Full(len) => {
                    out.extend_from_slice(&hay[run..j]);
                    out.extend_from_slice(&self.needles.replacement);
                    j += len;
                    run = j;
                }
                At::Partial => {
                    out.extend_from_slice(&hay[run..j]);
                    self.carry.extend_from_slice(&hay[j..]);
                    return;
                }
                At::No => j += 1,
            }
        }
        out.extend_from_slice(&hay[run..]);
    }

    /// `scan` for a token with one spelling (the usual case): a substring search that skips
    /// ahead, instead of stopping at every byte that begins the token.
    fn scan_single(
        &mut self,
        finder: &memchr::memmem::Finder<'static>,
        hay: &[u8],
        out: &mut BytesMut,
    ) {
        let needle = finder.needle();
        let mut run = 0;
        while let Some(k) = finder.find(&hay[run..]) {
            out.extend_from_slice(&hay[run..run + k]);
            out.extend_from_slice(&self.needles.replacement);
            run += k + needle.len();
        }
        // The token may begin in the last bytes and end in the next chunk.
        let tail = run.max(hay.len().saturating_sub(needle.len().saturating_sub(1)));
        if let Some(t) = (tail..hay.len()).find(|&t| needle.starts_with(&hay[t..])) {
            out.extend_from_slice(&hay[run..t]);
            self.carry.extend_from_slice(&hay[t..]);
            return;
        }
        out.extend_from_slice(&hay[run..]);
    }

    /// Offset of the next byte in `hay` that starts some needle.
    fn next_candidate(&self, hay: &[u8]) -> Option<usize> {
        match self.needles.starts.as_slice() {
            [a] => memchr::memchr(*a, hay),
            [a, b] => memchr::memchr2(*a, *b, hay),
            [a, b, c] => memchr::memchr3(*a, *b, *c, hay),
            _ => hay.iter().position(|b| self.needles.first[usize::from(*b)]),
        }
    }

    /// The match at the start of `hay`; `last` when no more bytes will follow.
    fn at(&self, hay: &[u8], last: bool) -> At {
        let mut best = 0;
        for n in &self.needles.needles {
            if hay.len() >= n.len() {
                if hay.starts_with(n) {
                    best = best.max(n.len());
                }
            } else if !last && n.starts_with(hay) {
                // A longer spelling may still match here.
                return At::Partial;
            }
        }
        if best > 0 { At::Full(best) } else { At::No }
    }

    fn is_idle(&self) -> bool {
        self.carry.is_empty()
    }
}

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
        let mut copied = i;
        while let Some(k) = memchr::memchr(b'"', &input[i..]) {
            let s = i + k + 1;
            let (end, backslash, escaped) = string_end(&input[s..], false);
            match end {
                Some(e) => {
                    let end = s + e;
                    if backslash {
                        let (decoded, _) = decode_json_string(&input[s..end], false);
                        let (masked, changed) = mask_secret(&decoded, &self.needles, false);
                        if changed {
                            out.extend_from_slice(&input[copied..s]);
                            out.extend_from_slice(&json_escape(&masked, false));
                            copied = end;
                        }
                    }
                    i = end + 1;
                }
                None => {
                    out.extend_from_slice(&input[copied..s]);
                    self.held.clear();
                    self.held.extend_from_slice(&input[s..]);
                    self.holding = true;
                    self.escaped = escaped;
                    if self.held.len() > HOLD_LIMIT {
                        self.emit_held(out, true);
                    }
                    return;
                }
            }
        }
        out.extend_from_slice(&input[copied..]);
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

    fn is_idle(&self) -> bool {
        !self.holding
    }
}

/// Where the string whose content starts `raw` ends (its closing quote), whether it has a
/// backslash before that, and (when it does not end) whether the next byte would be escaped.
fn string_end(raw: &[u8], mut escaped: bool) -> (Option<usize>, bool, bool) {
    let mut i = 0;
    let mut backslash = escaped;
    if escaped {
        if raw.is_empty() {
            return (None, true, true);
        }
        i = 1;
        escaped = false;
    }
    while let Some(k) = find2(&raw[i..], b'"', b'\\') {
        i += k;
        if raw[i] == b'"' {
            return (Some(i), backslash, false);
        }
        backslash = true;
        if i + 1 >= raw.len() {
            escaped = true;
            break;
        }
        i += 2;
    }
    (None, backslash, escaped)
}

/// Leniently decodes JSON string content: invalid escapes stay as written, lone surrogates become
/// U+FFFD. With `piece`, stops before an escape that may be cut off at the end. Returns the decoded
/// bytes and how many raw bytes they came from.
fn decode_json_string(raw: &[u8], piece: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &raw[i..]) {
        let b = i + k;
        out.extend_from_slice(&raw[i..b]);
        let hex4 = |at: usize| -> Option<u32> {
            let h = raw.get(at..at + 4)?;
            h.iter()
                .try_fold(0u32, |v, &c| Some((v << 4) | hex_val(c)?))
        };
        let Some(&e) = raw.get(b + 1) else {
            if piece {
                return (out, b);
            }
            out.push(b'\\');
            return (out, raw.len());
        };
        if let Some(d) = simple_escape(e) {
            out.push(d);
            i = b + 2;
            continue;
        }
        if e != b'u' {
            out.extend_from_slice(&raw[b..b + 2]);
            i = b + 2;
            continue;
        }
        if piece && raw.len() < b + 12 {
            return (out, b);
        }
        let Some(cp) = hex4(b + 2) else {
            out.extend_from_slice(&raw[b..b + 2]);
            i = b + 2;
            continue;
        };
        i = b + 6;
        let ch = match cp {
            0xD800..=0xDBFF => {
                let low = (raw.get(b + 6..b + 8) == Some(b"\\u"))
                    .then(|| hex4(b + 8))
                    .flatten()
                    .filter(|l| (0xDC00..=0xDFFF).contains(l));
                match low {
                    Some(l) => {
                        i = b + 12;
                        char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (l - 0xDC00))
                    }
                    None => None,
                }
            }
            _ => char::from_u32(cp),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.unwrap_or('\u{FFFD}').encode_utf8(&mut buf).as_bytes());
    }
    out.extend_from_slice(&raw[i..]);
    (out, raw.len())
}

/// `decoded` with every occurrence of the secret replaced by the mask (and with `piece`, a tail
/// that may continue into the secret), and whether anything was replaced.
fn mask_secret(decoded: &[u8], needles: &Needles, piece: bool) -> (Vec<u8>, bool) {
    let secret = &needles.secret;
    let mut out = Vec::with_capacity(decoded.len());
    let mut changed = false;
    let mut run = 0;
    for k in memchr::memmem::find_iter(decoded, secret) {
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

/// The streaming byte transformers: driven frame by frame by [`Transformed`], or over one
/// whole buffer by [`Transform::run_whole`].
pub trait Transform {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut);
    fn finish(&mut self, out: &mut BytesMut);
    fn is_idle(&self) -> bool;

    /// The transformed form of one complete input.
    fn run_whole(&mut self, input: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(input.len() + input.len() / 8);
        self.feed(input, &mut out);
        self.finish(&mut out);
        out.freeze()
    }
}

impl Transform for JsonUrlRewriter {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        JsonUrlRewriter::feed(self, input, out);
    }
    fn finish(&mut self, out: &mut BytesMut) {
        JsonUrlRewriter::finish(self, out);
    }
    fn is_idle(&self) -> bool {
        JsonUrlRewriter::is_idle(self)
    }
}

impl Transform for JsonStringRedact {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        JsonStringRedact::feed(self, input, out);
    }
    fn finish(&mut self, out: &mut BytesMut) {
        JsonStringRedact::finish(self, out);
    }
    fn is_idle(&self) -> bool {
        JsonStringRedact::is_idle(self)
    }
}

impl Transform for StreamRedact {
    fn feed(&mut self, input: &[u8], out: &mut BytesMut) {
        StreamRedact::feed(self, input, out);
    }
    fn finish(&mut self, out: &mut BytesMut) {
        StreamRedact::finish(self, out);
    }
    fn is_idle(&self) -> bool {
        StreamRedact::is_idle(self)
    }
}

/// A body streamed through a [`Transform`]: data frames go through `t`; other frames (trailers)
/// pass after the transformer has been flushed, so no held-back byte ends up behind them. Its
/// length is unknown: the caller drops `Content-Length`.
pub struct Transformed<B, T> {
    inner: B,
    t: T,
    out: BytesMut,
    /// A non-data frame waiting until the flushed bytes have been returned.
    held: Option<Frame<Bytes>>,
    done: bool,
}

impl<B, T> Transformed<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    T: Transform,
{
    fn with(inner: B, t: T) -> Self {
        Transformed {
            inner,
            t,
            out: BytesMut::new(),
            held: None,
            done: false,
        }
    }

    fn take_out(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(Some(Ok(Frame::data(self.out.split().freeze()))))
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    self.done = true;
                    self.t.finish(&mut self.out);
                    if !self.out.is_empty() {
                        return self.take_out();
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.t.feed(&data, &mut self.out);
                        // An empty result (all held back) is not worth a frame: poll on.
                        if !self.out.is_empty() {
                            return self.take_out();
                        }
                    }
                    Err(frame) => {
                        self.t.finish(&mut self.out);
                        if self.out.is_empty() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        self.held = Some(frame);
                        return self.take_out();
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && (self.done || (self.inner.is_end_stream() && self.t.is_idle()))
    }
}

impl<B, T> Body for Transformed<B, T>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    T: Transform + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Transformed::poll_frame(self.get_mut(), cx)
    }

    fn is_end_stream(&self) -> bool {
        Transformed::is_end_stream(self)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A body with base URLs in its JSON strings rewritten (see [`JsonUrlRewriter`]).
pub type RewriteBody<B> = Transformed<B, JsonUrlRewriter>;

impl<B> Transformed<B, JsonUrlRewriter>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn new(inner: B, from: &Base, to: &Base) -> Self {
        Transformed::with(inner, JsonUrlRewriter::new(from, to))
    }
}

/// A body with a secret redacted (see [`StreamRedact`]).
pub type RedactBody<B> = Transformed<B, StreamRedact>;

impl<B> Transformed<B, StreamRedact>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn shared(inner: B, needles: Arc<Needles>) -> Self {
        Transformed::with(inner, StreamRedact::shared(needles))
    }
}

/// A JSON body with the secret masked in its strings, whatever their escapes (see [`JsonStringRedact`]).
pub type JsonRedactBody<B> = Transformed<B, JsonStringRedact>;

impl<B> Transformed<B, JsonStringRedact>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn json_strings(inner: B, needles: Arc<Needles>) -> Self {
        Transformed::with(inner, JsonStringRedact::shared(needles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::base::rewrite_absolute;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn up() -> Base {
        Base::new("https", "acme.goskope.com", "/api/v2/scim")
    }
    fn client() -> Base {
        Base::new("https", "addon-acme.goskope.com", "/SCIM/v2")
    }

    const UP: &str = "https://acme.goskope.com/api/v2/scim";
    const CL: &str = "https://addon-acme.goskope.com/SCIM/v2";

    fn rw(s: &str) -> String {
        String::from_utf8(rewrite_json(s.as_bytes(), &up(), &client())).unwrap()
    }

    /// Feeds `input` split at `splits` (taken modulo the length, any order).
    fn chunked(input: &[u8], splits: &[usize], from: &Base, to: &Base) -> Vec<u8> {
        let mut cuts: Vec<usize> = splits
            .iter()
            .map(|s| {
                if input.is_empty() {
                    0
                } else {
                    s % (input.len() + 1)
                }
            })
            .collect();
        cuts.sort_unstable();
        let mut r = JsonUrlRewriter::new(from, to);
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

    fn bytewise(input: &[u8], from: &Base, to: &Base) -> Vec<u8> {
        let splits: Vec<usize> = (0..=input.len()).collect();
        chunked(input, &splits, from, to)
    }

    #[test]
    fn table() {
        let cases: &[(&str, String)] = &[
            (
                r#"{"meta":{"location":"https://acme.goskope.com/api/v2/scim/Users/1","version":"W/\"1\""}}"#,
                format!(r#"{{"meta":{{"location":"{CL}/Users/1","version":"W/\"1\""}}}}"#),
            ),
            (
                r#"{"members":[{"value":"1","$ref":"https://acme.goskope.com/api/v2/scim/Users/1"},{"$ref":"https://acme.goskope.com/api/v2/scim/Groups/g"}]}"#,
                format!(
                    r#"{{"members":[{{"value":"1","$ref":"{CL}/Users/1"}},{{"$ref":"{CL}/Groups/g"}}]}}"#
                ),
            ),
            (
                r#"{"Resources":[{"id":"1","meta":{"location":"https://acme.goskope.com/api/v2/scim/Users/1"},"groups":[{"$ref":"https://acme.goskope.com/api/v2/scim/Groups/2"}]}],"totalResults":1}"#,
                format!(
                    r#"{{"Resources":[{{"id":"1","meta":{{"location":"{CL}/Users/1"}},"groups":[{{"$ref":"{CL}/Groups/2"}}]}}],"totalResults":1}}"#
                ),
            ),
            (
                r#"{"Operations":[{"method":"POST","bulkId":"q","location":"https://acme.goskope.com/api/v2/scim/Users/9","status":"201"}]}"#,
                format!(
                    r#"{{"Operations":[{{"method":"POST","bulkId":"q","location":"{CL}/Users/9","status":"201"}}]}}"#
                ),
            ),
            // Escaped slashes: the prefix comes out plain, the rest as written.
            (
                r#"["https:\/\/acme.goskope.com\/api\/v2\/scim\/Users\/1"]"#,
                format!(r#"["{CL}\/Users\/1"]"#),
            ),
            (
                r#"["\u0068ttps://acme.goskope.com\u002fapi/v2/scim\u002FUsers"]"#,
                format!(r#"["{CL}\u002FUsers"]"#),
            ),
            (
                r#"{"https://acme.goskope.com/api/v2/scim/Schemas/x":1}"#,
                format!(r#"{{"{CL}/Schemas/x":1}}"#),
            ),
            (
                r#"["https://acme.goskope.com/api/v2/scim"]"#,
                format!(r#"["{CL}"]"#),
            ),
            (
                r#"["https://acme.goskope.com/api/v2/scim?a=b","https://acme.goskope.com/api/v2/scim#f"]"#,
                format!(r#"["{CL}?a=b","{CL}#f"]"#),
            ),
            (
                r#"["HTTPS://ACME.GOSKOPE.COM/api/v2/scim/Users"]"#,
                format!(r#"["{CL}/Users"]"#),
            ),
            (
                r#"["https://acme.goskope.com:443/api/v2/scim/Users"]"#,
                format!(r#"["{CL}/Users"]"#),
            ),
            (
                r#"["https://acme.goskope.com/api/v2/scim/Users/caf\u00e9","x"]"#,
                format!(r#"["{CL}/Users/caf\u00e9","x"]"#),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&rw(input), want, "{input}");
            assert_eq!(
                bytewise(input.as_bytes(), &up(), &client()),
                want.as_bytes(),
                "bytewise {input}"
            );
        }
    }

    #[test]
    fn unchanged() {
        let cases = [
            r#"{"description":"see https://acme.goskope.com/api/v2/scim/Users"}"#,
            r#"[" https://acme.goskope.com/api/v2/scim/Users"]"#,
            r#"["https://acme.goskope.com/api/v2/scimX"]"#,
            r#"["https://acme.goskope.com/api/v2/sci"]"#,
            r#"["https://acme.goskope.com/API/v2/scim/Users"]"#,
            r#"["https://acme.goskope.com:8443/api/v2/scim/Users"]"#,
            r#"["https://acme.goskope.com.evil/api/v2/scim/Users"]"#,
            r#"["http://acme.goskope.com/api/v2/scim/Users"]"#,
            r#"["https://other.goskope.com/api/v2/scim/Users"]"#,
            r#"["https://addon-acme.goskope.com/SCIM/v2/Users"]"#,
            r#"["urn:ietf:params:scim:schemas:core:2.0:User",""]"#,
            r#"["x\"https://acme.goskope.com/api/v2/scim/Users"]"#,
            r#"["\\","\qhttps://acme.goskope.com/api/v2/scim/Users"]"#,
            r#"["https://acme.goskope.com/api/v2/scim\u00e9"]"#,
            r#"["https://acme.goskope.com/api/v2/scim\ud83d\ude00","\ud800x","\udc00"]"#,
            r#"["\u006"]"#,
            "https://acme.goskope.com/api/v2/scim/Users outside any string",
            "<html><a href=https://acme.goskope.com/api/v2/scim/Users>x</a></html>",
            "\u{0}\u{1}\u{ff}\\\\\\",
            "",
        ];
        for input in cases {
            assert_eq!(rw(input), input, "{input}");
            assert_eq!(
                bytewise(input.as_bytes(), &up(), &client()),
                input.as_bytes()
            );
        }
        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        assert_eq!(rewrite_json(&binary, &up(), &client()), binary);
    }

    #[test]
    fn unescaped_quote_in_broken_unicode_escape_ends_the_string() {
        // `\u1"`: the quote is not part of the escape, so the next string is a real one.
        let input = format!(r#"["\u1","{UP}/Users"]"#);
        assert_eq!(rw(&input), format!(r#"["\u1","{CL}/Users"]"#));
    }

    #[test]
    fn lone_high_surrogate_then_escape() {
        // `\"` after a lone high surrogate is still an escaped quote, not the end of the string.
        let input = format!(r#"["\ud800\"x","{UP}/Users","\ud800\q"]"#);
        assert_eq!(
            rw(&input),
            format!(r#"["\ud800\"x","{CL}/Users","\ud800\q"]"#)
        );
    }

    #[test]
    fn supplementary_chars_in_base_path() {
        for (path, escaped) in [
            ("/\u{1F600}", r"\ud83d\ude00"),
            ("/\u{10FFFF}", r"\uDBFF\uDFFF"),
        ] {
            let from = Base::new("https", "h", path);
            let input = format!(r#"["https://h/{escaped}/x","https://h/{escaped}x"]"#);
            assert_eq!(
                rewrite_json(input.as_bytes(), &from, &client()),
                format!(r#"["{CL}/x","https://h/{escaped}x"]"#).as_bytes()
            );
        }
    }

    #[test]
    fn truncated_json() {
        // Decided before the cut: rewritten.
        assert_eq!(
            rw(&format!(r#"{{"a":"{UP}/Us"#)),
            format!(r#"{{"a":"{CL}/Us"#)
        );
        // Not decided (no boundary seen, or mid-escape): left as it was.
        for cut in [
            r#"{"a":"https://acme.goskope.com/api/v2/sc"#,
            r#"{"a":"https://acme.goskope.com/api/v2/scim"#,
            r#"{"a":"https://acme.goskope.com/api/v2/scim\"#,
            r#"{"a":"https://acme.goskope.com/api/v2/scim\u00"#,
            r#"{"a":"https:\/"#,
            r#"{"a":""#,
        ] {
            assert_eq!(rw(cut), cut);
        }
    }

    #[test]
    fn string_ending_at_chunk_boundary() {
        let input = format!(r#"{{"a":"{UP}","b":"{UP}/x"}}"#);
        let want = format!(r#"{{"a":"{CL}","b":"{CL}/x"}}"#);
        for cut in 0..=input.len() {
            assert_eq!(
                chunked(input.as_bytes(), &[cut], &up(), &client()),
                want.as_bytes(),
                "cut {cut}"
            );
        }
        // Exactly: the first string's content ends, then its quote arrives in the next feed.
        let end = input.find("\",").unwrap();
        let mut r = JsonUrlRewriter::new(&up(), &client());
        let mut out = BytesMut::new();
        r.feed(&input.as_bytes()[..end], &mut out);
        assert_eq!(&out[..], br#"{"a":""#);
        r.feed(&input.as_bytes()[end..], &mut out);
        r.finish(&mut out);
        assert_eq!(&out[..], want.as_bytes());
    }

    #[test]
    fn replacement_is_escaped_defensively() {
        let odd = Base::new("https", "h", r#"/a"b\c"#);
        assert_eq!(
            rewrite_json(format!(r#"["{UP}/x"]"#).as_bytes(), &up(), &odd),
            br#"["https://h/a\"b\\c/x"]"#
        );
    }

    #[test]
    fn empty_path_base() {
        let from = Base::new("https", "h.example", "");
        let cases = [
            (r#"["https://h.example"]"#, format!(r#"["{CL}"]"#)),
            (r#"["https://h.example/x"]"#, format!(r#"["{CL}/x"]"#)),
            (r#"["https://h.example:443/x"]"#, format!(r#"["{CL}/x"]"#)),
            (
                r#"["https://h.example:4430/x"]"#,
                r#"["https://h.example:4430/x"]"#.to_string(),
            ),
            (
                r#"["https://h.examplex"]"#,
                r#"["https://h.examplex"]"#.to_string(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                rewrite_json(input.as_bytes(), &from, &client()),
                want.as_bytes()
            );
        }
    }

    #[test]
    fn huge_string_is_streamed_not_buffered() {
        // A matching 8 MB string and an 8 MB non-matching one, in 64 KiB frames.
        let big = "a".repeat(8 << 20);
        let input = format!(r#"{{"x":"{UP}/{big}","y":"{big}"}}"#);
        let mut r = JsonUrlRewriter::new(&up(), &client());
        let mut out = BytesMut::new();
        let mut consumed = 0;
        for chunk in input.as_bytes().chunks(64 << 10) {
            r.feed(chunk, &mut out);
            consumed += chunk.len();
            assert!(r.pending.len() <= 12 * (UP.len() + 5) + 1);
            // Everything but the small held-back part is already out.
            assert!(out.len() + r.pending.len() + CL.len() >= consumed);
            assert!(r.pending.capacity() < 4096);
        }
        r.finish(&mut out);
        assert_eq!(
            &out[..],
            format!(r#"{{"x":"{CL}/{big}","y":"{big}"}}"#).as_bytes()
        );
    }

    #[test]
    fn find2_agrees_with_naive() {
        let hay: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..hay.len() {
            for (a, b) in [(b'"', b'\\'), (0, 0x80), (0xFF, 7)] {
                let want = hay[start..].iter().position(|&c| c == a || c == b);
                assert_eq!(find2(&hay[start..], a, b), want);
            }
        }
    }

    // ---- StreamRedact ----

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

    #[tokio::test(flavor = "current_thread")]
    async fn bodies_stream_and_keep_trailers() {
        use http_body_util::BodyExt;

        struct Frames(VecDeque<Frame<Bytes>>);
        impl Body for Frames {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(self.get_mut().0.pop_front().map(Ok))
            }
        }

        let text = format!(r#"{{"location":"{UP}/Users/1","t":"s3cr3t","u":"{UP}"#);
        let mut frames: VecDeque<Frame<Bytes>> = text
            .as_bytes()
            .chunks(5)
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        frames.push_back(Frame::trailers(trailers.clone()));

        // As the proxy sends a JSON answer down: rewritten, then redacted.
        let rewritten = RewriteBody::new(Frames(frames), &up(), &client());
        let body = RedactBody::shared(rewritten, Arc::new(Needles::new(b"s3cr3t", b"***")));
        assert_eq!(body.size_hint().exact(), None);
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        // The unterminated last string was cut off by the trailers: left as it was.
        assert_eq!(
            collected.to_bytes(),
            format!(r#"{{"location":"{CL}/Users/1","t":"***","u":"{UP}"#)
        );

        let empty = RewriteBody::new(Frames(VecDeque::new()), &up(), &client());
        assert!(!empty.is_end_stream());
        assert!(empty.collect().await.unwrap().to_bytes().is_empty());
    }

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

    // ---- property tests ----

    /// One decoded character and how it is written in the JSON text. Invalid escapes and lone
    /// surrogates decode to U+FFFF, which no base contains and is not a boundary.
    #[derive(Debug, Clone)]
    struct Unit {
        raw: String,
        decoded: String,
    }

    #[derive(Debug, Clone)]
    enum Seg {
        /// Bytes outside strings (no `"`).
        Other(Vec<u8>),
        /// A string: its characters, then for an unterminated last string a dangling partial escape.
        Str {
            units: Vec<Unit>,
            tail: String,
            terminated: bool,
        },
    }

    const SENTINEL: &str = "\u{FFFF}";

    fn encode(c: char, how: u8) -> Unit {
        let decoded = c.to_string();
        let raw = match (c, how % 4) {
            ('"', _) => r#"\""#.to_string(),
            ('\\', _) => r"\\".to_string(),
            ('/', 1) => r"\/".to_string(),
            ('\n', _) => r"\n".to_string(),
            (c, 2) if (c as u32) < 0x10000 => format!("\\u{:04x}", c as u32),
            (c, 3) if (c as u32) < 0x10000 => format!("\\u{:04X}", c as u32),
            (c, 2 | 3) => {
                let mut b = [0u16; 2];
                let s = c.encode_utf16(&mut b);
                format!("\\u{:04x}\\u{:04X}", s[0], s[1])
            }
            (c, _) => c.to_string(),
        };
        Unit { raw, decoded }
    }

    const PREFIXES: &[&str] = &[
        UP,
        "https://acme.goskope.com:443/api/v2/scim",
        "HTTPS://Acme.GoSkope.COM/api/v2/scim",
        "https://acme.goskope.com/api/v2/scimX",
        "https://acme.goskope.com/API/v2/scim",
        "https://acme.goskope.com:4430/api/v2/scim",
        "https://acme.goskope.co/api/v2/scim",
        "http://acme.goskope.com/api/v2/scim",
        " https://acme.goskope.com/api/v2/scim",
        CL,
        "https://",
        "",
    ];
    /// Prefixes no string may start with for the "never matches" property.
    const NEAR_MISSES: &[&str] = &[
        "https://acme.goskope.com/api/v2/scimX",
        "https://acme.goskope.com/API/v2/scim",
        "https://acme.goskope.com:4430/api/v2/scim",
        "https://acme.goskope.co/api/v2/scim",
        "http://acme.goskope.com/api/v2/scim",
        " https://acme.goskope.com/api/v2/scim",
        "https://acme.goskope.com/api/v2/sci",
        "",
    ];
    const CHARS: &[char] = &[
        '/', '?', '#', 'a', 'Z', '0', ':', '.', '-', ' ', '"', '\\', '\n', 'é', '😀', 'u', 'x',
    ];

    /// Invalid escapes and lone surrogates, with what they decode to (`!` is the sentinel).
    const INVALID: &[(&str, &str)] = &[
        (r"\q", "!"),
        (r"\x", "!"),
        (r"\'", "!"),
        (r"\u12G4", "!G4"),
        (r"\ud800", "!"),
        (r"\udc00x", "!x"),
        (r"\ud800\q", "!"),
        (r#"\ud800\""#, "!\""),
        (r"\ud800\u0041", "!"),
    ];

    fn unit_strategy() -> impl Strategy<Value = Unit> {
        prop_oneof![
            8 => (prop::sample::select(CHARS), any::<u8>()).prop_map(|(c, h)| encode(c, h)),
            1 => prop::sample::select(INVALID).prop_map(|(raw, decoded)| Unit {
                raw: raw.to_string(),
                decoded: decoded.replace('!', SENTINEL),
            }),
        ]
    }

    fn prefix_units(prefix: &str, hows: &[u8]) -> Vec<Unit> {
        prefix
            .chars()
            .enumerate()
            .map(|(i, c)| encode(c, hows.get(i).copied().unwrap_or(0)))
            .collect()
    }

    /// A string segment starting with one of `prefixes`, each character written plainly or
    /// escaped (`plain_prefix` keeps the prefix unescaped).
    fn string_seg(
        prefixes: &'static [&'static str],
        plain_prefix: bool,
        escaped_tail: bool,
    ) -> impl Strategy<Value = Seg> {
        let tail_unit = if escaped_tail {
            unit_strategy().boxed()
        } else {
            (prop::sample::select(CHARS), Just(0u8))
                .prop_map(|(c, h)| encode(c, h))
                .boxed()
        };
        (
            prop::sample::select(prefixes),
            prop::collection::vec(any::<u8>(), 64),
            prop::collection::vec(tail_unit, 0..6),
        )
            .prop_map(move |(p, hows, tail)| {
                let hows: Vec<u8> = if plain_prefix {
                    vec![0; 64]
                } else {
                    hows.iter()
                        .map(|h| if h % 3 == 0 { *h } else { 0 })
                        .collect()
                };
                let mut units = prefix_units(p, &hows);
                units.extend(tail);
                Seg::Str {
                    units,
                    tail: String::new(),
                    terminated: true,
                }
            })
    }

    fn other_seg() -> impl Strategy<Value = Seg> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(&b"{}[],: \n\\0123456789eEtrufalsn/:h\xff"[..]),
                any::<u8>().prop_filter("no quote", |b| *b != b'"'),
            ],
            0..8,
        )
        .prop_map(Seg::Other)
    }

    /// A document of segments; only the last string may be unterminated (with a dangling escape).
    fn doc(
        prefixes: &'static [&'static str],
        plain_prefix: bool,
        escaped_tail: bool,
        allow_truncation: bool,
    ) -> impl Strategy<Value = Vec<Seg>> {
        (
            prop::collection::vec(
                prop_oneof![
                    other_seg(),
                    string_seg(prefixes, plain_prefix, escaped_tail)
                ],
                0..10,
            ),
            any::<bool>(),
            prop::sample::select(&["", "\\", "\\u", "\\u002", "\\ud83d", "\\ud83d\\"][..]),
        )
            .prop_map(move |(mut segs, truncate, dangling)| {
                if allow_truncation
                    && truncate
                    && let Some(Seg::Str {
                        tail, terminated, ..
                    }) = segs.last_mut()
                {
                    *terminated = false;
                    *tail = dangling.to_string();
                }
                segs
            })
    }

    fn render(segs: &[Seg]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in segs {
            match s {
                Seg::Other(b) => out.extend_from_slice(b),
                Seg::Str {
                    units,
                    tail,
                    terminated,
                } => {
                    out.push(b'"');
                    for u in units {
                        out.extend_from_slice(u.raw.as_bytes());
                    }
                    out.extend_from_slice(tail.as_bytes());
                    if *terminated {
                        out.push(b'"');
                    }
                }
            }
        }
        out
    }

    /// The expected output, from the decoded strings and `base::rewrite_absolute`.
    fn oracle(segs: &[Seg], from: &Base, to: &Base) -> (Vec<u8>, bool) {
        let to_url = to.url();
        let mut out = Vec::new();
        let mut any_match = false;
        for s in segs {
            match s {
                Seg::Other(b) => out.extend_from_slice(b),
                Seg::Str {
                    units,
                    tail,
                    terminated,
                } => {
                    out.push(b'"');
                    let decoded: String = units.iter().map(|u| u.decoded.as_str()).collect();
                    let n = rewrite_absolute(&decoded, from, to)
                        .map(|r| decoded.len() - (r.len() - to_url.len()))
                        // Unterminated: the boundary character must have been seen.
                        .filter(|&n| *terminated || decoded.len() > n);
                    let mut skip = 0;
                    if let Some(n) = n {
                        any_match = true;
                        out.extend_from_slice(to_url.as_bytes());
                        let mut at = 0;
                        while at < n {
                            at += units[skip].decoded.len();
                            skip += 1;
                        }
                        assert_eq!(at, n);
                    }
                    for u in &units[skip..] {
                        out.extend_from_slice(u.raw.as_bytes());
                    }
                    out.extend_from_slice(tail.as_bytes());
                    if *terminated {
                        out.push(b'"');
                    }
                }
            }
        }
        (out, any_match)
    }

    fn splits() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(any::<usize>(), 0..8)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// (a) Any chunking gives the one-chunk output, for JSON-ish and arbitrary bytes.
        #[test]
        fn chunking_is_invisible(
            segs in doc(PREFIXES, false, true, true),
            noise in prop::collection::vec(any::<u8>(), 0..64),
            at in any::<usize>(),
            cuts in splits(),
        ) {
            let mut input = render(&segs);
            let at = at % (input.len() + 1);
            input.splice(at..at, noise);
            let one = rewrite_json(&input, &up(), &client());
            prop_assert_eq!(&chunked(&input, &cuts, &up(), &client()), &one);
            prop_assert_eq!(&bytewise(&input, &up(), &client()), &one);
        }

        /// The output is exactly what decoding each string and `rewrite_absolute` predict.
        #[test]
        fn matches_oracle(segs in doc(PREFIXES, false, true, true), cuts in splits()) {
            let input = render(&segs);
            let (want, _) = oracle(&segs, &up(), &client());
            prop_assert_eq!(&chunked(&input, &cuts, &up(), &client()), &want);
        }

        /// (b) Strings that do not start with the base are never changed.
        #[test]
        fn non_matching_is_unchanged(segs in doc(NEAR_MISSES, false, true, true), cuts in splits()) {
            let input = render(&segs);
            let (_, any_match) = oracle(&segs, &up(), &client());
            prop_assert!(!any_match);
            prop_assert_eq!(&chunked(&input, &cuts, &up(), &client()), &input);
        }

        /// (c) from→to then to→from is the identity when the base URLs were written plainly.
        #[test]
        fn round_trip(segs in doc(&PREFIXES[..1], true, true, true), cuts in splits()) {
            let input = render(&segs);
            let there = chunked(&input, &cuts, &up(), &client());
            let back = chunked(&there, &cuts, &client(), &up());
            prop_assert_eq!(back, input);
        }

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

    /// Rough throughput check: `cargo test --release --lib body_rewrite -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn perf_list_response() {
        let mut doc = String::from(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"Resources":["#,
        );
        let mut i = 0;
        while doc.len() < 1 << 20 {
            if i > 0 {
                doc.push(',');
            }
            doc.push_str(&format!(
                r#"{{"id":"{i}","userName":"user{i}@acme.example","name":{{"givenName":"Given","familyName":"Family"}},"emails":[{{"value":"user{i}@acme.example","primary":true}}],"active":true,"groups":[{{"value":"g{i}","$ref":"{UP}/Groups/g{i}"}}],"meta":{{"resourceType":"User","location":"{UP}/Users/{i}"}},"padding":"{pad}"}}"#,
                pad = "x".repeat(180)
            ));
            i += 1;
        }
        doc.push_str("]}");
        // Best of several runs: the machine may be busy.
        let best = |f: &dyn Fn()| {
            (0..30)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let ours = best(&|| {
            std::hint::black_box(rewrite_json(doc.as_bytes(), &up(), &client()));
        });
        let serde = best(&|| {
            let v: serde_json::Value = serde_json::from_slice(doc.as_bytes()).unwrap();
            std::hint::black_box(serde_json::to_vec(&v).unwrap());
        });
        println!(
            "{} bytes, {} URLs: rewrite {ours:?}, serde parse+serialise {serde:?}",
            doc.len(),
            i * 2
        );
        assert!(ours < serde);
    }
}
