//! The provisioning API's view of the node's bans of SIP sources: listed from Redis (every
//! node's) or, without it, from this node; lifted in both, so the other nodes drop the ban at
//! their next look at the store.

use std::net::IpAddr;
use std::sync::Arc;

use switchboard_actors::defence::store::BanStore;
use switchboard_actors::defence::{Ban, Defence};
use switchboard_proto::provisioning as pb;
use tonic::Status;

pub(crate) struct Bans {
    pub(crate) defence: Arc<Defence>,
    pub(crate) store: Option<BanStore>,
}

impl Bans {
    pub(crate) async fn list(&self) -> Result<Vec<pb::Ban>, Status> {
        let mut bans = match &self.store {
            Some(store) => store
                .list(switchboard_actors::unix_ms())
                .await
                .map_err(|e| Status::unavailable(format!("redis: {e}")))?,
            None => self.defence.bans(),
        };
        bans.sort_by_key(|b| (b.until_ms, b.ip));
        Ok(bans.iter().map(message).collect())
    }

    pub(crate) async fn lift(&self, address: &str) -> Result<(), Status> {
        let ip: IpAddr = address.trim().parse().map_err(|_| {
            Status::invalid_argument(format!("address: {address:?} is no IP address"))
        })?;
        let here = self.defence.lift(ip);
        let stored = match &self.store {
            Some(store) => store
                .lift(ip)
                .await
                .map_err(|e| Status::unavailable(format!("redis: {e}")))?,
            None => false,
        };
        if !here && !stored {
            return Err(Status::not_found(format!("{ip} is not banned")));
        }
        tracing::info!(%ip, "ban lifted");
        Ok(())
    }
}

fn message(ban: &Ban) -> pb::Ban {
    pb::Ban {
        address: ban.ip.to_string(),
        since_unix_ms: ban.at_ms as i64,
        until_unix_ms: ban.until_ms as i64,
        reason: ban.reason.clone(),
        offence: ban.offence,
        node: ban.node.clone(),
    }
}
