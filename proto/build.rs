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
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    if !grpc {
        let out = out_dir.join("messages");
        std::fs::create_dir_all(&out)?;
        config = config.out_dir(out);
    }
    // With the `json` feature: protoc also writes the descriptors, from which pbjson-build
    // generates the proto3 JSON mapping (serde impls) of the client-facing packages.
    #[cfg(feature = "json")]
    let descriptors = out_dir.join("descriptors.bin");
    #[cfg(feature = "json")]
    {
        config = config.file_descriptor_set_path(&descriptors);
    }
    config.compile_protos(&files, &[dir])?;
    #[cfg(feature = "json")]
    json(&descriptors, &out_dir.join("json"))?;
    Ok(())
}

/// serde impls in the proto3 JSON mapping as etcd's gateway (grpc-gateway v1 with
/// `JSONPb{OrigName: true}`) speaks it: proto field names on output (both spellings accepted on
/// input), 64-bit integers as strings, bytes as base64 (into `bytes::Bytes`, through
/// `From<Vec<u8>>`), enums by name, default values left out, unknown fields ignored.
#[cfg(feature = "json")]
fn json(descriptors: &std::path::Path, out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let set = std::fs::read(descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .out_dir(out)
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;
    Ok(())
}
