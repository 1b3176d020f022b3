//! The traits and functions most programs need, rayon's prelude included
//! (`par_iter`, `into_par_iter`, ...): `use mapreduce::prelude::*;` is the
//! one import, with no version-matched `rayon` dependency of your own.
//!
//! ```
//! use mapreduce::prelude::*;
//!
//! let total = par_map_reduce(0..10u32, &(), jobs::sum(|x: u32, _: &()| x)).unwrap();
//! assert_eq!(total, 45);
//! let words = vec!["map", "every", "item"];
//! let long = words.par_iter().map(|w| w.len()).map_reduce(&(), jobs::count(|n: &usize, _: &()| *n > 3)).unwrap();
//! assert_eq!(long, 2);
//! ```

pub use crate::{
    current_task, indexed_range, is_cancelled, jobs, par_map_reduce, par_map_reduce_in_order, par_map_reduce_iter,
    seq_map_reduce, Config, Error, IndexedParallelMapReduce, MapReduce, ParallelMapReduce,
};
pub use rayon::prelude::*;
