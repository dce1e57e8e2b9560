//! Calls Version and Status on a CRI socket and prints the answers: a quick "is it serving?" check
//! for hack/up.sh.
//!
//!     cargo run --example cri-ping -- /run/podgraft/podgraft.sock

use k8s_cri::v1 as cri;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/run/podgraft/podgraft.sock".into());
    let channel = podgraft::client::uds_channel(std::path::Path::new(&path)).await?;
    let mut client = cri::runtime_service_client::RuntimeServiceClient::new(channel);
    let v = client
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await?
        .into_inner();
    println!(
        "Version: {} {} (CRI {})",
        v.runtime_name, v.runtime_version, v.runtime_api_version
    );
    let status = client
        .status(cri::StatusRequest { verbose: false })
        .await?
        .into_inner();
    for c in status.status.map(|s| s.conditions).unwrap_or_default() {
        println!("Status: {} = {}", c.r#type, c.status);
    }
    Ok(())
}
