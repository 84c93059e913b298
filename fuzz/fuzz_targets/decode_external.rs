//! Every postcard and JSON decoding of external input (contexts, configs,
//! close codes, handles, operations) on arbitrary bytes: no panic, and
//! whatever decodes is valid. See `userlane_tests::external`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    userlane_tests::external::check(data);
});
