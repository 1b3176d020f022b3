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

/// Check `job`'s merge law on `items`: fold them in order, then fold splits
/// of them and join the parts the way a parallel run may, and compare.
/// Returns the first split whose answer differs, with both answers.
///
/// The splits: all items in one part between two empty ones; two parts,
/// the second starting at each of the first few items (and the first ending
/// at each of the last few); every item a part of its own, joined
/// left-deep, right-deep and as a balanced tree; then random splits into up
/// to 32 parts joined in random trees. The fixed splits find the answers
/// that depend on which item opens a stretch, such as a minimum that a NaN
/// key swallows, wherever that item lies; the same `seed` gives the same
/// random splits. It finds only what `items` expose: include ties (equal
/// keys), items where the job `Break`s, and extremes (NaN for float keys).
///
/// Answers are compared with `==`; an answer that is not equal to itself
/// (it holds a NaN) matches one with the same `Debug` text.
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
    let n = items.len();
    let mut rng = SplitMix64(seed);
    let check = |chunks: &[(usize, usize)], join: Join, rng: &mut SplitMix64| {
        let found = match join {
            Join::LeftDeep => join_left_deep(job, ctx, items, chunks),
            Join::RightDeep => join_right_deep(job, ctx, items, chunks),
            Join::Balanced | Join::Random => join_tree(job, ctx, items, chunks, join, rng),
        };
        if same(&expected, &found) {
            return Ok(());
        }
        Err(LawViolation {
            split: describe(chunks, join),
            expected: format!("{expected:?}"),
            found: format!("{found:?}"),
        })
    };

    check(&[(0, 0), (0, n), (n, n)], Join::Random, &mut rng)?;
    for first in 1..=FEW.min(n.saturating_sub(1)) {
        check(&[(0, first), (first, n)], Join::Random, &mut rng)?;
        check(&[(0, n - first), (n - first, n)], Join::Random, &mut rng)?;
    }
    let singletons: Vec<(usize, usize)> = (0..n).map(|i| (i, i + 1)).collect();
    if n > 2 {
        for join in [Join::LeftDeep, Join::RightDeep, Join::Balanced] {
            check(&singletons, join, &mut rng)?;
        }
    }
    for _ in 0..64 {
        let parts = 2 + (rng.next() % 31) as usize;
        let mut cuts: Vec<usize> = (0..parts - 1).map(|_| rng.below(n + 1)).collect();
        cuts.extend([0, n]);
        cuts.sort_unstable();
        let chunks: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        check(&chunks, Join::Random, &mut rng)?;
    }
    Ok(())
}

/// How many of the first (and of the last) items open (and close) a part of
/// a two-part split.
const FEW: usize = 8;

/// The order in which the folds of adjacent parts are merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Join {
    /// `((p0 + p1) + p2) + p3`, the way a sequential run of blocks merges.
    LeftDeep,
    /// `p0 + (p1 + (p2 + p3))`.
    RightDeep,
    /// Halves, then halves of halves, the way rayon splits an indexed input.
    Balanced,
    /// A random binary tree, as work stealing may build.
    Random,
}

/// A split as `[0..3] [3..7] [7..10]`, the middle left out when there are
/// many parts, followed by the join order unless it was random.
fn describe(chunks: &[(usize, usize)], join: Join) -> String {
    let show = |chunks: &[(usize, usize)]| {
        chunks
            .iter()
            .map(|(a, b)| format!("[{a}..{b}]"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut split = if chunks.len() > 40 {
        format!(
            "{} … {} ({} parts)",
            show(&chunks[..4]),
            show(&chunks[chunks.len() - 4..]),
            chunks.len()
        )
    } else {
        show(chunks)
    };
    match join {
        Join::LeftDeep => split.push_str(", joined left-deep"),
        Join::RightDeep => split.push_str(", joined right-deep"),
        Join::Balanced => split.push_str(", joined as a balanced tree"),
        Join::Random => {}
    }
    split
}

/// A parallel run's answer is the value, whether it broke or not; a `Break`
/// seen at the top level ends a run just as running out of items does.
/// Values not equal to themselves (a NaN inside) are compared by `Debug`.
fn same<A: PartialEq + Debug>(expected: &ControlFlow<A, A>, found: &ControlFlow<A, A>) -> bool {
    let (Continue(a) | Break(a)) = expected;
    let (Continue(b) | Break(b)) = found;
    #[allow(clippy::eq_op)] // `x != x` is the test for a NaN inside.
    let reflexive = a == a && b == b;
    a == b || (!reflexive && format!("{a:?}") == format!("{b:?}"))
}

fn fold<T: Clone, C: ?Sized, J: MapReduce<T, C>>(job: &J, ctx: &C, items: &[T]) -> ControlFlow<J::Acc, J::Acc> {
    let mut acc = job.empty_result(ctx);
    for item in items {
        acc = job.process_result(job.compute(item.clone(), ctx), acc)?;
    }
    Continue(acc)
}

/// Merge `left` with the result of the parts right of it, with the engine's
/// rule: a right `Break` makes the merge final.
fn merge_with<T, C: ?Sized, J: MapReduce<T, C>>(
    job: &J,
    left: J::Acc,
    right: ControlFlow<J::Acc, J::Acc>,
) -> ControlFlow<J::Acc, J::Acc> {
    match right {
        Continue(right) => job.merge(left, right),
        Break(right) => {
            let (Continue(acc) | Break(acc)) = job.merge(left, right);
            Break(acc)
        }
    }
}

/// Fold each chunk, then join adjacent results in a binary tree (split in
/// the middle, or at random), with the engine's rules: a left `Break` ends
/// it, a right `Break` makes the merge final.
fn join_tree<T: Clone, C: ?Sized, J: MapReduce<T, C>>(
    job: &J,
    ctx: &C,
    items: &[T],
    chunks: &[(usize, usize)],
    join: Join,
    rng: &mut SplitMix64,
) -> ControlFlow<J::Acc, J::Acc> {
    if let [(start, end)] = chunks {
        return fold(job, ctx, &items[*start..*end]);
    }
    let middle = match join {
        Join::Balanced => chunks.len() / 2,
        _ => 1 + rng.below(chunks.len() - 1),
    };
    let left = join_tree(job, ctx, items, &chunks[..middle], join, rng)?;
    let right = join_tree(job, ctx, items, &chunks[middle..], join, rng);
    merge_with(job, left, right)
}

/// `join_tree` with the split always before the last chunk, without
/// recursion (there may be one chunk per item).
fn join_left_deep<T: Clone, C: ?Sized, J: MapReduce<T, C>>(
    job: &J,
    ctx: &C,
    items: &[T],
    chunks: &[(usize, usize)],
) -> ControlFlow<J::Acc, J::Acc> {
    let ((start, end), rest) = chunks.split_first().expect("at least one chunk");
    let mut acc = fold(job, ctx, &items[*start..*end])?;
    for (start, end) in rest {
        match fold(job, ctx, &items[*start..*end]) {
            Continue(right) => acc = job.merge(acc, right)?,
            right @ Break(_) => return merge_with(job, acc, right),
        }
    }
    Continue(acc)
}

/// `join_tree` with the split always after the first chunk, without
/// recursion: the chunks are folded left to right up to the first `Break`
/// (a left `Break` ends the run), then merged from the right.
fn join_right_deep<T: Clone, C: ?Sized, J: MapReduce<T, C>>(
    job: &J,
    ctx: &C,
    items: &[T],
    chunks: &[(usize, usize)],
) -> ControlFlow<J::Acc, J::Acc> {
    let mut lefts = Vec::with_capacity(chunks.len());
    let mut right = None;
    for (start, end) in chunks {
        match fold(job, ctx, &items[*start..*end]) {
            Continue(acc) => lefts.push(acc),
            broken @ Break(_) => {
                right = Some(broken);
                break;
            }
        }
    }
    let mut right = match right {
        Some(broken) => broken,
        None => Continue(lefts.pop().expect("at least one chunk")),
    };
    while let Some(left) = lefts.pop() {
        right = merge_with(job, left, right);
    }
    right
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

    /// `min_by_key` as it was written before NaN keys were ruled: the new
    /// key wins when `new < old`, which is false whenever either is NaN, so a
    /// NaN that opens a stretch swallows the rest of it.
    struct MinByKeyOld;
    impl MapReduce<f64> for MinByKeyOld {
        type Output = f64;
        type Acc = Option<f64>;
        fn empty_result(&self, _: &()) -> Option<f64> {
            None
        }
        fn compute(&self, x: f64, _: &()) -> f64 {
            x
        }
        fn process_result(&self, x: f64, acc: Option<f64>) -> ControlFlow<Option<f64>, Option<f64>> {
            self.merge(acc, Some(x))
        }
        fn merge(&self, l: Option<f64>, r: Option<f64>) -> ControlFlow<Option<f64>, Option<f64>> {
            Continue(match (l, r) {
                (Some(l), Some(r)) => Some(if r < l { r } else { l }),
                (l, r) => l.or(r),
            })
        }
    }

    /// Keys like the report's: `1.0, 3.0, NaN, 4.0, ...`, a single NaN far
    /// from the ends, and the smallest key right of it.
    fn keys_with_a_nan(len: usize, nan_at: usize) -> Vec<f64> {
        (0..len)
            .map(|i| match i {
                _ if i == nan_at => f64::NAN,
                _ if i == len - 1 => 0.5,
                0 => 1.0,
                _ => 3.0 + (i % 7) as f64,
            })
            .collect()
    }

    #[test]
    fn a_nan_key_that_swallows_a_stretch_is_caught() {
        // A NaN near the start, as a user's small example has it.
        for seed in 0..20 {
            let err = check_merge_law(&MinByKeyOld, &(), &[1.0, 3.0, f64::NAN, 4.0, 0.5], seed).unwrap_err();
            assert_eq!(err.expected, "Continue(Some(0.5))", "{err}");
        }
        // One NaN in 10,000 items, where random cuts almost never fall: the
        // all-singletons split joined right-deep finds it.
        let keys = keys_with_a_nan(10_000, 4_321);
        for seed in 0..4 {
            let err = check_merge_law(&MinByKeyOld, &(), &keys, seed).unwrap_err();
            assert_eq!(err.expected, "Continue(Some(0.5))", "{err}");
            assert_eq!(err.found, "Continue(Some(1.0))", "{err}");
        }
    }

    #[test]
    fn the_ruled_min_by_key_passes_where_the_old_one_fails() {
        let evaluate = |x: f64, _: &()| (x, x.to_bits());
        let mut item_lists = vec![
            vec![1.0, 3.0, f64::NAN, 4.0, 0.5],
            keys_with_a_nan(10_000, 4_321),
            vec![f64::NAN; 50],
            vec![
                f64::NAN,
                -0.0,
                0.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ],
        ];
        item_lists.push(
            (0..300)
                .map(|i| if i % 17 == 0 { f64::NAN } else { f64::from(i % 11) })
                .collect(),
        );
        for items in &item_lists {
            for seed in 0..3 {
                check_merge_law(&jobs::min_by_key(evaluate), &(), items, seed).unwrap();
                check_merge_law(&jobs::max_by_key(evaluate), &(), items, seed).unwrap();
                check_merge_law(&jobs::min_by_key(evaluate).stop_at(0.0), &(), items, seed).unwrap();
                check_merge_law(&jobs::max_by_key(evaluate).stop_at(5.0), &(), items, seed).unwrap();
            }
        }
    }

    #[test]
    fn a_part_opening_at_the_second_item_is_tried_first() {
        // A merge that records its grouping: any part of two or more items
        // merged from the left shows in brackets.
        struct Grouping;
        impl MapReduce<u8> for Grouping {
            type Output = u8;
            type Acc = String;
            fn empty_result(&self, _: &()) -> String {
                String::new()
            }
            fn compute(&self, x: u8, _: &()) -> u8 {
                x
            }
            fn process_result(&self, x: u8, acc: String) -> ControlFlow<String, String> {
                self.merge(acc, x.to_string())
            }
            fn merge(&self, l: String, r: String) -> ControlFlow<String, String> {
                Continue(match (l.is_empty(), r.is_empty()) {
                    (true, _) => r,
                    (_, true) => l,
                    _ if r.len() > 1 => format!("{l}({r})"),
                    _ => format!("{l}{r}"),
                })
            }
        }
        let err = check_merge_law(&Grouping, &(), &[1, 2, 3], 0).unwrap_err();
        assert_eq!(err.expected, "Continue(\"123\")");
        assert_eq!(err.found, "Continue(\"1(23)\")");
    }

    #[test]
    fn long_splits_are_shortened_and_name_their_join() {
        let chunks: Vec<(usize, usize)> = (0..100).map(|i| (i, i + 1)).collect();
        assert_eq!(
            describe(&chunks, Join::RightDeep),
            "[0..1] [1..2] [2..3] [3..4] … [96..97] [97..98] [98..99] [99..100] (100 parts), joined right-deep"
        );
        assert_eq!(describe(&[(0, 3), (3, 5)], Join::Random), "[0..3] [3..5]");
    }

    #[test]
    fn a_nan_answer_matches_itself() {
        let nan = Continue(Some((f64::NAN, 1)));
        assert!(same(&nan, &Break(Some((f64::NAN, 1)))));
        assert!(!same(&nan, &Continue(Some((f64::NAN, 2)))));
        assert!(!same(&nan, &Continue(Some((0.0, 1)))));
        assert!(same(&Continue(Some((0.0, 1))), &Continue(Some((-0.0, 1)))));
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
