//! The relay's hiding filters, gRPC framing and streaming masks on arbitrary kubelet responses.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podgraft::fuzzing::hide(data));
