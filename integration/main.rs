//! Integration tests: podgraft in front of a real containerd + runc that the harness starts itself.

mod access;
mod clients;
mod containerd_restart;
mod crash;
mod cri_cli;
mod dynamic;
mod gc;
mod growth;
mod grpc_go;
mod harness;
mod hiding_stress;
mod host_paths;
mod observe;
mod pod;
mod probes;
mod registry;
mod relay_flow;
mod security;
mod spans;
