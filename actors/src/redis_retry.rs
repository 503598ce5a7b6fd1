//! Riding out a Redis restart: the connection manager notices a lost connection only when a
//! command fails on it, then connects again behind it. A command that failed that way (or
//! found Redis still starting) is tried again a few times over about a second and a half
//! before its caller hears of it, so a Redis restarted by its operator (its data kept in the
//! append-only file) costs the calls and agents nothing but that moment.
//!
//! Only idempotent writes and reads go through here: a command that reached Redis but whose
//! reply was lost runs twice.

use std::future::Future;
use std::time::Duration;

use crate::redis_conn::Conn;
use redis::RedisResult;

/// Attempts after the first.
const RETRIES: u32 = 4;

/// Runs `attempt` on a clone of `conn`, again after 100, 200, 400 and 800 ms while it fails
/// for want of a connection.
pub(crate) async fn retrying<T, F, Fut>(conn: &Conn, mut attempt: F) -> RedisResult<T>
where
    F: FnMut(Conn) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let mut pause = Duration::from_millis(100);
    let mut tries = 0;
    loop {
        match attempt(conn.clone()).await {
            Err(e) if tries < RETRIES && connection_lost(&e) => {
                tracing::debug!(error = %e, "redis connection lost; trying again");
                tries += 1;
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            result => return result,
        }
    }
}

/// Runs one command on `conn` as [`retrying`] does.
pub(crate) async fn query<T: redis::FromRedisValue>(
    conn: &Conn,
    cmd: &redis::Cmd,
) -> RedisResult<T> {
    retrying(conn, |mut c| async move { cmd.query_async(&mut c).await }).await
}

fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("LOADING")
}
