//! Helpers for testing your own jobs.

use std::fmt::{self, Debug};
use std::ops::ControlFlow::{self, Break, Continue};

use crate::job::MapReduce;

/// A broken merge law: splitting the items and merging the parts gave a
/// different answer than folding them in one go.
///
/// ```
/// let violation = mapreduce::testing::LawViolation {
///     split: "[0..1] [1..2]".into(),
///     expected: "Continue(3)".into(),
///     found: "Continue(-1)".into(),
/// };
/// assert!(violation.to_string().starts_with("merge law broken for the split [0..1] [1..2]"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LawViolation {
    /// How the items were split, for example `[0..3] [3..7] [7..10]`.
    pub split: String,
    /// What folding all items in order gives (`Debug` of the `ControlFlow`).
    pub expected: String,
    /// What merging the folds of the parts gave.
    pub found: String,
}

impl fmt::Display for LawViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "merge law broken for the split {}: folding in order gives {}, merging the parts gives {}",
            self.split, self.expected, self.found
        )
    }
}

impl std::error::Error for LawViolation {}

/// Check `job`'s merge law on `items`: fold them in order, then fold random
/// splits of them into up to 32 parts joined in random trees (the way a
/// parallel run splits work), and compare. Returns the first split whose
/// answer differs, with both answers. The same `seed` gives the same splits.
///
/// ```
/// use std::ops::ControlFlow::{self, Continue};
/// use mapreduce::{jobs, testing::check_merge_law, MapReduce};
///
/// // Keeps the last item: right-biased, as it must be.
/// struct Last;
/// impl MapReduce<u8> for Last {
///     type Output = u8;
///     type Acc = Option<u8>;
///     fn empty_result(&self, _: &()) -> Option<u8> { None }
///     fn compute(&self, x: u8, _: &()) -> u8 { x }
///     fn process_result(&self, x: u8, _: Option<u8>) -> ControlFlow<Option<u8>, Option<u8>> { Continue(Some(x)) }
///     fn merge(&self, l: Option<u8>, r: Option<u8>) -> ControlFlow<Option<u8>, Option<u8>> {
///         Continue(l.or(r)) // wrong: should be r.or(l)
///     }
/// }
/// let err = check_merge_law(&Last, &(), &[1, 2, 3], 7).unwrap_err();
/// assert!(err.to_string().contains("merge law broken"));
/// check_merge_law(&jobs::collect(|x: u8, _: &()| x), &(), &[1, 2, 3], 7).unwrap();
/// ```
pub fn check_merge_law<T, C, J>(job: &J, ctx: &C, items: &[T], seed: u64) -> Result<(), LawViolation>
where
    T: Clone,
    C: ?Sized,
    J: MapReduce<T, C>,
    J::Acc: Debug + PartialEq,
{
    let expected = fold(job, ctx, items);
    let mut rng = SplitMix64(seed);
    for round in 0..64 {
        let parts = 2 + (rng.next() % 31) as usize;
        let mut cuts: Vec<usize> = (0..parts - 1).map(|_| rng.below(items.len() + 1)).collect();
        if round == 0 {
            cuts = vec![0, items.len()];
        }
        cuts.extend([0, items.len()]);
        cuts.sort_unstable();
        let chunks: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        let found = join_tree(job, ctx, items, &chunks, &mut rng);
        if !same(&expected, &found) {
            let split = chunks
                .iter()
                .map(|(a, b)| format!("[{a}..{b}]"))
                .collect::<Vec<_>>()
                .join(" ");
            return Err(LawViolation {
                split,
                expected: format!("{expected:?}"),
                found: format!("{found:?}"),
            });
        }
    }
    Ok(())
}

/// A parallel run's answer is the value, whether it broke or not; a `Break`
/// seen at the top level ends a run just as running out of items does.
fn same<A: PartialEq>(expected: &ControlFlow<A, A>, found: &ControlFlow<A, A>) -> bool {
    let (Continue(a) | Break(a)) = expected;
    let (Continue(b) | Break(b)) = found;
    a == b
}

fn fold<T: Clone, C: ?Sized, J: MapReduce<T, C>>(job: &J, ctx: &C, items: &[T]) -> ControlFlow<J::Acc, J::Acc> {
    let mut acc = job.empty_result(ctx);
    for item in items {
        acc = job.process_result(job.compute(item.clone(), ctx), acc)?;
    }
    Continue(acc)
}

/// Fold each chunk, then join adjacent results in a random binary tree, with
/// the engine's rules: a left `Break` ends it, a right `Break` makes the
/// merge final.
fn join_tree<T: Clone, C: ?Sized, J: MapReduce<T, C>>(
    job: &J,
    ctx: &C,
    items: &[T],
    chunks: &[(usize, usize)],
    rng: &mut SplitMix64,
) -> ControlFlow<J::Acc, J::Acc> {
    if let [(start, end)] = chunks {
        return fold(job, ctx, &items[*start..*end]);
    }
    let middle = 1 + rng.below(chunks.len() - 1);
    let left = join_tree(job, ctx, items, &chunks[..middle], rng)?;
    match join_tree(job, ctx, items, &chunks[middle..], rng) {
        Continue(right) => job.merge(left, right),
        Break(right) => {
            let (Continue(acc) | Break(acc)) = job.merge(left, right);
            Break(acc)
        }
    }
}

/// A tiny deterministic generator, so that seeds replay without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs;

    /// "Stop once the running sum passes 50" looks mergeable but is not: a
    /// right part folded alone passes 50 later than it does after the left.
    struct SumUntil;
    impl MapReduce<u32> for SumUntil {
        type Output = u32;
        type Acc = u32;
        fn empty_result(&self, _: &()) -> u32 {
            0
        }
        fn compute(&self, x: u32, _: &()) -> u32 {
            x
        }
        fn process_result(&self, x: u32, acc: u32) -> ControlFlow<u32, u32> {
            self.merge(acc, x)
        }
        fn merge(&self, l: u32, r: u32) -> ControlFlow<u32, u32> {
            if l + r > 50 {
                Break(l + r)
            } else {
                Continue(l + r)
            }
        }
    }

    #[test]
    fn lawful_jobs_pass() {
        let items: Vec<u32> = (0..40).collect();
        for seed in 0..50 {
            check_merge_law(&jobs::collect(|x: u32, _: &()| x), &(), &items, seed).unwrap();
            check_merge_law(&jobs::find_first(|x: &u32, _: &()| *x == 17), &(), &items, seed).unwrap();
        }
        check_merge_law(&SumUntil, &(), &[] as &[u32], 1).unwrap();
        check_merge_law(&SumUntil, &(), &[60, 1, 2], 1).unwrap();
    }

    #[test]
    fn a_break_that_depends_on_the_split_is_caught() {
        let items: Vec<u32> = (0..40).collect();
        let err = check_merge_law(&SumUntil, &(), &items, 0).unwrap_err();
        assert_eq!(err.expected, "Break(55)");
    }

    #[test]
    fn a_non_associative_merge_is_caught() {
        struct Minus;
        impl MapReduce<i32> for Minus {
            type Output = i32;
            type Acc = i32;
            fn empty_result(&self, _: &()) -> i32 {
                0
            }
            fn compute(&self, x: i32, _: &()) -> i32 {
                x
            }
            fn process_result(&self, x: i32, acc: i32) -> ControlFlow<i32, i32> {
                Continue(acc - x)
            }
            fn merge(&self, l: i32, r: i32) -> ControlFlow<i32, i32> {
                Continue(l - r)
            }
        }
        let err = check_merge_law(&Minus, &(), &[1, 2, 3, 4, 5], 3).unwrap_err();
        assert!(err.split.contains(".."), "{err}");
    }
}
