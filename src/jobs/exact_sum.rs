//! Exact, order-free sums of `f64`s: [`ExactSum`] and the [`exact_sum`] job.
//!
//! The accumulator is a fixed-point "superaccumulator" (Neal's small
//! superaccumulator, arXiv:1505.05571): 67 signed 64-bit limbs, limb `i`
//! weighing `2^(32 i - 1075)`, cover every finite `f64` and far more than
//! any sum of fewer than 2^64 of them. A value's 53-bit significand, shifted
//! by the low 5 bits of its exponent, lands in two adjacent limbs; the limbs
//! have 11 bits of headroom, so carries are propagated only every 2047
//! additions. The limbs hold the sum exactly, so any order of additions and
//! merges gives the same value, rounded once at the end.

use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow::{self, Continue};

use super::Signature;
use crate::job::MapReduce;

/// How many limbs: 64 for the high 6 bits of the exponent, one for the top
/// of the highest significand, two for carries.
const LIMBS: usize = 67;
/// Bits per limb in the canonical form; the rest of the `i64` is headroom.
const LIMB_BITS: u32 = 32;
const LIMB_MASK: i64 = (1 << LIMB_BITS) - 1;
/// Additions between carry propagations: each adds less than `2^52` in
/// magnitude to a limb that starts below `2^33`, so 2046 of them keep it
/// below `2^63` (with room for the carry of the propagation itself).
const ADDS_PER_PROPAGATION: u32 = 2046;
const MANTISSA_BITS: u32 = 52;
const MANTISSA_MASK: u64 = (1 << MANTISSA_BITS) - 1;
const EXP_MASK: u64 = 0x7ff;
const NEGATIVE_ZERO: u64 = 0x8000_0000_0000_0000;
/// A deserialized top limb must be below this in magnitude (`2^1098`, far
/// beyond any sum of `2^64` finite values), so merges cannot overflow it.
#[cfg(any(feature = "mpi", feature = "durable"))]
const TOP_LIMB_BOUND: i64 = 1 << 61;

/// The exact sum of any number of `f64`s, rounded once, correctly, when
/// read: the accumulator of [`exact_sum`], usable on its own too.
///
/// **Exact** means: [`to_f64`](Self::to_f64) returns the sum of all the
/// values added (and of all the sums merged in), computed without any
/// rounding error and then rounded once to the nearest `f64`, ties to even
/// (IEEE 754's correctly rounded sum). So the answer does not depend on the
/// order of the values or on how they were grouped: the same bits on any
/// machine, over any split of the input, any worker count, any leaf size.
/// [`merge`](Self::merge) is exact too, so `ExactSum` is a true monoid.
///
/// The special values follow IEEE addition: a NaN anywhere gives NaN (the
/// canonical [`f64::NAN`], whatever the payloads); `+inf` and `-inf`
/// together give NaN; otherwise an infinity gives itself. A sum of finite
/// values whose exact result is beyond `f64::MAX` rounds to `±inf` as IEEE
/// rounding says, but partial sums never overflow: `[f64::MAX, f64::MAX,
/// -f64::MAX]` sums to `f64::MAX`. An exact zero is `-0.0` when every value
/// was `-0.0` (and for no values at all, as with `Iterator::sum`), else
/// `+0.0`. Exact for any count of values below 2^64.
///
/// Cost: an addition is a handful of integer operations on two limbs (a
/// carry pass over the 67 limbs every 2046 additions); a merge and a
/// [`to_f64`](Self::to_f64) are a few passes over the limbs. The limbs
/// live on the heap (536 bytes), so the accumulator itself moves cheaply.
///
/// ```
/// use mapreduce::jobs::ExactSum;
///
/// let mut sum = ExactSum::new();
/// for x in [1e100, 1.0, -1e100] {
///     sum.add(x);
/// }
/// assert_eq!(sum.to_f64(), 1.0); // a plain loop gives 0.0
///
/// let tenths: ExactSum = std::iter::repeat(0.1).take(10).collect();
/// assert_eq!(tenths.to_f64(), 1.0); // a plain loop gives 0.9999999999999999
/// ```
#[derive(Clone)]
pub struct ExactSum {
    /// The sum of the finite values, `Σ limbs[i] · 2^(32 i − 1075)`.
    limbs: Box<[i64; LIMBS]>,
    /// Additions left before the limbs must be propagated.
    adds_left: u32,
    /// Whether a `+inf`, a `-inf`, a NaN was added.
    positive_infinity: bool,
    negative_infinity: bool,
    nan: bool,
    /// Whether every value added was `-0.0` (true when none was).
    only_negative_zeros: bool,
}

impl ExactSum {
    /// An empty sum (its value is `-0.0`, the identity of IEEE addition).
    ///
    /// ```
    /// let empty = mapreduce::jobs::ExactSum::new();
    /// assert!(empty.to_f64() == 0.0 && empty.to_f64().is_sign_negative());
    /// ```
    pub fn new() -> ExactSum {
        ExactSum {
            limbs: Box::new([0; LIMBS]),
            adds_left: ADDS_PER_PROPAGATION,
            positive_infinity: false,
            negative_infinity: false,
            nan: false,
            only_negative_zeros: true,
        }
    }

    /// Add `x`, exactly.
    ///
    /// ```
    /// let mut sum = mapreduce::jobs::ExactSum::new();
    /// sum.add(f64::MAX);
    /// sum.add(f64::MAX); // beyond f64::MAX for now, and still exact
    /// sum.add(-f64::MAX);
    /// assert_eq!(sum.to_f64(), f64::MAX);
    /// ```
    #[inline]
    pub fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        self.only_negative_zeros &= bits == NEGATIVE_ZERO;
        let exp = (bits >> MANTISSA_BITS) & EXP_MASK;
        if exp == EXP_MASK {
            self.add_special(x);
            return;
        }
        if self.adds_left == 0 {
            self.propagate();
        }
        self.adds_left -= 1;
        // Subnormals (and zeros) have no implicit bit and the exponent of
        // the smallest normals.
        let implicit = u64::from(exp != 0) << MANTISSA_BITS;
        let mantissa = (bits & MANTISSA_MASK) | implicit;
        let exp = exp.max(1);
        let low_exp = (exp & 31) as u32;
        let limb = (exp >> 5) as usize;
        // `mantissa << low_exp` spans up to 84 bits: the low 32 go to
        // `limb`, the rest (below 2^52) to `limb + 1`.
        let low = ((mantissa << low_exp) & LIMB_MASK as u64) as i64;
        let high = (mantissa >> (LIMB_BITS - low_exp)) as i64;
        // 0 for a positive value, -1 for a negative one: `(v ^ s) - s` is
        // `v` or `-v` without a branch.
        let sign = (bits as i64) >> 63;
        self.limbs[limb] += (low ^ sign) - sign;
        self.limbs[limb + 1] += (high ^ sign) - sign;
    }

    #[cold]
    fn add_special(&mut self, x: f64) {
        if x.is_nan() {
            self.nan = true;
        } else if x > 0.0 {
            self.positive_infinity = true;
        } else {
            self.negative_infinity = true;
        }
    }

    /// Add all of `other` into `self`, exactly: the result is the sum of
    /// both sets of values.
    ///
    /// ```
    /// use mapreduce::jobs::ExactSum;
    ///
    /// let mut left: ExactSum = [0.1, 1e300].into_iter().collect();
    /// let right: ExactSum = [-1e300, 0.2].into_iter().collect();
    /// left.merge(&right);
    /// assert_eq!(left.to_f64(), 0.30000000000000004); // 0.1 + 0.2 in f64, exactly rounded
    /// assert_eq!(left, [0.2, 0.1, -1e300, 1e300].into_iter().collect::<ExactSum>());
    /// ```
    pub fn merge(&mut self, other: &ExactSum) {
        self.propagate();
        let mut other_limbs = other.limbs.clone();
        propagate(&mut other_limbs);
        for (limb, add) in self.limbs.iter_mut().zip(other_limbs.iter()) {
            *limb += add;
        }
        self.propagate();
        self.positive_infinity |= other.positive_infinity;
        self.negative_infinity |= other.negative_infinity;
        self.nan |= other.nan;
        self.only_negative_zeros &= other.only_negative_zeros;
    }

    /// The sum, correctly rounded to the nearest `f64` (ties to even).
    ///
    /// ```
    /// use mapreduce::jobs::ExactSum;
    ///
    /// // 2^53 + 1 lies halfway between two f64s: ties go to the even one.
    /// let sum: ExactSum = [9007199254740992.0, 1.0].into_iter().collect();
    /// assert_eq!(sum.to_f64(), 9007199254740992.0);
    /// let sum: ExactSum = [9007199254740992.0, 1.0, 1e-300].into_iter().collect();
    /// assert_eq!(sum.to_f64(), 9007199254740994.0);
    /// let sum: ExactSum = [f64::INFINITY, 1.0, f64::NEG_INFINITY].into_iter().collect();
    /// assert!(sum.to_f64().is_nan());
    /// ```
    pub fn to_f64(&self) -> f64 {
        if self.nan || (self.positive_infinity && self.negative_infinity) {
            return f64::NAN;
        }
        if self.positive_infinity {
            return f64::INFINITY;
        }
        if self.negative_infinity {
            return f64::NEG_INFINITY;
        }
        let mut limbs = self.limbs.clone();
        propagate(&mut limbs);
        let negative = limbs[LIMBS - 1] < 0;
        if negative {
            for limb in limbs.iter_mut() {
                *limb = -*limb;
            }
            propagate(&mut limbs);
        }
        let magnitude = match limbs.iter().rposition(|&limb| limb != 0) {
            None if self.only_negative_zeros => return -0.0,
            None => return 0.0,
            // At least 2^(32·66 − 1075) = 2^1037: beyond every f64.
            Some(top) if top == LIMBS - 1 => f64::INFINITY,
            Some(top) => round(&limbs, top),
        };
        if negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// Bring every limb but the top one into `[0, 2^32)`.
    fn propagate(&mut self) {
        propagate(&mut self.limbs);
        self.adds_left = ADDS_PER_PROPAGATION;
    }

    /// The limbs in canonical form, with the flags: equal for equal sums.
    fn canonical(&self) -> (Box<[i64; LIMBS]>, [bool; 4]) {
        let mut limbs = self.limbs.clone();
        propagate(&mut limbs);
        let flags = [
            self.positive_infinity,
            self.negative_infinity,
            self.nan,
            self.only_negative_zeros,
        ];
        (limbs, flags)
    }
}

/// Carry every limb's bits above the 32nd into the next limb: all limbs but
/// the top one end in `[0, 2^32)`, and the top one holds the sign.
fn propagate(limbs: &mut [i64; LIMBS]) {
    for i in 0..LIMBS - 1 {
        let carry = limbs[i] >> LIMB_BITS;
        limbs[i] &= LIMB_MASK;
        limbs[i + 1] += carry;
    }
}

/// The non-negative value of canonical `limbs`, whose highest non-zero limb
/// is `top` (below the top limb, so every limb used is below 2^32), rounded to the nearest `f64`, ties to even.
fn round(limbs: &[i64; LIMBS], top: usize) -> f64 {
    // The value is `M · 2^-1075` with `M` the integer the limbs spell. The
    // result keeps the bits of `M` from `shift` up, `shift` being the
    // length of `M` less 53 (a full significand) but at least 1 (the
    // subnormals' quantum, `2^-1074`).
    let length = LIMB_BITS as usize * top + (64 - limbs[top].leading_zeros() as usize);
    let shift = length.saturating_sub(53).max(1);
    // A window of up to four limbs holding the kept bits and the first
    // dropped one (at least 43 bits of the window lie below the significand);
    // `sticky` says whether any bit below the window is set.
    let base = top.saturating_sub(3);
    let window = limbs[base..=top]
        .iter()
        .rev()
        .fold(0u128, |window, &limb| (window << LIMB_BITS) | limb as u128);
    let sticky = limbs[..base].iter().any(|&limb| limb != 0);
    let shift_in_window = shift - LIMB_BITS as usize * base;
    let kept = (window >> shift_in_window) as u64;
    let dropped = window & ((1u128 << shift_in_window) - 1);
    let half = 1u128 << (shift_in_window - 1);
    let round_up = dropped > half || (dropped == half && (sticky || kept & 1 == 1));
    let significand = kept + u64::from(round_up);
    // `significand · 2^(shift − 1075)`: with the exponent field `shift − 1`
    // added to a significand that carries its implicit bit, a round up to
    // 2^53 moves into the next binade, and a subnormal (shift 1, below
    // 2^52) keeps a zero exponent field.
    let bits = ((shift as u64 - 1) << MANTISSA_BITS) + significand;
    if bits >= f64::INFINITY.to_bits() {
        f64::INFINITY
    } else {
        f64::from_bits(bits)
    }
}

impl Default for ExactSum {
    fn default() -> ExactSum {
        ExactSum::new()
    }
}

/// Equal when the sums are: the same exact value and the same special
/// values and zero sign, however the values were grouped.
impl PartialEq for ExactSum {
    fn eq(&self, other: &ExactSum) -> bool {
        self.canonical() == other.canonical()
    }
}

impl Eq for ExactSum {}

impl fmt::Debug for ExactSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (limbs, _) = self.canonical();
        let nonzero: Vec<(usize, i64)> = limbs
            .iter()
            .enumerate()
            .filter(|(_, &limb)| limb != 0)
            .map(|(i, &limb)| (i, limb))
            .collect();
        f.debug_struct("ExactSum")
            .field("value", &self.to_f64())
            .field("limbs", &nonzero)
            .field("positive_infinity", &self.positive_infinity)
            .field("negative_infinity", &self.negative_infinity)
            .field("nan", &self.nan)
            .field("only_negative_zeros", &self.only_negative_zeros)
            .finish()
    }
}

impl Extend<f64> for ExactSum {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, values: I) {
        for x in values {
            self.add(x);
        }
    }
}

impl FromIterator<f64> for ExactSum {
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> ExactSum {
        let mut sum = ExactSum::new();
        sum.extend(values);
        sum
    }
}

/// What travels between ranks (feature `mpi`): the canonical limbs and the
/// flags, checked on arrival.
#[cfg(any(feature = "mpi", feature = "durable"))]
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    limbs: Vec<i64>,
    positive_infinity: bool,
    negative_infinity: bool,
    nan: bool,
    only_negative_zeros: bool,
}

#[cfg(any(feature = "mpi", feature = "durable"))]
impl serde::Serialize for ExactSum {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (limbs, [positive_infinity, negative_infinity, nan, only_negative_zeros]) = self.canonical();
        Wire {
            limbs: limbs.to_vec(),
            positive_infinity,
            negative_infinity,
            nan,
            only_negative_zeros,
        }
        .serialize(serializer)
    }
}

#[cfg(any(feature = "mpi", feature = "durable"))]
impl<'de> serde::Deserialize<'de> for ExactSum {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ExactSum, D::Error> {
        use serde::de::Error;

        let wire = Wire::deserialize(deserializer)?;
        let limbs: Box<[i64; LIMBS]> = wire
            .limbs
            .into_boxed_slice()
            .try_into()
            .map_err(|limbs: Box<[i64]>| D::Error::invalid_length(limbs.len(), &"67 limbs"))?;
        let (top, rest) = limbs.split_last().expect("67 limbs");
        if rest.iter().any(|limb| !(0..=LIMB_MASK).contains(limb)) || !(-TOP_LIMB_BOUND..TOP_LIMB_BOUND).contains(top) {
            return Err(D::Error::custom("an ExactSum's limbs out of range"));
        }
        Ok(ExactSum {
            limbs,
            adds_left: ADDS_PER_PROPAGATION,
            positive_infinity: wire.positive_infinity,
            negative_infinity: wire.negative_infinity,
            nan: wire.nan,
            only_negative_zeros: wire.only_negative_zeros,
        })
    }
}

/// Sums `map(item)` exactly; made by [`exact_sum`].
///
/// ```
/// let job = mapreduce::jobs::exact_sum(|x: f64, _: &()| x);
/// assert_eq!(mapreduce::seq_map_reduce([0.1, 0.2, -0.3], &(), job).unwrap().to_f64(), 2.7755575615628914e-17);
/// ```
pub struct ExactSumJob<F, T, C: ?Sized> {
    map: F,
    _types: Signature<T, C, f64>,
}

/// A job that sums `map(item, ctx)` exactly: its answer is an [`ExactSum`],
/// whose [`to_f64`](ExactSum::to_f64) is the correctly rounded sum of all
/// the values.
///
/// **Order-free.** The limbs hold the sum without rounding error, so the
/// answer is the same bits over any parallel iterator (indexed or not: a
/// `filter`, a `par_bridge`), any split, any leaf size, any worker count,
/// any MPI rank count, and equal to [`seq_map_reduce`](crate::seq_map_reduce)'s:
/// the merge law holds exactly. Where [`sum`](super::sum) of `f64`s changes
/// its last bits with the grouping, this does not, and it is also more
/// accurate: `[1e100, 1.0, -1e100]` sums to `1.0`. NaN, infinities, signed
/// zeros and overflow behave as [`ExactSum`] says.
///
/// **Cost.** A few integer operations per value more than a float addition;
/// on items that cost next to nothing to compute, the run takes at most
/// about 3× as long as [`sum`](super::sum)'s (BENCHMARKS.md), and on items
/// of real work the difference vanishes. Each stretch of items allocates
/// one 536-byte accumulator.
///
/// ```
/// use mapreduce::{jobs, par_map_reduce, Config};
/// use rayon::prelude::*;
///
/// let values: Vec<f64> = (1..=100_000).map(|i| 1.0 / f64::from(i)).collect();
/// let job = jobs::exact_sum(|x: &f64, _: &()| *x);
/// let exact = par_map_reduce(&values, &(), &job).unwrap().to_f64();
/// // The same bits on one worker, over an unindexed iterator, and in order.
/// let one_worker = Config::current().with_workers(1).scope(|| par_map_reduce(&values, &(), &job));
/// assert_eq!(one_worker.unwrap().to_f64().to_bits(), exact.to_bits());
/// let filtered = par_map_reduce(values.par_iter().filter(|x| **x > 0.0), &(), &job).unwrap();
/// assert_eq!(filtered.to_f64().to_bits(), exact.to_bits());
/// let reversed = mapreduce::seq_map_reduce(values.iter().rev(), &(), &job).unwrap();
/// assert_eq!(reversed.to_f64().to_bits(), exact.to_bits());
/// ```
pub fn exact_sum<T, C: ?Sized, F: Fn(T, &C) -> f64 + Sync>(map: F) -> ExactSumJob<F, T, C> {
    ExactSumJob {
        map,
        _types: PhantomData,
    }
}

impl<T, C: ?Sized, F: Fn(T, &C) -> f64 + Sync> MapReduce<T, C> for ExactSumJob<F, T, C> {
    type Output = f64;
    type Acc = ExactSum;

    fn empty_result(&self, _: &C) -> ExactSum {
        ExactSum::new()
    }
    fn compute(&self, item: T, ctx: &C) -> f64 {
        (self.map)(item, ctx)
    }
    fn process_result(&self, new: f64, mut acc: ExactSum) -> ControlFlow<ExactSum, ExactSum> {
        acc.add(new);
        Continue(acc)
    }
    fn merge(&self, mut left: ExactSum, right: ExactSum) -> ControlFlow<ExactSum, ExactSum> {
        left.merge(&right);
        Continue(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::check_merge_law;

    /// Bit patterns that reach every kind of `f64`: zeros, subnormals, the
    /// smallest and largest normals, values near 1, infinities and NaNs.
    fn interesting() -> Vec<f64> {
        let mut values = vec![
            0.0,
            -0.0,
            f64::from_bits(1),
            f64::from_bits(2),
            f64::from_bits(3),
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE - f64::from_bits(1),
            f64::from_bits(f64::MIN_POSITIVE.to_bits() + 1),
            1.0,
            1.0 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
            0.5,
            3.0,
            2f64.powi(53),
            2f64.powi(-53),
            2f64.powi(970),
            2f64.powi(971),
            f64::MAX,
            f64::from_bits(f64::MAX.to_bits() - 1),
            1e100,
            1e-300,
            0.1,
            f64::INFINITY,
            f64::NAN,
        ];
        // Every exponent field, with a few significands.
        for exp in (0..2047u64).step_by(31).chain([1, 2, 31, 32, 33, 2045, 2046]) {
            for mantissa in [0, 1, 0x8_0000_0000_0000, MANTISSA_MASK, 0x5555_5555_5555] {
                values.push(f64::from_bits(exp << 52 | mantissa));
            }
        }
        let negated: Vec<f64> = values.iter().map(|x| -x).collect();
        values.extend(negated);
        values
    }

    fn same_bits(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// IEEE addition of two values is correctly rounded, zero signs and
    /// special values included: the two-term sum must match it bit for bit.
    #[test]
    fn two_terms_round_like_ieee_addition() {
        let values = interesting();
        for &a in &values {
            for &b in &values {
                let sum: ExactSum = [a, b].into_iter().collect();
                assert!(
                    same_bits(sum.to_f64(), a + b),
                    "{a:e} + {b:e}: {:e}, IEEE {:e}",
                    sum.to_f64(),
                    a + b
                );
                let single: ExactSum = [a].into_iter().collect();
                assert!(same_bits(single.to_f64(), a), "{a:e} alone: {:e}", single.to_f64());
            }
        }
    }

    #[test]
    fn carries_propagate_over_many_additions() {
        // Enough terms for several propagations, every limb near its bound.
        let mut sum = ExactSum::new();
        for _ in 0..10_000 {
            sum.add(f64::MAX);
        }
        for _ in 0..9_999 {
            sum.add(-f64::MAX);
        }
        assert_eq!(sum.to_f64(), f64::MAX);
        let mut sum = ExactSum::new();
        for i in 0..100_000 {
            sum.add(if i % 2 == 0 { -1.0 } else { f64::from_bits(1) });
        }
        // -50,000 + 50,000 · 2^-1074: -50,000 is the nearest f64.
        assert_eq!(sum.to_f64(), -50_000.0);
        let tiny: ExactSum = std::iter::repeat_n(f64::from_bits(1), 100_000).collect();
        assert_eq!(tiny.to_f64(), f64::from_bits(100_000));
        // Subnormals adding up to a normal value.
        let many: ExactSum = std::iter::repeat_n(f64::from_bits(1 << 40), 1 << 13).collect();
        assert_eq!(many.to_f64(), f64::from_bits(1 << 40) * 8192.0);
        assert!(many.to_f64() >= f64::MIN_POSITIVE);
    }

    #[test]
    fn equal_sums_compare_equal_however_grouped() {
        let values = interesting();
        let all: ExactSum = values.iter().copied().collect();
        let mut halves: ExactSum = values[..values.len() / 3].iter().copied().collect();
        halves.merge(&values[values.len() / 3..].iter().rev().copied().collect());
        assert_eq!(all, halves);
        let mut other = halves.clone();
        other.add(f64::from_bits(1));
        assert_ne!(all, other);
        assert!(format!("{all:?}").starts_with("ExactSum { value: NaN"), "{all:?}");
        assert_ne!(ExactSum::new(), [0.0].into_iter().collect::<ExactSum>());
        assert_eq!(ExactSum::new(), [-0.0, -0.0].into_iter().collect::<ExactSum>());
    }

    #[test]
    fn the_job_obeys_the_merge_law() {
        let values = interesting();
        let finite: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let job = exact_sum(|x: f64, _: &()| x);
        for seed in 0..20 {
            check_merge_law(&job, &(), &values, seed).unwrap();
            check_merge_law(&job, &(), &finite, seed).unwrap();
            check_merge_law(&job, &(), &[-0.0, -0.0, -0.0], seed).unwrap();
        }
    }

    #[cfg(any(feature = "mpi", feature = "durable"))]
    #[test]
    fn travels_through_postcard_and_rejects_bad_limbs() {
        for values in [interesting(), vec![], vec![-0.0], vec![-1e300, 2.5, f64::from_bits(1)]] {
            let mut sum = ExactSum::new();
            for &x in &values {
                sum.add(x);
            }
            let bytes = postcard::to_allocvec(&sum).unwrap();
            let back: ExactSum = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, sum);
            assert!(same_bits(back.to_f64(), sum.to_f64()));
            // It goes on adding and merging after the trip.
            let mut more = back.clone();
            more.add(1.0);
            more.merge(&back);
            let mut expected = sum.clone();
            expected.add(1.0);
            expected.merge(&sum);
            assert_eq!(more, expected);
        }
        let wire = |limbs: Vec<i64>| Wire {
            limbs,
            positive_infinity: false,
            negative_infinity: false,
            nan: false,
            only_negative_zeros: false,
        };
        let mut limbs = vec![0; LIMBS];
        limbs[LIMBS - 1] = -7;
        let bytes = postcard::to_allocvec(&wire(limbs.clone())).unwrap();
        assert_eq!(
            postcard::from_bytes::<ExactSum>(&bytes).unwrap().to_f64(),
            -7.0 * 2f64.powi(32 * 66 - 1075)
        );
        for bad in [
            vec![0; LIMBS - 1],
            {
                let mut l = limbs.clone();
                l[3] = 1 << 32;
                l
            },
            {
                let mut l = limbs.clone();
                l[3] = -1;
                l
            },
            {
                let mut l = limbs;
                l[LIMBS - 1] = i64::MAX;
                l
            },
        ] {
            let bytes = postcard::to_allocvec(&wire(bad)).unwrap();
            assert!(postcard::from_bytes::<ExactSum>(&bytes).is_err());
        }
    }
}
