//! `switchboard config import` and `export` against the harness's PostgreSQL, and a node that
//! takes its tenants from there: a tenant exported and imported again is the same tenant, to
//! the byte of its TOML, and a phone registers as a DN that only PostgreSQL knows. Also how a
//! node is started: refused without tenants, and its logs as text or JSON.

mod support;

use std::collections::BTreeMap;

use support::{Server, Udp, register_with, switchboard};

#[derive(serde::Deserialize)]
struct Tenants {
    tenants: Vec<toml::Value>,
}

fn tenants(text: &str) -> Vec<toml::Value> {
    toml::from_str::<Tenants>(text)
        .expect("tenants TOML")
        .tenants
}

#[test]
fn export_then_import_reproduces_the_tenant_exactly() {
    let url = support::postgres_db("sb_cli_roundtrip");
    let dir = tempfile::tempdir().expect("temp dir");
    let example = support::manifest_dir().join("examples/node.toml");

    // The example node file imports as it is: its [[tenants]] go in, the rest is not read.
    let (status, err) = import(&url, &example);
    assert!(status.success(), "{err}");

    let (status, shared, err) =
        switchboard(&["config", "export", "--tenant", "acme", "--postgres", &url]);
    assert!(status.success(), "{err}");
    assert!(!shared.contains("password"), "{shared}");
    assert!(err.contains("--with-secrets"), "{err}");
    let export = ["config", "export", "--tenant", "acme", "--with-secrets"];
    let (status, exported, err) = switchboard(&[&export[..], &["--postgres", &url]].concat());
    assert!(status.success(), "{err}");
    let original: BTreeMap<String, toml::Value> =
        toml::from_str(&std::fs::read_to_string(&example).expect("example")).expect("toml");
    let original_acme = original["tenants"].as_array().expect("tenants")[0].clone();
    let mut exported_acme = tenants(&exported).remove(0);
    // Defaults the example leaves out come back written out.
    let table = exported_acme.as_table_mut().expect("table");
    assert_eq!(table.remove("wrap_up_secs"), Some(toml::Value::Integer(0)));
    for dn in table["dns"].as_array_mut().expect("dns") {
        let dn = dn.as_table_mut().expect("dn");
        if dn.get("type") == Some(&toml::Value::String("extension".into())) {
            dn.remove("type");
        }
    }
    for rp in table["routing_points"].as_array().expect("rps") {
        assert!(rp.get("timeout_secs").is_some());
    }
    let mut expected = original_acme.clone();
    let expected_dns = expected["dns"].as_array_mut().expect("dns");
    expected_dns[1].as_table_mut().expect("dn").remove("type");
    assert_eq!(exported_acme, expected);

    // Exported text, imported again, exports to the same text.
    let file = dir.path().join("acme.toml");
    std::fs::write(&file, &exported).expect("write");
    let (status, err) = import(&url, &file);
    assert!(status.success(), "{err}");
    let (_, again, _) = switchboard(&[&export[..], &["--postgres", &url]].concat());
    assert_eq!(again, exported);
}

#[test]
fn import_refuses_an_invalid_tenant_and_says_which_field() {
    let url = support::postgres_db("sb_cli_invalid");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[tenants]]\nname = \"bad\"\ndomain = \"bad.example\"\n\
         [[tenants.dns]]\nnumber = \"100\"\npassword = \"x\"\n\
         [[tenants.places]]\nname = \"desk\"\ndns = [\"101\"]\n",
    )
    .expect("write");
    let (status, err) = import(&url, &file);
    assert!(!status.success());
    assert!(
        err.contains("places[0].dns[0]") && err.contains("\"101\""),
        "{err}"
    );
    let (status, _, err) = switchboard(&["config", "export", "--postgres", &url]);
    assert!(status.success(), "{err}");
    let (status, _, err) =
        switchboard(&["config", "export", "--tenant", "bad", "--postgres", &url]);
    assert!(
        !status.success() && err.contains("no tenant named \"bad\""),
        "{err}"
    );
}

#[test]
fn a_node_on_postgresql_registers_a_dn_only_postgresql_knows() {
    let url = support::postgres_db("sb_cli_serve");
    let dir = tempfile::tempdir().expect("temp dir");
    import_tenants(
        &url,
        &dir,
        "[[tenants]]\nname = \"lab\"\ndomain = \"demo.local\"\ndigest = [\"MD5\"]\n\
         [[tenants.dns]]\nnumber = \"4711\"\npassword = \"from-postgres\"\n",
    );

    let server = Server::start(&["--postgres", &url]);
    let phone = Udp::new(server.sip);
    assert_eq!(
        register_with(&phone, "4711", "from-postgres", "pg-a"),
        200,
        "{}",
        server.log_text()
    );
    // The demo tenant is not there: its DNs are unknown.
    assert_eq!(register_with(&phone, "1001", "demo1001", "pg-b"), 401);
}

/// A node file with no tenants and no PostgreSQL is refused with what to add; the demo tenant
/// it may ask for instead listens on loopback only, unless `--expose-demo` says otherwise.
#[test]
fn a_node_without_tenants_is_refused_and_the_demo_stays_on_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node.toml");
    let serve = |text: &str, extra: &[&str]| {
        std::fs::write(&file, text).expect("write");
        let file = file.to_str().expect("utf-8 path");
        let (status, _, err) = switchboard(&[&["serve", "--config", file][..], extra].concat());
        (status, err)
    };
    let (status, err) = serve("[sip]\nlisten = \"127.0.0.1:0\"\n", &[]);
    assert!(!status.success());
    assert!(
        err.contains("no tenants configured")
            && err.contains("[[tenants]]")
            && err.contains("[stores] postgres"),
        "{err}"
    );
    let public = "demo = true\n[sip]\nlisten = \"0.0.0.0:0\"\n";
    let (status, err) = serve(public, &[]);
    assert!(!status.success());
    assert!(
        err.contains("0.0.0.0:0 ([sip] listen)") && err.contains("--expose-demo"),
        "{err}"
    );
    // With no configuration at all the same holds for the address given by flag.
    let (status, _, err) = switchboard(&["serve", "--grpc-listen", "0.0.0.0:0"]);
    assert!(!status.success());
    assert!(err.contains("([grpc] listen)"), "{err}");
}

/// `switchboard config import FILE --postgres URL`: its status and standard error.
/// A node's log written to a file has no colour codes; with `--log-format json` every line is
/// one JSON object, the message and fields inside.
#[test]
fn a_log_file_is_plain_text_or_json_lines_on_request() {
    let text = Server::start(&[]).log_text();
    assert!(text.contains("switchboard ready"), "{text}");
    assert!(!text.contains('\x1b'), "colour codes in a file: {text}");

    let server = Server::start(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = server
        .log_text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let ready = lines
        .iter()
        .find(|l| l["fields"]["message"] == "switchboard ready")
        .expect("the ready line");
    assert_eq!(ready["level"], "INFO");
    assert!(ready["fields"]["sip_udp"].is_string(), "{ready}");
    assert!(ready["timestamp"].is_string(), "{ready}");
}

fn import(url: &str, file: &std::path::Path) -> (std::process::ExitStatus, String) {
    let file = file.to_str().expect("utf-8 path");
    let (status, _, err) = switchboard(&["config", "import", file, "--postgres", url]);
    (status, err)
}

/// Imports `text` (a TOML of [[tenants]]) into the database at `url`, which must succeed.
fn import_tenants(url: &str, dir: &tempfile::TempDir, text: &str) {
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, text).expect("write");
    let (status, err) = import(url, &file);
    assert!(status.success(), "{err}");
}

#[test]
fn a_change_committed_in_postgresql_reaches_the_running_node() {
    let url = support::postgres_db("sb_live_reload");
    let dir = tempfile::tempdir().expect("temp dir");
    let import = |text: &str| import_tenants(&url, &dir, text);
    let lab = "[[tenants]]\nname = \"lab\"\ndomain = \"demo.local\"\ndigest = [\"MD5\"]\n\
               [[tenants.dns]]\nnumber = \"4711\"\npassword = \"one\"\n";
    import(lab);
    let server = Server::start(&["--postgres", &url]);
    let phone = Udp::new(server.sip);
    assert_eq!(register_with(&phone, "4711", "one", "live-1"), 200);
    assert_eq!(register_with(&phone, "4712", "new", "live-2"), 401);
    let ready = support::http_get(server.http, "/readyz").expect("http");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    // A new password for 4711 and a new DN 4712, committed while the node runs.
    import(
        "[[tenants]]\nname = \"lab\"\ndomain = \"demo.local\"\ndigest = [\"MD5\"]\n\
         [[tenants.dns]]\nnumber = \"4711\"\npassword = \"two\"\n\
         [[tenants.dns]]\nnumber = \"4712\"\npassword = \"new\"\n",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut attempt = 0;
    while register_with(&phone, "4712", "new", &format!("live-3-{attempt}")) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new DN did not reach the node:\n{}",
            server.log_text()
        );
        attempt += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(register_with(&phone, "4711", "one", "live-4"), 401);
    assert_eq!(register_with(&phone, "4711", "two", "live-5"), 200);
    assert!(server.log_text().contains("tenant configuration changed"));
}

#[test]
fn without_postgresql_the_node_serves_its_last_snapshot_and_catches_up_after() {
    let url = support::postgres_db("sb_outage");
    let dir = tempfile::tempdir().expect("temp dir");
    let import = |text: &str| import_tenants(&url, &dir, text);
    let tenant = |dns: &str| {
        format!("[[tenants]]\nname = \"lab\"\ndomain = \"demo.local\"\ndigest = [\"MD5\"]\n{dns}")
    };
    import(&tenant(
        "[[tenants.dns]]\nnumber = \"4711\"\npassword = \"one\"\n",
    ));
    let relay = support::Relay::start(support::postgres_addr(&url));
    let server = Server::start(&["--postgres", &support::via(&url, relay.addr)]);
    let phone = Udp::new(server.sip);

    relay.cut();
    let ready = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = support::http_get(server.http, "/readyz").unwrap_or_default();
            if r.starts_with(want) {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "readyz stays {r}\n{}",
                server.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let not_ready = ready("HTTP/1.1 503");
    assert!(not_ready.contains("postgresql"), "{not_ready}");
    // The last snapshot still serves.
    assert_eq!(register_with(&phone, "4711", "one", "out-1"), 200);

    // A change committed while the node cannot see it arrives once PostgreSQL is back.
    import(&tenant(
        "[[tenants.dns]]\nnumber = \"4711\"\npassword = \"one\"\n\
         [[tenants.dns]]\nnumber = \"4713\"\npassword = \"later\"\n",
    ));
    assert_eq!(register_with(&phone, "4713", "later", "out-2"), 401);
    relay.restore();
    ready("HTTP/1.1 200");
    assert_eq!(
        register_with(&phone, "4713", "later", "out-3"),
        200,
        "{}",
        server.log_text()
    );
}
