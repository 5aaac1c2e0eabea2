//! Randomness from the OS: ids of play log rows and runs, shuffle seeds.

use chrono::Utc;

/// `N` random bytes from the OS.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Without OS randomness nothing about the machine can be trusted; ids still
    // need to differ, so fall back to the clock's nanoseconds rather than fail.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = nanos[i % nanos.len()] ^ (i as u8);
        }
    }
    bytes
}
