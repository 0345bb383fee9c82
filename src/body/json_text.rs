//! JSON string syntax shared by the body transformers: escapes, decoding, finding quotes.

pub(crate) fn simple_escape(b: u8) -> Option<u8> {
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

pub(crate) fn hex_val(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

pub(crate) fn utf8(cp: u32) -> Option<([u8; 4], usize)> {
    let c = char::from_u32(cp)?;
    let mut buf = [0u8; 4];
    let len = c.encode_utf8(&mut buf).len();
    Some((buf, len))
}

/// JSON string content for `s`: `"` and `\` (and control bytes) escaped; `/` too when `slash`.
pub(crate) fn json_escape(s: &[u8], slash: bool) -> Vec<u8> {
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
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
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

/// Where the string whose content starts `raw` ends (its closing quote), whether it has a
/// backslash before that, and (when it does not end) whether the next byte would be escaped.
pub(crate) fn string_end(raw: &[u8], mut escaped: bool) -> (Option<usize>, bool, bool) {
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
pub(crate) fn decode_json_string(raw: &[u8], piece: bool) -> (Vec<u8>, usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
