//! Integration tests: podgraft in front of a real containerd + runc that the harness starts itself.

mod access;
mod clients;
mod dynamic;
mod gc;
mod growth;
mod grpc_go;
mod harness;
mod hiding_stress;
mod host_paths;
mod pod;
mod registry;
mod relay_flow;
mod security;
