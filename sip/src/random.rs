//! Randomness for branches, tags and nonces, from the operating system's generator. Each
//! thread draws it in blocks, so a busy node makes one system call per few dozen identifiers
//! rather than one each.

use std::cell::RefCell;

const BLOCK: usize = 512;

thread_local! {
    /// Random bytes not handed out yet: `pool[used..]`.
    static POOL: RefCell<([u8; BLOCK], usize)> = const { RefCell::new(([0; BLOCK], BLOCK)) };
}

/// Fills `buf` with random bytes. The operating system's generator does not fail on the
/// platforms switchboard runs on; should it, the process cannot safely issue identifiers.
pub(crate) fn fill(buf: &mut [u8]) {
    if buf.len() > BLOCK / 4 {
        return os_fill(buf);
    }
    POOL.with_borrow_mut(|(pool, used)| {
        if BLOCK - *used < buf.len() {
            os_fill(pool);
            *used = 0;
        }
        buf.copy_from_slice(&pool[*used..*used + buf.len()]);
        // Bytes handed out are not kept.
        pool[*used..*used + buf.len()].fill(0);
        *used += buf.len();
    });
}

fn os_fill(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random generator failed");
}

/// `N` random bytes, from the same pool as the tokens.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    fill(&mut bytes);
    bytes
}

/// A random token of `2 * N` lowercase hex digits, for tags, keys and similar identifiers.
pub fn token<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    fill(&mut bytes);
    hex(&bytes)
}

/// Bytes as lowercase hex digits, as digests and tokens are written.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
        assert_eq!(token::<16>().len(), 32);
    }

    #[test]
    fn tokens_do_not_repeat_across_pool_refills() {
        let tokens: HashSet<String> = (0..10_000).map(|_| token::<8>()).collect();
        assert_eq!(tokens.len(), 10_000);
        let mut big = [0u8; 1024];
        fill(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }
}
