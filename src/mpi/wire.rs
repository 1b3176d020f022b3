//! The messages ranks exchange, and their encoding (postcard: compact,
//! varint lengths, no schema on the wire; every rank runs the same binary).
//!
//! Accumulators travel as bytes inside the messages, encoded on their own,
//! so that one that cannot be encoded or decoded fails its block, not the
//! protocol.

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{panic_message, Error, Panic};

/// A rank other than 0 to the coordinator (rank 0).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Up {
    /// Hand me a block; I run `workers` workers.
    Request { workers: u32 },
    /// The outcome of the block `start .. start + len`.
    Result { start: u64, len: u64, node: WireNode },
    /// My run's horizon fell to `horizon` (a `Break` or a panic here).
    Event { horizon: u64 },
    /// I have done `items` more items.
    Progress { items: u64 },
    /// I have stopped: my last message of this run.
    Finished,
    /// Someone stopped the run here (a stop handle, a signal): stop it
    /// everywhere. Sent before any result of a block the stop cut short.
    Stopped,
}

/// The coordinator to another rank.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Down {
    /// Run the block `start .. start + len`.
    Assign { start: u64, len: u64 },
    /// No block is left for you; wait for `Stop`.
    NoMore,
    /// The run's horizon fell to `horizon`: cancel what lies right of it.
    Horizon { horizon: u64 },
    /// The answer is known: stop, report `Finished`. The last message.
    Stop,
}

/// What a block of leaves came to (a node of the fixed tree), its
/// accumulators encoded.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireNode {
    Done(Vec<u8>),
    /// An event ended it: the accumulators left of it, in order.
    Ended {
        pieces: Vec<Vec<u8>>,
        event: WireEvent,
    },
    Skipped,
}

impl WireNode {
    /// A block that failed with `panic` and left nothing to merge.
    pub(crate) fn failed(panic: WirePanic) -> WireNode {
        WireNode::Ended {
            pieces: Vec::new(),
            event: WireEvent::Panic(panic),
        }
    }
}

/// What ended a block.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireEvent {
    Break,
    Panic(WirePanic),
}

/// A panic, as far as it can travel: where and what, not its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WirePanic {
    pub(crate) index: Option<u64>,
    pub(crate) message: String,
}

impl WirePanic {
    /// A failure of user code that is about no item (an accumulator that
    /// does not encode, say).
    pub(crate) fn without_item(message: String) -> WirePanic {
        WirePanic { index: None, message }
    }

    /// A caught panic, ready to travel.
    pub(crate) fn of_panic(panic: &Panic) -> WirePanic {
        WirePanic {
            index: panic.index.map(|index| index as u64),
            message: panic_message(panic.payload.as_ref()),
        }
    }

    /// An error ending a run, ready to travel (it fails like a panic).
    pub(crate) fn of_error(err: &Error) -> WirePanic {
        WirePanic {
            index: err.index().map(|index| index as u64),
            message: match err {
                Error::Panicked { message, .. } => message.clone(),
                other => other.to_string(),
            },
        }
    }

    /// The panic where it arrives: its message is its payload.
    pub(crate) fn into_panic(self) -> Panic {
        Panic::new(self.index.map(|index| index as usize), Box::new(self.message))
    }
}

/// The answer of a run, broadcast by rank 0 to every rank.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    Value(Vec<u8>),
    Panicked(WirePanic),
    Cancelled,
    /// A stop: `done` items are saved (durable runs).
    Stopped {
        done: u64,
    },
    /// Rank 0 could not use a durable run's checkpoint: why.
    #[cfg(feature = "durable")]
    Checkpoint(String),
}

/// Why a rank could not start a run, told to every rank.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireSetup {
    Config(String),
    ThreadPool(String),
    Panicked(WirePanic),
}

/// A log record from another rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireRecord {
    /// `log::Level` as a number (1 = error .. 5 = trace).
    pub(crate) level: u8,
    pub(crate) target: String,
    pub(crate) module_path: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    /// The name of the thread that logged it.
    pub(crate) thread: String,
    pub(crate) message: String,
}

/// Records from a rank to rank 0 of the logging communicator (see
/// [`super::logs`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireLogs {
    pub(crate) records: Vec<WireRecord>,
    /// Records the sender dropped (its buffer was full) before these.
    pub(crate) dropped: u64,
    /// The sender's last batch of a `flush_logs`.
    pub(crate) last: bool,
}

/// Encode a message; the protocol's own messages always encode.
pub(crate) fn encode<M: Serialize>(message: &M) -> Vec<u8> {
    postcard::to_allocvec(message).unwrap_or_else(|err| unreachable!("protocol message encodes: {err}"))
}

/// Decode a protocol message. Ranks run the same binary, so a message that
/// does not decode means a broken installation: say so loudly.
pub(crate) fn decode<M: DeserializeOwned>(bytes: &[u8], from: i32) -> M {
    postcard::from_bytes(bytes).unwrap_or_else(|err| {
        panic!(
            "mapreduce::mpi: a message from rank {from} does not decode ({err}); \
             do all ranks run the same build?"
        )
    })
}

/// MPI counts a message's bytes in a C `int`; the rest of a message is
/// small.
const MESSAGE_AT_MOST: usize = i32::MAX as usize - 1024;

/// Encode an accumulator: its `Serialize` is user code, which may fail or
/// panic.
pub(crate) fn encode_acc<A: Serialize>(acc: &A) -> Result<Vec<u8>, String> {
    match catch_unwind(AssertUnwindSafe(|| postcard::to_allocvec(acc))) {
        Ok(Ok(bytes)) if bytes.len() > MESSAGE_AT_MOST => Err(format!(
            "the accumulator takes {} bytes, more than one MPI message carries ({MESSAGE_AT_MOST})",
            bytes.len()
        )),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(err)) => Err(format!("the accumulator could not be encoded: {err}")),
        Err(payload) => Err(format!(
            "encoding the accumulator panicked: {}",
            panic_message(payload.as_ref())
        )),
    }
}

/// Decode an accumulator encoded by [`encode_acc`] (user code too).
pub(crate) fn decode_acc<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, String> {
    match catch_unwind(AssertUnwindSafe(|| postcard::take_from_bytes(bytes))) {
        Ok(Ok((acc, []))) => Ok(acc),
        // postcard reads what the type asks for: bytes left over mean they
        // were written as another type.
        Ok(Ok((_, rest))) => Err(format!(
            "the accumulator could not be decoded: {} bytes left over (was it encoded as another type?)",
            rest.len()
        )),
        Ok(Err(err)) => Err(format!("the accumulator could not be decoded: {err}")),
        Err(payload) => Err(format!(
            "decoding the accumulator panicked: {}",
            panic_message(payload.as_ref())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accumulator_of_another_type_is_refused() {
        // A `Vec<u64>` read as a `u64` decodes its length: refused.
        let bytes = encode_acc(&vec![3u64, 4, 5]).unwrap();
        let err = decode_acc::<u64>(&bytes).unwrap_err();
        assert!(err.contains("left over"), "{err}");
        assert_eq!(decode_acc::<Vec<u64>>(&bytes).unwrap(), [3, 4, 5]);
    }

    #[test]
    fn floats_travel_bit_for_bit() {
        let payload_nan = f64::from_bits(f64::NAN.to_bits() | 0x1234);
        let values = [
            -0.0,
            0.0,
            payload_nan,
            -f64::NAN,
            f64::MIN_POSITIVE / 8.0,
            f64::INFINITY,
        ];
        let back: Vec<f64> = decode_acc(&encode_acc(&values.to_vec()).unwrap()).unwrap();
        let bits = |values: &[f64]| values.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&values));
    }

    #[test]
    fn messages_round_trip_compactly() {
        let up = Up::Result {
            start: 600,
            len: 16,
            node: WireNode::Ended {
                pieces: vec![encode_acc(&Some((3u64, 7u64))).unwrap()],
                event: WireEvent::Break,
            },
        };
        let bytes = encode(&up);
        assert!(bytes.len() < 16, "{} bytes", bytes.len());
        assert_eq!(decode::<Up>(&bytes, 1), up);
        for down in [
            Down::Assign { start: 1, len: 2 },
            Down::NoMore,
            Down::Horizon { horizon: u64::MAX },
            Down::Stop,
        ] {
            assert_eq!(decode::<Down>(&encode(&down), 0), down);
        }
    }

    #[test]
    fn accumulators_round_trip_and_bad_bytes_are_reported() {
        let acc = vec![(1u32, "a".to_owned()), (2, "b".to_owned())];
        assert_eq!(
            decode_acc::<Vec<(u32, String)>>(&encode_acc(&acc).unwrap()).unwrap(),
            acc
        );
        let err = decode_acc::<Vec<String>>(&[5, 1]).unwrap_err();
        assert!(err.contains("could not be decoded"), "{err}");
    }

    #[test]
    #[should_panic(expected = "from rank 2 does not decode")]
    fn a_broken_protocol_message_names_its_rank() {
        decode::<Down>(&[200, 200, 200], 2);
    }
}
