//! An arbitrary AddContainersRequest through conversion and admission.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podgraft::fuzzing::control_spec(data));
