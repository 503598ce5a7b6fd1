//! Where a test's nodes keep their state: a database of the harness's Redis, or a key prefix
//! of its own on the harness's three-master Redis Cluster (which has database 0 only).

use redis::ConnectionLike;

pub struct Store {
    /// What the nodes get as `--redis`: one URL, or the cluster's seed nodes.
    url: String,
    prefix: String,
}

impl Store {
    /// A flushed database of the harness's Redis, under the default prefix.
    pub fn db(db: u8) -> Store {
        Store {
            url: super::redis_db(db),
            prefix: "sb".into(),
        }
    }

    /// The harness's Redis Cluster, under `prefix`, whose keys are deleted first.
    pub fn cluster(prefix: &str) -> Store {
        let url = std::env::var("SWITCHBOARD_TEST_REDIS_CLUSTER").unwrap_or_else(|_| {
            panic!("SWITCHBOARD_TEST_REDIS_CLUSTER is not set: run the tests with scripts/test.sh, which starts a private Redis Cluster")
        });
        // Each master holds some of the prefix's keys: each is swept.
        for seed in url.split(',') {
            let mut conn = super::redis(seed);
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query(&mut conn)
                .expect("keys");
            for key in keys {
                redis::cmd("DEL")
                    .arg(&key)
                    .query::<()>(&mut conn)
                    .expect("del");
            }
        }
        Store {
            url,
            prefix: prefix.into(),
        }
    }

    pub fn is_cluster(&self) -> bool {
        self.url.contains(',')
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// What a node's configuration needs for this store (its `[stores]` section).
    pub fn config(&self) -> String {
        format!("[stores]\nkey_prefix = \"{}\"\n", self.prefix)
    }

    /// The name of the demo tenant's key `what` (`sb:{demo}:agents`).
    pub fn key(&self, what: &str) -> String {
        format!("{}:{{demo}}:{what}", self.prefix)
    }

    /// A connection for the test's own reads and writes.
    pub fn conn(&self) -> Box<dyn ConnectionLike> {
        if self.is_cluster() {
            let seeds: Vec<&str> = self.url.split(',').collect();
            let client = redis::cluster::ClusterClient::new(seeds).expect("cluster seeds");
            Box::new(client.get_connection().expect("redis cluster reachable"))
        } else {
            Box::new(super::redis(&self.url))
        }
    }

    /// The demo tenant's call-thread events, oldest first, as (kind, payload JSON).
    pub fn call_events(&self) -> Vec<(String, serde_json::Value)> {
        super::stream_events(&mut *self.conn(), &self.key("voice-callthread"))
    }
}
