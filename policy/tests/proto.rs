//! The `warden.v1` messages are generated from `proto/warden/v1/*.proto` with prost. The output is
//! checked in (`policy/src/generated/warden.v1.rs`) so that building Warden needs no protobuf
//! compiler; this test generates it again and fails when the copy differs from the `.proto`
//! files. `WARDEN_BLESS=1 cargo test -p warden-policy --test proto` rewrites the copy.

use std::path::Path;

const PROTOS: [&str; 2] = ["warden/v1/ledger.proto", "warden/v1/quota.proto"];

#[test]
fn the_generated_messages_are_those_of_the_proto_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = protox::compile(PROTOS, [root.join("../proto")]).expect("the .proto files compile");
    let out = std::env::temp_dir().join(format!("warden-proto-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("a temporary folder");
    prost_build::Config::new().out_dir(&out).compile_fds(files).expect("prost generates the messages");
    let generated = std::fs::read_to_string(out.join("warden.v1.rs")).expect("prost wrote warden.v1.rs");
    let checked_in = root.join("src/generated/warden.v1.rs");
    if std::env::var_os("WARDEN_BLESS").is_some() {
        std::fs::write(&checked_in, &generated).expect("the copy is writable");
    }
    let copy = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        copy == generated,
        "{} differs from what proto/ generates; run WARDEN_BLESS=1 cargo test -p warden-policy --test proto",
        checked_in.display()
    );
}
