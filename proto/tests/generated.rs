//! The generated code is committed so a build needs no protoc; this test regenerates it and
//! fails when the committed copy has drifted from the .proto files.

use std::path::{Path, PathBuf};

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
    tonic_prost_build::configure()
        .out_dir(out.path())
        .file_descriptor_set_path(out.path().join("provisioning.bin"))
        .compile_protos(
            &[root.join("provisioning.proto")],
            std::slice::from_ref(&root),
        )
        .expect("protoc runs (install protobuf-compiler)");
    // The voice API refers to the event schema generated above rather than a second copy.
    tonic_prost_build::configure()
        .out_dir(out.path())
        .extern_path(".switchboard.events.v1", "crate::events")
        .file_descriptor_set_path(out.path().join("voice.bin"))
        .compile_protos(&[root.join("voice.proto")], std::slice::from_ref(&root))
        .expect("protoc runs (install protobuf-compiler)");
    // The bus between nodes, on the same event schema.
    prost_build::Config::new()
        .out_dir(out.path())
        .extern_path(".switchboard.events.v1", "crate::events")
        .compile_protos(&[root.join("bus.proto")], std::slice::from_ref(&root))
        .expect("protoc runs (install protobuf-compiler)");
    let stale: Vec<String> = [
        "switchboard.events.v1.rs",
        "switchboard.provisioning.v1.rs",
        "provisioning.bin",
        "switchboard.voice.v1.rs",
        "voice.bin",
        "switchboard.bus.v1.rs",
    ]
    .into_iter()
    .filter(|file| !current(&out.path().join(file), &root.join("src/gen").join(file)))
    .map(String::from)
    .collect();
    assert!(
        stale.is_empty(),
        "src/gen/{stale:?} out of date; run `SWITCHBOARD_BLESS=1 cargo test -p switchboard-proto` and commit"
    );
}

/// Whether `committed` holds what was just generated in `fresh`; blessing writes it.
fn current(fresh: &Path, committed: &Path) -> bool {
    let fresh = std::fs::read(fresh).expect("generated file");
    if std::fs::read(committed).is_ok_and(|c| c == fresh) {
        return true;
    }
    if std::env::var_os("SWITCHBOARD_BLESS").is_some() {
        std::fs::write(committed, &fresh).expect("write generated code");
        return true;
    }
    false
}
