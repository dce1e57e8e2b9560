//! An arbitrary AddContainersRequest through conversion and admission.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podgraft::fuzzing::control_spec(data));

// Mostly structure-aware: decode, set fields to values that matter, encode (src/fuzzing/).
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    podgraft::fuzzing::mutate_control_spec(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
});
