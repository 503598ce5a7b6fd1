//! Randomness for branches, tags and nonces, from the operating system.

/// Fills `buf` with random bytes. The operating system's generator does not fail on the
/// platforms switchboard runs on; should it, the process cannot safely issue identifiers.
pub(crate) fn fill(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random generator failed");
}

/// A random token of `2 * N` lowercase hex digits, for tags and similar identifiers.
pub fn token<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    fill(&mut bytes);
    let mut s = String::with_capacity(2 * N);
    for b in bytes {
        s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    s
}
