#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hotline::fuzz_targets::sip_message(data));
