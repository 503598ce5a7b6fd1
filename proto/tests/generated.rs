//! The generated code is committed so a build needs no protoc; this test regenerates it and
//! fails when the committed copy has drifted from the .proto files.

use std::path::PathBuf;

#[test]
fn generated_code_is_current() {
    // At run time, not compile time: a build cache shared by several checkouts must not point
    // a test at another checkout.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let out = tempfile::tempdir().expect("temp dir");
    prost_build::Config::new()
        .out_dir(out.path())
        .compile_protos(&[root.join("events.proto")], &[&root])
        .expect("protoc runs (install protobuf-compiler)");
    let fresh = std::fs::read_to_string(out.path().join("switchboard.events.v1.rs"))
        .expect("generated file");
    let committed_path = root.join("src/gen/switchboard.events.v1.rs");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if fresh != committed {
        if std::env::var_os("SWITCHBOARD_BLESS").is_some() {
            std::fs::write(&committed_path, &fresh).expect("write generated code");
        } else {
            panic!(
                "{} is out of date; run `SWITCHBOARD_BLESS=1 cargo test -p switchboard-proto` and commit it",
                committed_path.display()
            );
        }
    }
}
