//! The traits and functions most programs need: `use mapreduce::prelude::*;`.
//!
//! ```
//! use mapreduce::prelude::*;
//!
//! let total = par_map_reduce(0..10u32, &(), jobs::sum(|x: u32, _: &()| x)).unwrap();
//! assert_eq!(total, 45);
//! ```

pub use crate::{
    is_cancelled, jobs, par_map_reduce, par_map_reduce_in_order, par_map_reduce_iter, seq_map_reduce, Config, Error,
    IndexedParallelMapReduce, MapReduce, ParallelMapReduce,
};
