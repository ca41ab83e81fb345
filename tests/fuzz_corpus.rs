//! The fuzz corpus (`fuzz/corpus/TARGET/`: seeds, and every crash once found) replayed
//! through the fuzzed functions on the stable toolchain. Cheap, and a regression of a
//! crash the fuzzer found once fails here.

use hotline::fuzz_targets;
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // Each input, and every prefix of the short ones (truncation is the commonest bug).
        run(&data);
        if data.len() <= 2048 {
            for cut in 0..data.len() {
                run(&data[..cut]);
            }
        }
        n += 1;
    }
    assert!(n > 0, "no corpus in {}", dir.display());
}

#[test]
fn sip_message_corpus() {
    replay("sip_message", fuzz_targets::sip_message);
}

#[test]
fn tcp_framing_corpus() {
    replay("tcp_framing", fuzz_targets::tcp_framing);
}

#[test]
fn sdp_corpus() {
    replay("sdp", fuzz_targets::sdp);
}

#[test]
fn digest_corpus() {
    replay("digest", fuzz_targets::digest);
}

#[test]
fn rtp_corpus() {
    replay("rtp", fuzz_targets::rtp);
}
