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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn tokens_do_not_repeat_across_pool_refills() {
        let tokens: HashSet<String> = (0..10_000).map(|_| token::<8>()).collect();
        assert_eq!(tokens.len(), 10_000);
        let mut big = [0u8; 1024];
        fill(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }
}
