//! Character classes and small scanners of the RFC 3261 grammar (section 25.1), shared by the
//! URI and header parsers.

/// The index of the first `byte` (ASCII) in `s`: what `str::find` finds for that character,
/// without its searcher's setup, which costs more than the search in the short texts (a URI, a
/// header line) the parsers look into many times per message.
#[inline]
pub(crate) fn find_byte(s: &str, byte: u8) -> Option<usize> {
    s.bytes().position(|c| c == byte)
}

/// The index of the first of two bytes (ASCII) in `s`, as [`find_byte`].
#[inline]
pub(crate) fn find_either(s: &str, a: u8, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == a || c == b)
}

/// `s` split around its first `byte` (ASCII), as `str::split_once` splits it.
#[inline]
pub(crate) fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = find_byte(s, byte)?;
    Some((&s[..at], &s[at + 1..]))
}

/// `token` characters: alphanum and `-.!%*_+`'~`.
pub(crate) fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `word` characters (Call-ID): token characters and `()<>:\"/[]?{}`.
pub(crate) fn is_word(c: u8) -> bool {
    is_token(c)
        || matches!(
            c,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        )
}

/// `unreserved`: alphanum and `mark`.
pub(crate) fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

pub(crate) fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Checks that `s` consists of characters accepted by `allowed` or `%HH` escapes.
pub(crate) fn is_escaped_with(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Skips spaces and tabs from `i`; folding has already been replaced by a space.
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Returns the index just past the closing quote of the quoted string starting at `i` (which must
/// be a `"`), honouring `\` quoted pairs; `None` when the quotes do not balance.
pub(crate) fn end_of_quoted(b: &[u8], i: usize) -> Option<usize> {
    debug_assert_eq!(b.get(i), Some(&b'"'));
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                match b.get(j + 1) {
                    Some(&c) if c <= 0x7f && c != b'\n' && c != b'\r' => j += 2,
                    _ => return None,
                }
            }
            b'"' => return Some(j + 1),
            b'\r' | b'\n' => return None,
            _ => j += 1,
        }
    }
    None
}

/// Splits a header value at the commas that separate its values (RFC 3261 7.3.1), ignoring
/// commas inside quoted strings and angle brackets. Yields trimmed byte ranges.
pub(crate) fn split_commas(s: &str) -> impl Iterator<Item = &str> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        // Most values hold no comma at all: one value, found without the byte-by-byte scan.
        if start == 0 && !b.contains(&b',') {
            done = true;
            return Some(s.trim_matches(|c| c == ' ' || c == '\t'));
        }
        let mut i = start;
        let mut in_angle = false;
        while i < b.len() {
            match b[i] {
                b'"' => match end_of_quoted(b, i) {
                    Some(end) => {
                        i = end;
                        continue;
                    }
                    None => i = b.len() - 1,
                },
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => break,
                _ => {}
            }
            i += 1;
        }
        let item = s[start..i.min(b.len())].trim_matches(|c| c == ' ' || c == '\t');
        if i >= b.len() {
            done = true;
        } else {
            start = i + 1;
        }
        Some(item)
    })
}

/// Parses decimal digits into a `u64`, `None` for anything else or an overflow.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `delta-seconds`, clamping values beyond 2^32-1 to 2^32-1 as RFC 3261 20.19 asks.
pub(crate) fn parse_delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_respect_quotes_and_brackets() {
        let v: Vec<_> = split_commas(r#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z@w>"#).collect();
        assert_eq!(v, [r#""a, b" <sip:x@y;p=1,2>;q=1"#, "<sip:z@w>"]);
        let v: Vec<_> = split_commas("").collect();
        assert_eq!(v, [""]);
        let v: Vec<_> = split_commas("a,,b").collect();
        assert_eq!(v, ["a", "", "b"]);
    }

    #[test]
    fn escapes_are_checked() {
        assert!(is_escaped_with("a%41b", is_unreserved));
        assert!(!is_escaped_with("a%4", is_unreserved));
        assert!(!is_escaped_with("a%", is_unreserved));
        assert!(!is_escaped_with("a%zz", is_unreserved));
        assert!(!is_escaped_with("a b", is_unreserved));
    }

    #[test]
    fn quoted_strings_balance() {
        assert_eq!(end_of_quoted(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(end_of_quoted(br#""abc"#, 0), None);
    }

    #[test]
    fn delta_seconds_clamp() {
        assert_eq!(parse_delta_seconds("3600"), Some(3600));
        assert_eq!(parse_delta_seconds("99999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta_seconds("-1"), None);
        assert_eq!(parse_delta_seconds(""), None);
    }
}
