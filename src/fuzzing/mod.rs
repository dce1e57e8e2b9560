//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), and the replay of their seeds and
//! findings as unit tests. Only with the `testing` feature (or in tests).
//!
//! Each entry point takes arbitrary bytes and must never panic: malformed input is an error for
//! the code under test, not a crash. Beyond "no panic", each checks properties that hold for every
//! input, so a fuzzer finds wrong answers too, not only crashes:
//!
//! - [`wire`]: the protobuf wire helpers (`crate::wire`): fields tile the message, keeping every
//!   entry or rewriting nothing returns the message unchanged, dropping leaves a well-formed
//!   message, varints round-trip.
//! - [`hide`]: what the relay runs over every kubelet response: the unary and stream hiding
//!   filters, the event filter, gRPC framing (`MessageDecoder`, `FrameScanner`) and the streaming
//!   `FieldMask`, which must give the same bytes under any chunking and agree with
//!   `wire::retain_repeated` once its padding is ignored.
//! - [`control_spec`]: an `AddContainersRequest` as the control API receives it: conversion,
//!   request checks, `harden` and `admit` against fixed pods; whatever is admitted never holds
//!   more than the pod's containers (the no-escalation rules, restated), and its spec survives
//!   the API and the stored-annotation round trips; growth stays within the ledger's budget.
//!
//! Inputs that once crashed live in `fuzz/regressions/<target>/` and are replayed here, with the
//! committed seed corpus (`fuzz/seeds/<target>/`), by `cargo nextest run`.

mod control_target;
mod hide_target;
mod mutate;
mod seeds;
mod wire_target;

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use k8s_cri::v1 as cri;
use prost::Message;

use crate::api;
use crate::control::convert;
use crate::dynamic::admission::caps::{self, CapName};
use crate::dynamic::admission::security::{self, APPARMOR_RUNTIME_DEFAULT};
use crate::dynamic::admission::{self, Limits, PodFacts, TakenNames};
use crate::dynamic::lifecycle::stored_spec::SpecCodec;
use crate::dynamic::lifecycle::translate;
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::keys::DYNAMIC_LABEL;
use crate::dynamic::model::kubelet::{MASKED_PATHS, Qos, READONLY_PATHS};
use crate::dynamic::model::security::{
    ContainerSecurity, Effective, ImageUser, PodSecurity, SandboxSecurity, SeccompFact,
};
use crate::dynamic::model::spec::Profile;
use crate::dynamic::resources::{Bounds, Ledger, growth_of};
use crate::server::grpc::{FrameScanner, MessageDecoder, PREFIX_LEN};
use crate::server::hide;
use crate::server::mask::{FieldMask, Masker, PAD_FIELD};
use crate::wire::{self, WireError};

pub use control_target::control_spec;
pub use hide_target::hide;
pub use mutate::{ByteMutator, mutate_control_spec};
pub use seeds::seeds;
pub use wire_target::wire;

#[allow(unused_imports)]
use {control_target::*, hide_target::*, mutate::*, seeds::*, wire_target::*};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and the corpus directories.
pub const TARGETS: [(&str, Target); 3] = [
    ("wire", wire),
    ("hide", hide),
    ("control_spec", control_spec),
];

#[cfg(test)]
mod tests;
