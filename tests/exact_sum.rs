//! `jobs::exact_sum` is the correctly rounded sum of its values, checked
//! against big-integer arithmetic, and the same bits over every entry point,
//! input kind and worker count.

use std::cmp::Ordering;

use mapreduce::jobs::{self, ExactSum};
use mapreduce::prelude::*;
use proptest::prelude::*;

/// A non-negative integer of 36 64-bit words, enough for any sum of fewer
/// than 2^200 finite `f64`s counted in units of 2^-1074.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big([u64; 36]);

impl Big {
    fn zero() -> Big {
        Big([0; 36])
    }

    /// `x · 2^shift`.
    fn shifted(x: u64, shift: u32) -> Big {
        let mut big = Big::zero();
        let (word, bit) = ((shift / 64) as usize, shift % 64);
        big.0[word] = x << bit;
        if bit > 0 {
            big.0[word + 1] = x >> (64 - bit);
        }
        big
    }

    /// `|x| / 2^-1074`: every finite `f64` is a whole number of units.
    fn units(x: f64) -> Big {
        let bits = x.to_bits() & !(1 << 63);
        let (exp, mantissa) = (bits >> 52, bits & ((1 << 52) - 1));
        if exp == 0 {
            Big::shifted(mantissa, 0)
        } else {
            Big::shifted(mantissa | 1 << 52, exp as u32 - 1)
        }
    }

    fn add(&self, other: &Big) -> Big {
        let mut sum = Big::zero();
        let mut carry = false;
        for i in 0..36 {
            let (s, c1) = self.0[i].overflowing_add(other.0[i]);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            sum.0[i] = s;
            carry = c1 || c2;
        }
        assert!(!carry, "Big overflow");
        sum
    }

    /// `self - other`, for `self >= other`.
    fn sub(&self, other: &Big) -> Big {
        let mut difference = Big::zero();
        let mut borrow = false;
        for i in 0..36 {
            let (d, b1) = self.0[i].overflowing_sub(other.0[i]);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            difference.0[i] = d;
            borrow = b1 || b2;
        }
        assert!(!borrow, "Big underflow");
        difference
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

/// Whether `got` is the correctly rounded sum of `values` (IEEE 754 round
/// to nearest, ties to even, with IEEE's special values and zero signs),
/// checked from the definition: the exact sum lies closer to `got` than to
/// either neighbouring `f64`.
fn correctly_rounded(values: &[f64], got: f64) -> Result<(), String> {
    let has = |x: f64| values.iter().any(|v| v.to_bits() == x.to_bits());
    let nan = values.iter().any(|v| v.is_nan()) || (has(f64::INFINITY) && has(f64::NEG_INFINITY));
    let fail = |why: &str| Err(format!("{got:e} ({:#x}): {why}", got.to_bits()));
    if nan {
        return if got.is_nan() { Ok(()) } else { fail("expected NaN") };
    }
    for infinity in [f64::INFINITY, f64::NEG_INFINITY] {
        if has(infinity) {
            return if got == infinity {
                Ok(())
            } else {
                fail("expected an infinity")
            };
        }
    }
    let (mut positive, mut negative) = (Big::zero(), Big::zero());
    for &v in values {
        if v.is_sign_negative() {
            negative = negative.add(&Big::units(v));
        } else {
            positive = positive.add(&Big::units(v));
        }
    }
    let (magnitude, negative_sum) = match positive.cmp(&negative) {
        Ordering::Equal => {
            let all_negative_zeros = values.iter().all(|v| v.to_bits() == (-0.0f64).to_bits());
            let zero = if all_negative_zeros { -0.0f64 } else { 0.0 };
            return if got.to_bits() == zero.to_bits() {
                Ok(())
            } else {
                fail(&format!("expected {zero:?}"))
            };
        }
        Ordering::Greater => (positive.sub(&negative), false),
        Ordering::Less => (negative.sub(&positive), true),
    };
    if got.is_nan() || got.is_sign_negative() != negative_sum {
        return fail("wrong sign");
    }
    let got = got.abs();
    // 2^1024 in units, the first value past f64::MAX were the exponent
    // unbounded: the infinity's place in rounding (its significand is even).
    let beyond_max = Big::shifted(1, 2098);
    let units = |x: f64| {
        if x.is_infinite() {
            beyond_max.clone()
        } else {
            Big::units(x)
        }
    };
    let twice = magnitude.add(&magnitude);
    let even = got.to_bits() % 2 == 0;
    // Below the midpoint with the next f64 down (or on it, for an even `got`).
    if got.to_bits() > 0 {
        let low = units(got).add(&units(f64::from_bits(got.to_bits() - 1)));
        match twice.cmp(&low) {
            Ordering::Less => return fail("too large"),
            Ordering::Equal if !even => return fail("a tie rounded to odd"),
            _ => {}
        }
    }
    if got.is_finite() {
        let high = units(got).add(&units(f64::from_bits(got.to_bits() + 1)));
        match twice.cmp(&high) {
            Ordering::Greater => return fail("too small"),
            Ordering::Equal if !even => return fail("a tie rounded to odd"),
            _ => {}
        }
    }
    Ok(())
}

fn exact(values: &[f64]) -> f64 {
    values.iter().copied().collect::<ExactSum>().to_f64()
}

fn assert_exact(values: &[f64], expected: f64) {
    let got = exact(values);
    assert_eq!(
        got.to_bits(),
        expected.to_bits(),
        "{values:?}: {got:?}, expected {expected:?}"
    );
    correctly_rounded(values, got).unwrap();
}

#[test]
fn the_reference_rejects_wrong_answers() {
    let values = [1e100, 1.0, -1e100];
    correctly_rounded(&values, 1.0).unwrap();
    for wrong in [0.0, -0.0, 1.0 + f64::EPSILON, 1.0 - f64::EPSILON / 2.0, -1.0, f64::NAN] {
        assert!(correctly_rounded(&values, wrong).is_err(), "{wrong:?}");
    }
    // 2^53 + 1: a tie between 2^53 and 2^53 + 2, to the even 2^53.
    let tie = [2f64.powi(53), 1.0];
    correctly_rounded(&tie, 2f64.powi(53)).unwrap();
    assert!(correctly_rounded(&tie, 2f64.powi(53) + 2.0).is_err());
    assert!(correctly_rounded(&[f64::MAX, f64::MAX], f64::MAX).is_err());
    assert!(correctly_rounded(&[-0.0, 0.0], -0.0).is_err());
    assert!(correctly_rounded(&[], 0.0).is_err());
}

#[test]
fn known_sums() {
    assert_exact(&[1e100, 1.0, -1e100], 1.0);
    assert_exact(&[1.0, 1e100, 1.0, -1e100], 2.0);
    assert_exact(&[0.1; 10], 1.0); // a loop gives 0.9999999999999999
                                   // Powers of two over the whole range: 2^-1074 + ... + 2^0 = 2 - 2^-1074.
    let powers: Vec<f64> = (-1074..=0).map(|k| 2f64.powi(k)).collect();
    assert_exact(&powers, 2.0);
    let powers: Vec<f64> = (-52..=0).map(|k| 2f64.powi(k)).collect();
    assert_exact(&powers, 2.0 - f64::EPSILON);
    // ... + 2^1023 = 2^1024 - 2^-1074: past f64::MAX by more than half an ulp.
    let powers: Vec<f64> = (-1074..=1023).map(|k| 2f64.powi(k)).collect();
    assert_exact(&powers, f64::INFINITY);
    // Values over 600 orders of magnitude, each cancelled by its negation
    // somewhere else, around a few known ones.
    let mut values: Vec<f64> = (-300..=300).map(|k| 1.2345 * 10f64.powi(k)).collect();
    values.extend(values.clone().iter().rev().map(|x| -x));
    values.splice(400..400, [0.5, 2f64.powi(-60), 3.0]);
    assert_exact(&values, 3.5);
    values.push(2f64.powi(-60)); // 3.5 + 2^-59: still 3.5
    assert_exact(&values, 3.5);
    // Subnormals.
    assert_exact(&[f64::from_bits(1); 1000], f64::from_bits(1000));
    assert_exact(
        &[f64::MIN_POSITIVE - f64::from_bits(1), f64::from_bits(1)],
        f64::MIN_POSITIVE,
    );
    assert_exact(
        &[f64::MIN_POSITIVE, -f64::from_bits(1), 1e-310, -1e-310],
        f64::from_bits(0xf_ffff_ffff_ffff),
    );
    // Near f64::MAX: partial sums past it, sums that are not.
    assert_exact(&[f64::MAX, f64::MAX, -f64::MAX], f64::MAX);
    assert_exact(&[-f64::MAX, -f64::MAX, f64::MAX, f64::MAX, f64::MAX], f64::MAX);
    assert_exact(&[f64::MAX, f64::MAX], f64::INFINITY);
    assert_exact(&[-f64::MAX, -f64::MAX], f64::NEG_INFINITY);
    assert_exact(&[f64::MAX, 2f64.powi(970)], f64::INFINITY); // the tie goes to even: 2^1024
    assert_exact(&[f64::MAX, 2f64.powi(969)], f64::MAX);
    // Zeros.
    assert_exact(&[], -0.0);
    assert_exact(&[-0.0], -0.0);
    assert_exact(&[-0.0; 100], -0.0);
    assert_exact(&[-0.0, 0.0], 0.0);
    assert_exact(&[1.0, -1.0], 0.0);
    assert_exact(&[-1.0, 1.0, -0.0], 0.0);
    // Infinities and NaN.
    assert_exact(&[f64::INFINITY, 1.0, -f64::MAX, -f64::MAX], f64::INFINITY);
    assert_exact(&[f64::NEG_INFINITY, f64::MAX, f64::MAX], f64::NEG_INFINITY);
    assert!(exact(&[f64::INFINITY, f64::NEG_INFINITY]).is_nan());
    assert!(exact(&[1.0, f64::NAN, f64::INFINITY]).is_nan());
    assert!(exact(&[-f64::NAN]).is_nan());
}

/// 200,000 values with heavy cancellation, whose float sum changes with
/// the grouping.
fn hard_values() -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..200_000)
        .map(|i| {
            let r = next();
            let magnitude = f64::from_bits((r >> 12) | 0x3ff0_0000_0000_0000) * 10f64.powi((r % 61) as i32 - 30);
            if i % 2 == 0 {
                magnitude
            } else {
                -magnitude * 0.999
            }
        })
        .collect()
}

#[test]
fn the_same_bits_over_every_entry_point_and_worker_count() {
    let values = hard_values();
    let expected = exact(&values);
    correctly_rounded(&values, expected).unwrap();
    let job = jobs::exact_sum(|x: f64, _: &()| x);
    let by_ref = jobs::exact_sum(|x: &f64, _: &()| *x);
    let indices: Vec<usize> = (0..values.len()).collect();
    type Run<'a> = Box<dyn Fn() -> ExactSum + Sync + 'a>;
    let runs: Vec<(&str, Run)> = vec![
        (
            "par_map_reduce",
            Box::new(|| par_map_reduce(&values, &(), &by_ref).unwrap()),
        ),
        (
            "par_map_reduce, filtered (unindexed)",
            Box::new(|| {
                values
                    .par_iter()
                    .filter(|x| **x != 0.5)
                    .map_reduce(&(), &by_ref)
                    .unwrap()
            }),
        ),
        (
            "par_map_reduce, flat_map (unindexed)",
            Box::new(|| {
                indices
                    .par_chunks(997)
                    .flat_map_iter(|chunk| chunk.iter().map(|&i| values[i]))
                    .map_reduce(&(), &job)
                    .unwrap()
            }),
        ),
        (
            "par_map_reduce_in_order",
            Box::new(|| par_map_reduce_in_order(&values, &(), &by_ref).unwrap()),
        ),
        (
            "par_map_reduce_iter",
            Box::new(|| par_map_reduce_iter(values.iter().copied(), &(), &job).unwrap()),
        ),
        (
            "seq_map_reduce",
            Box::new(|| seq_map_reduce(&values, &(), &by_ref).unwrap()),
        ),
        (
            "seq_map_reduce, reversed",
            Box::new(|| seq_map_reduce(values.iter().rev(), &(), &by_ref).unwrap()),
        ),
    ];
    let base = Config::current().with_progress_bars(false);
    let configs = [
        base.clone().with_workers(1),
        base.clone().with_workers(2),
        base.clone().with_workers(1).with_deterministic(false),
        base.clone().with_workers(2).with_deterministic(false),
        base.with_parallel(false),
    ];
    for config in configs {
        for (name, run) in &runs {
            let sum = config.clone().scope(run);
            assert_eq!(
                sum.to_f64().to_bits(),
                expected.to_bits(),
                "{name}, {config:?}: {:?} against {expected:?}",
                sum.to_f64()
            );
        }
    }
}

/// A random `f64` of one of several kinds.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        // Any finite value, over the whole exponent range.
        3 => any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |x| x.is_finite()),
        3 => -1e6..1e6f64,
        // Subnormals and the smallest normals.
        1 => (0..1u64 << 53, any::<bool>()).prop_map(|(bits, neg)| if neg { -f64::from_bits(bits) } else { f64::from_bits(bits) }),
        // Near f64::MAX.
        1 => (0..1000u64, any::<bool>()).prop_map(|(down, neg)| {
            let x = f64::from_bits(f64::MAX.to_bits() - down);
            if neg { -x } else { x }
        }),
        // Integers and halves, for exact ties.
        1 => (-64..64i32).prop_map(|n| f64::from(n) / 2.0),
        1 => Just(-0.0),
        1 => Just(0.0),
    ]
}

/// Finite values, half of them cancelled by their negations, in random order.
fn finite_values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        proptest::collection::vec(value(), 0..120),
        (
            proptest::collection::vec(value(), 0..60),
            proptest::collection::vec(value(), 0..6)
        )
            .prop_map(|(cancelled, kept)| {
                let mut values: Vec<f64> = cancelled.iter().flat_map(|&x| [x, -x]).collect();
                values.extend(kept);
                values
            })
            .prop_shuffle(),
    ]
}

/// Finite values, with infinities and NaNs put in.
fn values_with_specials() -> impl Strategy<Value = Vec<f64>> {
    let special = prop_oneof![
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(-f64::NAN)
    ];
    (
        finite_values(),
        proptest::collection::vec((special, 0..1000usize), 1..3),
    )
        .prop_map(|(mut values, specials)| {
            for (x, at) in specials {
                values.insert(at % (values.len() + 1), x);
            }
            values
        })
}

fn check_everywhere(values: &[f64]) -> Result<(), TestCaseError> {
    let sum = exact(values);
    if let Err(why) = correctly_rounded(values, sum) {
        return Err(TestCaseError::fail(format!("{values:?}: {why}")));
    }
    let same = |other: f64| other.to_bits() == sum.to_bits() || (other.is_nan() && sum.is_nan());
    let job = jobs::exact_sum(|x: &f64, _: &()| *x);
    let config = Config::current().with_workers(2).with_progress_bars(false);
    let parallel = config
        .clone()
        .scope(|| values.par_iter().filter(|_| true).map_reduce(&(), &job))
        .unwrap();
    prop_assert!(
        same(parallel.to_f64()),
        "filtered, 2 workers: {:?} against {:?}",
        parallel.to_f64(),
        sum
    );
    let in_order = config.scope(|| par_map_reduce_in_order(values, &(), &job)).unwrap();
    prop_assert!(same(in_order.to_f64()));
    prop_assert!(same(exact(&values.iter().rev().copied().collect::<Vec<_>>())));
    // Merging the sums of two parts is exact too.
    let (left, right) = values.split_at(values.len() / 3);
    let mut merged: ExactSum = left.iter().copied().collect();
    merged.merge(&right.iter().copied().collect());
    prop_assert!(same(merged.to_f64()));
    prop_assert_eq!(merged, values.iter().copied().collect::<ExactSum>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    #[test]
    fn finite_sums_are_correctly_rounded_everywhere(values in finite_values()) {
        check_everywhere(&values)?;
    }

    #[test]
    fn special_values_follow_ieee_addition(values in values_with_specials()) {
        check_everywhere(&values)?;
    }
}
