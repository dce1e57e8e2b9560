//! Integration tests: podgraft in front of a real containerd + runc that the harness starts itself.

mod clients;
mod dynamic;
mod growth;
mod grpc_go;
mod harness;
mod host_paths;
mod pod;
mod registry;
mod relay_flow;
