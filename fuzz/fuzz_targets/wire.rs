//! Protobuf wire helpers (podgraft::wire) on arbitrary messages.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podgraft::fuzzing::wire(data));
