//! Indexed inputs scanned in order: growing blocks from the start, each one
//! split among all workers, so that a search whose answer lies at item `k`
//! returns after about `k / workers` items' time wherever `k` falls. (A plain
//! run gives each worker half the input, and the worker on the right half
//! works past the answer.) All blocks belong to one run, whose positions are
//! the items' indices, so a `Break` cancels what lies right of it at once.

use std::ops::ControlFlow;

use rayon::iter::plumbing::{bridge_producer_consumer, Producer, ProducerCallback};
use rayon::iter::IndexedParallelIterator;

use super::consumer::MapReduceConsumer;
use super::run::{Piece, Run};
use crate::error::Error;
use crate::job::MapReduce;

/// The first block, per worker; each block after it is twice as long, up to
/// a `1 / BLOCKS_AT_MOST`th of the input: a `Break` early in a block leaves
/// the rest of it to the other workers, so blocks must stay small next to
/// the input.
pub(crate) const FIRST_BLOCK_PER_WORKER: usize = 4;
pub(crate) const BLOCKS_AT_MOST: usize = 16;

/// Drive `items` through `run`, block after block, until the input ends or
/// an event (a `Break`, a panic, an abort) decides the answer.
pub(crate) fn drive<P, C, J>(items: P, run: &Run<'_, P::Item, J, C>) -> Result<ControlFlow<J::Acc, J::Acc>, Error>
where
    P: IndexedParallelIterator,
    C: Sync + ?Sized,
    J: MapReduce<P::Item, C>,
{
    let len = items.len();
    items.with_producer(Blocks { run, len })
}

struct Blocks<'r, 'a, T, J: MapReduce<T, C>, C: ?Sized> {
    run: &'r Run<'a, T, J, C>,
    len: usize,
}

impl<T, J, C> ProducerCallback<T> for Blocks<'_, '_, T, J, C>
where
    J: MapReduce<T, C>,
    C: Sync + ?Sized,
{
    type Output = Result<ControlFlow<J::Acc, J::Acc>, Error>;

    fn callback<P: Producer<Item = T>>(self, producer: P) -> Self::Output {
        let run = self.run;
        let mut block = FIRST_BLOCK_PER_WORKER * rayon::current_num_threads();
        let largest = (self.len / BLOCKS_AT_MOST).max(block);
        let (mut start, mut rest) = (0, producer);
        let mut folded: Option<Piece<J::Acc>> = None;
        loop {
            let size = block.min(self.len - start);
            let (head, tail) = rest.split_at(size);
            let piece = bridge_producer_consumer(size, head, MapReduceConsumer::new(run, Some(start)));
            let piece = match folded.take() {
                Some(left) => run.join(left, piece),
                None => piece,
            };
            log::trace!("block {start}..{} joined", start + size);
            start += size;
            if start >= self.len || run.state.has_event() {
                return run.finish(piece);
            }
            folded = Some(piece);
            rest = tail;
            block = (block * 2).min(largest);
        }
    }
}
