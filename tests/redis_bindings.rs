//! 1,000 DNs register with digest authentication against a node that keeps its bindings in
//! Redis; they refresh, survive a restart of switchboard, and unregister. Redis holds exactly
//! the live bindings at each step, and every change is an event on the tenant's stream. The
//! phones are those of `sipload`, the load client in `benches/`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use redis::Commands;
use support::{Server, Udp, register, with_credentials};
use switchboard_benches::load::{Phones, Round};
use switchboard_sip::HeaderName;

const FIRST: u32 = 3000;
const COUNT: u32 = 1000;

fn config() -> String {
    let mut c = String::from("[[tenants]]\nname = \"demo\"\ndomain = \"demo.local\"\n");
    for dn in FIRST..FIRST + COUNT {
        c.push_str(&format!(
            "[[tenants.dns]]\nnumber = \"{dn}\"\npassword = \"pw{dn}\"\n"
        ));
    }
    c
}

/// Registers every DN once with `expires` (0 unregisters), each from its own phone, through
/// the full challenge; returns the final statuses.
fn register_all(
    runtime: &tokio::runtime::Runtime,
    phones: &Phones,
    number: u32,
    expires: u32,
) -> Vec<Option<u16>> {
    let round = Round {
        domain: "demo.local".into(),
        dns: (FIRST..FIRST + COUNT).map(|dn| dn.to_string()).collect(),
        password: Some("pw{dn}".into()),
        expires,
        number,
        timeout: Duration::from_secs(10),
    };
    runtime.block_on(phones.run(&round)).outcomes
}

fn bindings_in_redis(conn: &mut redis::Connection) -> HashMap<String, usize> {
    let keys: Vec<String> = conn.keys("sb:{demo}:reg:*").expect("keys");
    keys.into_iter()
        .map(|k| {
            let n: usize = conn.hlen(&k).expect("hlen");
            (k, n)
        })
        .collect()
}

#[test]
fn a_thousand_dns_register_refresh_survive_a_restart_and_unregister() {
    let url = support::redis_db(3);
    let mut conn = support::redis(&url);
    let config = config();
    let server = Server::start_with_config(Some(&config), &["--redis", &url]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let phones = runtime
        .block_on(Phones::bind(server.sip, COUNT as usize))
        .expect("phones");
    let all_ok = |statuses: &[Option<u16>]| statuses.iter().all(|&s| s == Some(200));

    let statuses = register_all(&runtime, &phones, 1, 600);
    assert!(all_ok(&statuses), "{statuses:?}\n{}", server.log_text());
    let held = bindings_in_redis(&mut conn);
    assert_eq!(held.len(), COUNT as usize);
    assert!(held.values().all(|&n| n == 1));
    let expiring: usize = conn.zcard("sb:{demo}:reg-expiry").expect("zcard");
    assert_eq!(expiring, COUNT as usize);

    // Refresh: same contacts, nothing added.
    let statuses = register_all(&runtime, &phones, 2, 900);
    assert!(all_ok(&statuses), "{statuses:?}");
    assert_eq!(bindings_in_redis(&mut conn).len(), COUNT as usize);

    // A restart of switchboard loses nothing: a phone's query lists its binding.
    let server = server.restart(Some(&config), &["--redis", &url]);
    let phone = Udp::new(server.sip);
    let dn = (FIRST + 7).to_string();
    let challenge = phone.request(register(&dn, phone.port(), "after-restart", 1, "").as_bytes());
    let query = with_credentials(
        &register(&dn, phone.port(), "after-restart", 2, ""),
        &challenge,
        &dn,
        &format!("pw{dn}"),
        1,
    );
    let listed = phone.request(query.as_bytes());
    assert_eq!(listed.status, 200);
    let contact = listed
        .headers
        .get(&HeaderName::Contact)
        .expect("binding survived");
    let registered_from = phones.contact_of(7).expect("phone address");
    assert!(
        contact.starts_with(&format!("<sip:{dn}@{registered_from}>")),
        "{contact}"
    );
    assert_eq!(bindings_in_redis(&mut conn).len(), COUNT as usize);

    // Unregister: Redis is left with nothing.
    let statuses = register_all(&runtime, &phones, 3, 0);
    assert!(all_ok(&statuses), "{statuses:?}");
    assert!(bindings_in_redis(&mut conn).is_empty());
    let expiring: usize = conn.zcard("sb:{demo}:reg-expiry").expect("zcard");
    assert_eq!(expiring, 0);

    // Every change is on the stream, numbered per address of record.
    let entries = support::stream_entries(&mut conn, "sb:{demo}:voice-registrar");
    assert_eq!(entries.len(), 3 * COUNT as usize);
    let key = format!("demo:sip:{dn}@demo.local");
    let mine: Vec<(String, String)> = entries
        .iter()
        .filter(|f| f.get("key") == Some(&key))
        .map(|f| (f["kind"].clone(), f["seq"].clone()))
        .collect();
    assert_eq!(
        mine,
        [
            ("BindingAdded".to_owned(), "1".to_owned()),
            ("BindingRefreshed".to_owned(), "2".to_owned()),
            ("BindingRemoved".to_owned(), "3".to_owned()),
        ]
    );
}

#[test]
fn bindings_expire_by_themselves_and_say_so() {
    let url = support::redis_db(4);
    let mut conn = support::redis(&url);
    let config = "[registrar]\nmin_expires = 1\nsweep_interval_ms = 100\n";
    let server = Server::start_with_config(Some(config), &["--redis", &url]);
    let phone = Udp::new(server.sip);
    let port = phone.port();
    let contact = format!("Contact: <sip:1004@127.0.0.1:{port}>;expires=1\r\n");
    let challenge = phone.request(register("1004", port, "short", 1, &contact).as_bytes());
    let ok = phone.request(
        with_credentials(
            &register("1004", port, "short", 2, &contact),
            &challenge,
            "1004",
            "demo1004",
            1,
        )
        .as_bytes(),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(bindings_in_redis(&mut conn).len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let kinds = loop {
        let kinds: Vec<String> = support::stream_entries(&mut conn, "sb:{demo}:voice-registrar")
            .into_iter()
            .map(|f| f["kind"].clone())
            .collect();
        if kinds.len() >= 2 || std::time::Instant::now() > deadline {
            break kinds;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        kinds,
        ["BindingAdded", "BindingExpired"],
        "{}",
        server.log_text()
    );
    assert!(bindings_in_redis(&mut conn).is_empty());
}

/// A node upgraded from a version before the hash tags finds its keys under their old names
/// (`sb:demo:...`): it renames them at start, so the bindings, the event streams and their
/// numbering carry on, and no key is left under an old name.
#[test]
fn an_earlier_versions_keys_are_renamed_at_start_and_keep_their_bindings() {
    let url = support::redis_db(41);
    let mut conn = support::redis(&url);
    let mut server = Server::start(&["--redis", &url]);
    let phone = Udp::new(server.sip);
    assert_eq!(
        support::register_with(&phone, "1005", "demo1005", "before-upgrade"),
        200
    );
    server.terminate();
    // What the earlier version left: the same keys without braces.
    let tagged: Vec<String> = conn.keys("sb:{demo}:*").expect("keys");
    assert!(
        tagged.iter().any(|k| k.starts_with("sb:{demo}:reg:")),
        "{tagged:?}"
    );
    for key in &tagged {
        let old = key.replace("sb:{demo}:", "sb:demo:");
        let _: () = conn.rename(key, &old).expect("rename");
    }

    let server = Server::start(&["--redis", &url]);
    let phone = Udp::new(server.sip);
    let challenge =
        phone.request(register("1005", phone.port(), "after-upgrade", 1, "").as_bytes());
    let query = with_credentials(
        &register("1005", phone.port(), "after-upgrade", 2, ""),
        &challenge,
        "1005",
        "demo1005",
        1,
    );
    let listed = phone.request(query.as_bytes());
    assert_eq!(listed.status, 200);
    assert!(
        listed.headers.get(&HeaderName::Contact).is_some(),
        "the binding made before the upgrade is listed: {}",
        server.log_text()
    );
    // GES's request stream alone keeps its old name (GES may still write it; it is read too).
    let left: Vec<String> = conn.keys("sb:demo:*").expect("keys");
    assert_eq!(
        left,
        ["sb:demo:ges-callbacks"],
        "keys under their old names"
    );
    assert_eq!(bindings_in_redis(&mut conn).len(), 1);
    // The registrar's stream went on where it was: the binding's one event, then none for a
    // query.
    let kinds: Vec<String> = support::stream_entries(&mut conn, "sb:{demo}:voice-registrar")
        .into_iter()
        .map(|f| f["kind"].clone())
        .collect();
    assert_eq!(kinds, ["BindingAdded"]);
}
