//! Streaming replacement of the v2 token's raw and JSON-escaped spellings ([`StreamRedact`]),
//! and the [`Needles`] it looks for.

use std::sync::Arc;

use bytes::BytesMut;

use crate::body::json_text::json_escape;

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
    pub(crate) needles: Arc<Needles>,
    pub(crate) carry: Vec<u8>,
    scratch: Vec<u8>,
}

/// What [`StreamRedact`] looks for and writes instead: built once per v2 token and shared, so a
/// response does not rebuild the escaped spellings.
#[derive(Debug)]
pub struct Needles {
    pub(crate) needles: Vec<Vec<u8>>,
    first: [bool; 256],
    /// The distinct first bytes of the needles (usually one).
    starts: Vec<u8>,
    pub(crate) max_len: usize,
    pub(crate) replacement: Vec<u8>,
    /// A prepared substring search when there is exactly one spelling.
    pub(crate) single: Option<memchr::memmem::Finder<'static>>,
    /// The secret itself, as JSON strings decode to it.
    pub(crate) secret: Vec<u8>,
    /// A prepared search for `secret`, built once per token rather than once per JSON string.
    pub(crate) secret_finder: memchr::memmem::Finder<'static>,
    /// A prepared search for each spelling in `needles`.
    finders: Vec<memchr::memmem::Finder<'static>>,
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
            secret_finder: memchr::memmem::Finder::new(needle).into_owned(),
            single,
            finders: needles
                .iter()
                .map(|n| memchr::memmem::Finder::new(n).into_owned())
                .collect(),
            max_len: needles.iter().map(Vec::len).max().unwrap_or(0),
            needles,
            first,
            starts,
            replacement: replacement.to_vec(),
        }
    }

    /// Whether any spelling of the needle is in `hay` as written.
    pub(crate) fn occurs_in(&self, hay: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(hay).is_some())
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

    pub(crate) fn is_idle(&self) -> bool {
        self.carry.is_empty()
    }
}
