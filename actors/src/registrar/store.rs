//! Bindings in memory: the [`BindingStore`] a node uses without Redis.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::messages::registrar::{Binding, BindingStore, Changes};
use crate::store::StoreFuture;

/// Bindings in this process, lost when it stops.
#[derive(Clone, Debug, Default)]
pub struct MemoryBindings {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    /// (tenant, aor) -> key -> binding
    bindings: HashMap<(String, String), HashMap<String, Binding>>,
    /// (expires_at_ms, tenant, aor, key), to find expired bindings without a scan.
    expiry: BTreeSet<(u64, String, String, String)>,
}

impl MemoryBindings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BindingStore for MemoryBindings {
    fn load<'a>(&'a self, tenant: &'a str, aor: &'a str) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let m = self.lock();
            Ok(m.bindings
                .get(&(tenant.to_owned(), aor.to_owned()))
                .map(|b| b.values().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn save<'a>(
        &'a self,
        tenant: &'a str,
        aor: &'a str,
        changes: &'a Changes,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut m = self.lock();
            let Memory { bindings, expiry } = &mut *m;
            let id = (tenant.to_owned(), aor.to_owned());
            let held = bindings.entry(id.clone()).or_default();
            for key in &changes.removals {
                if let Some(old) = held.remove(key) {
                    expiry.remove(&(old.expires_at_ms, id.0.clone(), id.1.clone(), key.clone()));
                }
            }
            for b in &changes.upserts {
                if let Some(old) = held.insert(b.key.clone(), b.clone()) {
                    expiry.remove(&(old.expires_at_ms, id.0.clone(), id.1.clone(), b.key.clone()));
                }
                expiry.insert((b.expires_at_ms, id.0.clone(), id.1.clone(), b.key.clone()));
            }
            if held.is_empty() {
                bindings.remove(&id);
            }
            Ok(())
        })
    }

    fn take_expired<'a>(
        &'a self,
        tenant: &'a str,
        now_ms: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let mut m = self.lock();
            let Memory { bindings, expiry } = &mut *m;
            let due: Vec<_> = expiry
                .iter()
                .take_while(|(at, ..)| *at <= now_ms)
                .filter(|(_, t, ..)| t == tenant)
                .take(limit)
                .cloned()
                .collect();
            let mut taken = Vec::with_capacity(due.len());
            for entry in due {
                expiry.remove(&entry);
                let (_, t, aor, key) = entry;
                let id = (t, aor);
                if let Some(held) = bindings.get_mut(&id) {
                    if let Some(b) = held.remove(&key) {
                        taken.push(b);
                    }
                    if held.is_empty() {
                        bindings.remove(&id);
                    }
                }
            }
            Ok(taken)
        })
    }

    fn all<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let m = self.lock();
            Ok(m.bindings
                .iter()
                .filter(|((t, _), _)| t == tenant)
                .flat_map(|(_, b)| b.values().cloned())
                .collect())
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
            upserts,
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
                &changes(
                    vec![binding(aor, "sip:a", 100), binding(aor, "sip:b", 300)],
                    &[],
                ),
            )
            .await
            .expect("save");
        store
            .save("other", aor, &changes(vec![binding(aor, "sip:z", 50)], &[]))
            .await
            .expect("save");
        assert_eq!(store.load("demo", aor).await.expect("load").len(), 2);
        // A refresh moves the binding's expiry: the sweep must not take it at the old time.
        store
            .save("demo", aor, &changes(vec![binding(aor, "sip:a", 400)], &[]))
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
            .save("demo", aor, &changes(vec![], &["sip:a"]))
            .await
            .expect("remove");
        assert!(store.all("demo").await.expect("all").is_empty());
        assert_eq!(
            store.take_expired("demo", 1_000, 10).await.expect("sweep"),
            []
        );
    }
}
