//! Arbitrary bytes as a response body under every content coding (and stacks of two), decoded
//! with a small cap. Checks that nothing panics and that a decoded body never exceeds the cap.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shadow_core::encoding::{Coding, decode};

const CODINGS: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];
const CAP: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let first = CODINGS[usize::from(selector & 3)];
    let codings: Vec<Coding> = if selector & 4 == 0 {
        vec![first]
    } else {
        vec![CODINGS[usize::from((selector >> 3) & 3)], first]
    };
    if let Ok(decoded) = decode(&codings, Bytes::copy_from_slice(body), CAP) {
        assert!(decoded.len() <= CAP, "{} bytes over the cap", decoded.len());
    }
});
