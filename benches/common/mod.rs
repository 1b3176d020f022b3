//! Work items shared by the benches.

use std::hint::black_box;

/// The standard splitmix64 finalizer (Steele, Lea and Flood): a bijection.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// About `rounds` dependent splitmix64 steps of busy work.
#[inline]
pub fn busy(item: u64, rounds: u64) -> u64 {
    let mut x = item;
    for _ in 0..rounds {
        x = splitmix64(black_box(x));
    }
    x
}
