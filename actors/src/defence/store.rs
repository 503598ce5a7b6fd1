//! The bans every node holds, in Redis: `<p>:{bans}:index` (a sorted set of banned addresses
//! by the end of their ban, in Unix milliseconds), `<p>:{bans}:info` (each ban's JSON),
//! `<p>:{bans}:version` (bumped by each ban and lift, which the nodes poll) and
//! `<p>:{bans}:offences:<ip>` (the offences remembered of an address, expiring with the
//! memory). One hash tag: each change is one script.

use std::net::IpAddr;
use std::time::Duration;

use redis::Script;
use serde::{Deserialize, Serialize};

use super::{Ban, NewBan};
use crate::keys::Keys;
use crate::redis_conn::Conn;
use crate::redis_retry::query;

/// KEYS: index, info, version, offences. ARGV: ip, first ban (ms), longest (ms), offence
/// memory (ms), now (ms), reason, node. The offence is counted here, across the nodes; a
/// longer ban in force stays. Returns the ban's end and offence.
const BAN: &str = r"
local n = redis.call('INCR', KEYS[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
local d = tonumber(ARGV[2]) * 2 ^ (n - 1)
if d > tonumber(ARGV[3]) then d = tonumber(ARGV[3]) end
local ends = tonumber(ARGV[5]) + d
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held and tonumber(held) >= ends then return {tostring(held), n} end
redis.call('ZADD', KEYS[1], ends, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({ip = ARGV[1], until_ms = ends,
  reason = ARGV[6], offence = n, node = ARGV[7], at_ms = tonumber(ARGV[5])}))
redis.call('INCR', KEYS[3])
return {string.format('%d', ends), n}
";

/// KEYS: index, info. ARGV: now (ms). Forgets ended bans; the JSON of those in force.
const LIST: &str = r"
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, ip in ipairs(ended) do
  redis.call('ZREM', KEYS[1], ip)
  redis.call('HDEL', KEYS[2], ip)
end
local out = {}
for _, ip in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local info = redis.call('HGET', KEYS[2], ip)
  if info then out[#out + 1] = info end
end
return out
";

/// KEYS: index, info, version. ARGV: ip. Whether a ban was lifted.
const LIFT: &str = r"
local gone = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if gone == 1 then redis.call('INCR', KEYS[3]) end
return gone
";

/// A ban as Redis holds it.
#[derive(Serialize, Deserialize)]
struct Stored {
    ip: String,
    at_ms: u64,
    until_ms: u64,
    reason: String,
    offence: u32,
    node: String,
}

/// The bans of every node, in Redis.
#[derive(Clone)]
pub struct BanStore {
    conn: Conn,
    keys: Keys,
    scripts: std::sync::Arc<[Script; 3]>,
}

impl BanStore {
    pub fn new(conn: Conn, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            scripts: std::sync::Arc::new([BAN, LIST, LIFT].map(Script::new)),
        }
    }

    /// Stores `new`, counting the offence across the nodes: the ban as it stands (its end
    /// and offence as the store counts them).
    pub async fn ban(
        &self,
        new: &NewBan,
        max: Duration,
        memory: Duration,
    ) -> redis::RedisResult<Ban> {
        let ban = &new.ban;
        let ip = ban.ip.to_string();
        let (until, offence): (String, u32) = self.scripts[0]
            .key(self.keys.bans("index"))
            .key(self.keys.bans("info"))
            .key(self.keys.bans("version"))
            .key(self.keys.bans(&format!("offences:{ip}")))
            .arg(&ip)
            .arg(new.base.as_millis() as u64)
            .arg(max.as_millis() as u64)
            .arg(memory.as_millis() as u64)
            .arg(ban.at_ms)
            .arg(&ban.reason)
            .arg(&ban.node)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Ban {
            until_ms: until.parse().unwrap_or(ban.until_ms),
            offence,
            ..ban.clone()
        })
    }

    /// The bans in force, ended ones forgotten.
    pub async fn list(&self, now_ms: u64) -> redis::RedisResult<Vec<Ban>> {
        let found: Vec<String> = self.scripts[1]
            .key(self.keys.bans("index"))
            .key(self.keys.bans("info"))
            .arg(now_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(found
            .iter()
            .filter_map(|json| {
                let s: Stored = serde_json::from_str(json).ok()?;
                Some(Ban {
                    ip: s.ip.parse().ok()?,
                    at_ms: s.at_ms,
                    until_ms: s.until_ms,
                    reason: s.reason,
                    offence: s.offence,
                    node: s.node,
                })
            })
            .collect())
    }

    /// Lifts the ban of `ip` on every node; whether there was one.
    pub async fn lift(&self, ip: IpAddr) -> redis::RedisResult<bool> {
        let gone: i64 = self.scripts[2]
            .key(self.keys.bans("index"))
            .key(self.keys.bans("info"))
            .key(self.keys.bans("version"))
            .arg(ip.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(gone == 1)
    }

    /// The number bumped by each change.
    pub async fn version(&self) -> redis::RedisResult<u64> {
        let v: Option<u64> =
            query(&self.conn, redis::cmd("GET").arg(self.keys.bans("version"))).await?;
        Ok(v.unwrap_or(0))
    }
}
