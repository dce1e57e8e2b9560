//! Compiles podgraft's own control API (proto/) with tonic. Needs `protoc` (Debian's
//! protobuf-compiler, installed by hack/install-deps.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // For `podgraft ... -o json`.
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_protos(&["proto/podgraft/v1alpha1/control.proto"], &["proto"])?;
    Ok(())
}
