//! Compiles podgraft's own control API (proto/) with tonic. Needs `protoc` (Debian's
//! protobuf-compiler, installed by hack/install-deps.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // For `podgraft ... -o json`.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        // Credentials and env values must never reach logs through Debug (prost ignores
        // `debug_redact`): these get redacting Debug impls in src/lib.rs.
        .skip_debug([
            ".podgraft.v1alpha1.RegistryAuth",
            ".podgraft.v1alpha1.KeyValue",
        ])
        .compile_protos(&["proto/podgraft/v1alpha1/control.proto"], &["proto"])?;
    // The standard health service, for gRPC probes (client) and their tests (server).
    tonic_prost_build::configure()
        .compile_protos(&["proto/grpc/health/v1/health.proto"], &["proto"])?;
    Ok(())
}
