//! Bindings in memory: the [`BindingStore`] a node uses without Redis.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::FastMap;
use crate::messages::registrar::{Binding, BindingStore, Changes};
use crate::store::StoreFuture;

/// How many locks the bindings are spread over: the registrar's shards each take their own
/// address-of-records' lock, and seldom wait for one another.
const SHARDS: usize = 16;

/// Bindings in this process, lost when it stops.
#[derive(Clone, Debug)]
pub struct MemoryBindings {
    shards: Arc<[Mutex<Memory>]>,
}

impl Default for MemoryBindings {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

#[derive(Debug, Default)]
struct Memory {
    /// By tenant, address of record, then contact key.
    bindings: FastMap<String, FastMap<String, FastMap<String, Held>>>,
    /// Where each binding is held, by its expiry and a number unique in the shard: a refresh
    /// moves its entry without making another.
    expiry: BTreeMap<(u64, u64), Place>,
    last_place: u64,
}

#[derive(Debug)]
struct Held {
    binding: Arc<Binding>,
    /// Its number in `expiry`.
    place: u64,
}

#[derive(Debug)]
struct Place {
    tenant: String,
    aor: String,
    key: String,
}

impl MemoryBindings {
    fn lock(&self, tenant: &str, aor: &str) -> std::sync::MutexGuard<'_, Memory> {
        lock(&self.shards[crate::shards::pick((tenant, aor), self.shards.len())])
    }
}

fn lock(shard: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

impl BindingStore for MemoryBindings {
    fn load<'a>(&'a self, tenant: &'a str, aor: &'a str) -> StoreFuture<'a, Vec<Arc<Binding>>> {
        Box::pin(async move {
            let m = self.lock(tenant, aor);
            Ok(m.bindings
                .get(tenant)
                .and_then(|aors| aors.get(aor))
                .map(|b| b.values().map(|h| h.binding.clone()).collect())
                .unwrap_or_default())
        })
    }

    fn save<'a>(&'a self, tenant: &'a str, aor: &'a str, changes: Changes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut m = self.lock(tenant, aor);
            let Memory {
                bindings,
                expiry,
                last_place,
            } = &mut *m;
            let aors = match bindings.get_mut(tenant) {
                Some(aors) => aors,
                None => bindings.entry(tenant.to_owned()).or_default(),
            };
            let held = match aors.get_mut(aor) {
                Some(held) => held,
                None => aors.entry(aor.to_owned()).or_default(),
            };
            for key in &changes.removals {
                if let Some(old) = held.remove(key) {
                    expiry.remove(&(old.binding.expires_at_ms, old.place));
                }
            }
            for b in changes.upserts {
                if let Some(h) = held.get_mut(&b.key) {
                    let was = h.binding.expires_at_ms;
                    if was != b.expires_at_ms
                        && let Some(place) = expiry.remove(&(was, h.place))
                    {
                        expiry.insert((b.expires_at_ms, h.place), place);
                    }
                    h.binding = b;
                    continue;
                }
                *last_place += 1;
                let place = Place {
                    tenant: tenant.to_owned(),
                    aor: aor.to_owned(),
                    key: b.key.clone(),
                };
                expiry.insert((b.expires_at_ms, *last_place), place);
                held.insert(
                    b.key.clone(),
                    Held {
                        binding: b,
                        place: *last_place,
                    },
                );
            }
            if held.is_empty() {
                aors.remove(aor);
                if aors.is_empty() {
                    bindings.remove(tenant);
                }
            }
            Ok(())
        })
    }

    fn take_expired<'a>(
        &'a self,
        tenant: &'a str,
        now_ms: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Arc<Binding>>> {
        Box::pin(async move {
            let mut taken = Vec::new();
            for shard in self.shards.iter() {
                if taken.len() >= limit {
                    break;
                }
                let mut m = lock(shard);
                let Memory {
                    bindings, expiry, ..
                } = &mut *m;
                let due: Vec<(u64, u64)> = expiry
                    .iter()
                    .take_while(|((at, _), _)| *at <= now_ms)
                    .filter(|(_, p)| p.tenant == tenant)
                    .take(limit - taken.len())
                    .map(|(at, _)| *at)
                    .collect();
                for at in due {
                    let Some(Place { tenant, aor, key }) = expiry.remove(&at) else {
                        continue;
                    };
                    let Some(aors) = bindings.get_mut(&tenant) else {
                        continue;
                    };
                    if let Some(held) = aors.get_mut(&aor) {
                        if let Some(h) = held.remove(&key) {
                            taken.push(h.binding);
                        }
                        if held.is_empty() {
                            aors.remove(&aor);
                        }
                    }
                    if aors.is_empty() {
                        bindings.remove(&tenant);
                    }
                }
            }
            Ok(taken)
        })
    }

    fn all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for shard in self.shards.iter() {
                let m = lock(shard);
                all.extend(
                    m.bindings
                        .get(tenant)
                        .into_iter()
                        .flat_map(|aors| aors.values())
                        .flat_map(|b| b.values().map(|h| Binding::clone(&h.binding))),
                );
            }
            Ok(all)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(aor: &str, key: &str, expires_at_ms: u64) -> Binding {
        Binding {
            aor: aor.into(),
            dn: "1001".into(),
            contact: key.into(),
            params: String::new(),
            key: key.into(),
            q: None,
            expires_at_ms,
            call_id: "c".into(),
            cseq: 1,
            source: "127.0.0.1:5062".parse().expect("addr"),
            transport: "udp".into(),
            user_agent: None,
        }
    }

    fn changes(upserts: Vec<Binding>, removals: &[&str]) -> Changes {
        Changes {
            upserts: upserts.into_iter().map(Arc::new).collect(),
            removals: removals.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn save_load_and_sweep() {
        let store = MemoryBindings::default();
        let aor = "sip:1001@demo.local";
        store
            .save(
                "demo",
                aor,
                changes(
                    vec![binding(aor, "sip:a", 100), binding(aor, "sip:b", 300)],
                    &[],
                ),
            )
            .await
            .expect("save");
        store
            .save("other", aor, changes(vec![binding(aor, "sip:z", 50)], &[]))
            .await
            .expect("save");
        assert_eq!(store.load("demo", aor).await.expect("load").len(), 2);
        // A refresh moves the binding's expiry: the sweep must not take it at the old time.
        store
            .save("demo", aor, changes(vec![binding(aor, "sip:a", 400)], &[]))
            .await
            .expect("refresh");
        let taken = store.take_expired("demo", 350, 10).await.expect("sweep");
        let keys: Vec<_> = taken.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["sip:b"], "only demo's binding past its time");
        assert_eq!(
            store.take_expired("demo", 350, 10).await.expect("sweep"),
            []
        );
        assert_eq!(store.all("other").await.expect("all").len(), 1);
        store
            .save("demo", aor, changes(vec![], &["sip:a"]))
            .await
            .expect("remove");
        assert!(store.all("demo").await.expect("all").is_empty());
        assert_eq!(
            store.take_expired("demo", 1_000, 10).await.expect("sweep"),
            []
        );
    }
}
