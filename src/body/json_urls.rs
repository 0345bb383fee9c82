//! Streaming rewriting of base URLs at the start of JSON strings ([`JsonUrlRewriter`]).
//!
//! Works on any chunking with a small bounded carry, never validates or buffers the body, and
//! passes any byte it does not rewrite through unchanged.

use bytes::BytesMut;

use crate::body::json_text::{find2, hex_val, json_escape, simple_escape, utf8};
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

/// What one raw byte did to the escape decoding while `Matching`.
enum Decoded {
    /// Taken into an escape still incomplete: nothing to judge yet.
    Taken,
    /// A whole character: its UTF-8 bytes and their number.
    Char([u8; 4], usize),
    /// An invalid escape or a lone surrogate.
    Invalid,
}

/// The escape state after `\u`.
const HEX_START: Esc = Esc::Hex {
    n: 0,
    v: 0,
    high: None,
};

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
    pub(crate) pending: Vec<u8>,
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
    // The per-byte path, cut into named steps; kept inlined as the one function it was.
    #[inline(always)]
    fn step(&mut self, b: u8, out: &mut BytesMut) -> bool {
        if self.esc == Esc::None && b == b'"' {
            self.end_string(out);
            return true;
        }
        let verdict = match self.decode(b) {
            Decoded::Taken => return true,
            Decoded::Char(buf, len) => self.judge(&buf[..len]),
            // Invalid escapes and lone surrogates can never be part of the base.
            Decoded::Invalid => Verdict::Kill,
        };
        self.apply(verdict, b, out)
    }

    /// The closing quote of a string still undecided: it was the base itself, or not.
    fn end_string(&mut self, out: &mut BytesMut) {
        if self.complete_pattern() {
            out.extend_from_slice(&self.replacement);
        } else {
            out.extend_from_slice(&self.pending);
        }
        out.extend_from_slice(b"\"");
        self.pending.clear();
        self.state = State::Outside;
    }

    /// Feeds `b` (not a closing quote) to the escape decoder.
    #[inline(always)]
    fn decode(&mut self, b: u8) -> Decoded {
        match self.esc {
            Esc::None => {
                self.char_start = self.pending.len();
                if b == b'\\' {
                    return self.take(b, Esc::Backslash);
                }
                Decoded::Char([b, 0, 0, 0], 1)
            }
            Esc::Backslash if b == b'u' => self.take(b, HEX_START),
            Esc::Backslash => {
                simple_escape(b).map_or(Decoded::Invalid, |d| Decoded::Char([d, 0, 0, 0], 1))
            }
            Esc::Hex { n, v, high } => match hex_val(b) {
                None => Decoded::Invalid,
                Some(h) => self.hex_digit(b, n, (v << 4) | h, high),
            },
            Esc::AfterHigh(h) if b == b'\\' => self.take(b, Esc::AfterHighBackslash(h)),
            Esc::AfterHighBackslash(h) if b == b'u' => self.take(
                b,
                Esc::Hex {
                    n: 0,
                    v: 0,
                    high: Some(h),
                },
            ),
            Esc::AfterHigh(_) | Esc::AfterHighBackslash(_) => Decoded::Invalid,
        }
    }

    /// The `n`th hex digit of a `\uXXXX` escape, `v` the value so far with it.
    fn hex_digit(&mut self, b: u8, n: u8, v: u32, high: Option<u32>) -> Decoded {
        if n < 3 {
            return self.take(b, Esc::Hex { n: n + 1, v, high });
        }
        let cp = match (high, v) {
            (None, 0xD800..=0xDBFF) => return self.take(b, Esc::AfterHigh(v)),
            (Some(h), 0xDC00..=0xDFFF) => 0x10000 + ((h - 0xD800) << 10) + (v - 0xDC00),
            (None, _) => v,
            (Some(_), _) => return Decoded::Invalid,
        };
        utf8(cp).map_or(Decoded::Invalid, |(buf, len)| Decoded::Char(buf, len))
    }

    #[inline(always)]
    fn take(&mut self, b: u8, esc: Esc) -> Decoded {
        self.accept(b, esc);
        Decoded::Taken
    }

    /// What the judged byte `b` does to the string and the output.
    #[inline(always)]
    fn apply(&mut self, verdict: Verdict, b: u8, out: &mut BytesMut) -> bool {
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
    #[inline(always)]
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

    pub(crate) fn is_idle(&self) -> bool {
        self.state != State::Matching || self.pending.is_empty()
    }
}

/// One-shot form of [`JsonUrlRewriter`].
pub fn rewrite_json(input: &[u8], from: &Base, to: &Base) -> Vec<u8> {
    let mut rw = JsonUrlRewriter::new(from, to);
    let mut out = BytesMut::with_capacity(input.len() + input.len() / 8 + 64);
    rw.feed(input, &mut out);
    rw.finish(&mut out);
    out.into()
}
