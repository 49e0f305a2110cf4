//! Generates Rust code for the protos in `proto/`.
//!
//! `madsim-tonic-build` writes two versions of every file: the real tonic one
//! into `$OUT_DIR/` and the simulator one into `$OUT_DIR/sim/`;
//! `tonic::include_proto!` (madsim-tonic) picks the right one by `cfg(madsim)`.

use std::path::PathBuf;

const PROTOS: &[&str] =
    &["kv.proto", "auth.proto", "rpc.proto", "v3lock.proto", "v3election.proto", "peer.proto", "internal.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No system protoc is needed: use the vendored binary. prost-build reads
    // PROTOC. (`set_var` is a safe fn in edition 2021, and a build script's
    // main thread is the only one running here.)
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| dir.join(p)).collect();

    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    // With the `grpc` feature: messages, clients and servers. Without it: the messages alone,
    // into `$OUT_DIR/messages/`, so that the sans-IO engine can use them without pulling in
    // tonic, hyper or tokio.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    let mut config = tonic_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        // Every protobuf `bytes` field, in every message, is `bytes::Bytes`.
        .bytes(["."])
        .emit_rerun_if_changed(false);
    if !grpc {
        let out = PathBuf::from(std::env::var("OUT_DIR")?).join("messages");
        std::fs::create_dir_all(&out)?;
        config = config.out_dir(out);
    }
    config.compile_protos(&files, &[dir])?;
    Ok(())
}
