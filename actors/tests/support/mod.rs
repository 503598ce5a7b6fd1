//! Shared by the actors' tests against a real Redis: the private Redis of the test harness
//! (`scripts/test.sh` starts it), a flushed database of it per test.
#![allow(dead_code, unreachable_pub)]

/// A flushed database of the harness's Redis (each test its own number, so tests that run
/// side by side do not meet).
pub fn redis_db(db: u8) -> String {
    let base = std::env::var("SWITCHBOARD_TEST_REDIS").unwrap_or_else(|_| {
        panic!("SWITCHBOARD_TEST_REDIS is not set: run the tests with scripts/test.sh, which starts a private Redis")
    });
    let url = format!("{}/{db}", base.trim_end_matches('/'));
    let mut conn = connection(&url);
    redis::cmd("FLUSHDB")
        .query::<()>(&mut conn)
        .expect("flushdb");
    url
}

/// A plain connection to `url`, for a test's own reads and writes.
pub fn connection(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("redis reachable")
}
