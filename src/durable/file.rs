//! The checkpoint file format, version 1:
//!
//! ```text
//! magic    8 bytes   \x89 M R C K P T \n
//! version  u32 LE    1
//! length   u64 LE    of the body
//! body               postcard: the header (`Meta`), then the state
//! crc32    u32 LE    of everything before it
//! ```
//!
//! The header is decoded and checked against the run (key, input, leaf
//! size, mode, accumulator type) before the state, so that a file of
//! another search is refused rather than mis-decoded.

use serde::{Deserialize, Serialize};

use super::error::{CheckpointError, CheckpointProblem};
use std::path::Path;

const MAGIC: [u8; 8] = *b"\x89MRCKPT\n";
/// The format version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 4;

/// What a checkpoint was saved for: a run resumes only a file whose header
/// equals its own (`saved_at` aside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) key: String,
    /// `std::any::type_name` of the accumulator.
    pub(crate) acc_type: String,
    pub(crate) input: Input,
    /// Items per leaf; 0 for a stream's growing leaves.
    pub(crate) leaf_size: u64,
    pub(crate) deterministic: bool,
    /// When it was written, in seconds since the Unix epoch.
    pub(crate) saved_at: u64,
}

/// The input a checkpoint covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Input {
    /// An indexed input of this many items.
    Indexed(u64),
    /// A stream, of this many items when its `size_hint` was exact.
    Stream(Option<u64>),
}

/// What a run saves, borrowed from the run.
#[derive(Serialize)]
pub(crate) enum StateRef<'a, A> {
    /// The first `leaves` leaves (`items` items) are done; `stack` holds
    /// their subtrees' roots, with their heights.
    Running {
        leaves: u64,
        items: u64,
        stack: &'a [(u32, A)],
    },
    /// The run ended with `answer` (complete, or at a `Break`).
    Finished { answer: &'a A },
}

/// What a run saved, as read back: [`StateRef`]'s twin, variant for
/// variant and field for field.
#[derive(Deserialize)]
pub(crate) enum State<A> {
    Running {
        leaves: u64,
        items: u64,
        stack: Vec<(u32, A)>,
    },
    Finished {
        answer: A,
    },
}

/// The start of a saved state, readable without knowing the accumulator's
/// type: [`State`]'s variants and their first fields.
#[derive(Deserialize)]
pub(crate) enum StateHead {
    /// (`_leaves` is read only to reach `items`.)
    Running {
        _leaves: u64,
        items: u64,
    },
    Finished,
}

/// The bytes of a checkpoint.
pub(crate) fn encode<A: Serialize>(meta: &Meta, state: &StateRef<'_, A>) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    let out = postcard::to_extend(meta, out)?;
    let mut out = postcard::to_extend(state, out)?;
    let body_len = (out.len() - HEADER_LEN) as u64;
    out[12..HEADER_LEN].copy_from_slice(&body_len.to_le_bytes());
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// The header of the checkpoint `bytes` read from `path`, and the encoded
/// state after it; the framing and the checksum checked.
pub(crate) fn decode_meta<'b>(path: &Path, bytes: &'b [u8]) -> Result<(Meta, &'b [u8]), CheckpointError> {
    let fail = |problem| Err(CheckpointError::new(path, problem));
    if bytes.len() < MAGIC.len() {
        return if MAGIC.starts_with(bytes) {
            fail(CheckpointProblem::Truncated)
        } else {
            fail(CheckpointProblem::NotACheckpoint)
        };
    }
    if bytes[..8] != MAGIC {
        return fail(CheckpointProblem::NotACheckpoint);
    }
    if bytes.len() < HEADER_LEN {
        return fail(CheckpointProblem::Truncated);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return fail(CheckpointProblem::OtherVersion {
            found: version,
            supported: VERSION,
        });
    }
    let body_len = u64::from_le_bytes(bytes[12..HEADER_LEN].try_into().expect("8 bytes"));
    let have = (bytes.len() - HEADER_LEN) as u64;
    let want = body_len.checked_add(CHECKSUM_LEN as u64);
    match want {
        Some(want) if have < want => return fail(CheckpointProblem::Truncated),
        Some(want) if have > want => {
            return fail(CheckpointProblem::Corrupt(format!(
                "{} byte(s) after its end",
                have - want
            )))
        }
        Some(_) => {}
        None => return fail(CheckpointProblem::Corrupt("an impossible length".into())),
    }
    let end = bytes.len() - CHECKSUM_LEN;
    let checksum = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..end]) != checksum {
        return fail(CheckpointProblem::Corrupt(
            "its checksum does not match its content".into(),
        ));
    }
    match postcard::take_from_bytes::<Meta>(&bytes[HEADER_LEN..end]) {
        Ok((meta, rest)) => Ok((meta, rest)),
        Err(err) => fail(CheckpointProblem::Corrupt(format!(
            "its header does not decode ({err})"
        ))),
    }
}

/// The start of the state after a checkpoint's header.
pub(crate) fn decode_head(path: &Path, rest: &[u8]) -> Result<StateHead, CheckpointError> {
    postcard::take_from_bytes::<StateHead>(rest)
        .map(|(head, _)| head)
        .map_err(|err| {
            CheckpointError::new(
                path,
                CheckpointProblem::Corrupt(format!("its saved state does not decode ({err})")),
            )
        })
}

/// The state after a checkpoint's header.
pub(crate) fn decode_state<A>(path: &Path, rest: &[u8]) -> Result<State<A>, CheckpointError>
where
    A: serde::de::DeserializeOwned,
{
    let corrupt = |what: String| CheckpointError::new(path, CheckpointProblem::Corrupt(what));
    match postcard::take_from_bytes::<State<A>>(rest) {
        Ok((state, [])) => Ok(state),
        Ok((_, left)) => Err(corrupt(format!("{} byte(s) left after its state", left.len()))),
        Err(err) => Err(corrupt(format!("its saved state does not decode ({err})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            key: "k".into(),
            acc_type: "f64".into(),
            input: Input::Indexed(100),
            leaf_size: 4,
            deterministic: true,
            saved_at: 1,
        }
    }

    #[test]
    fn a_checkpoint_reads_back_as_written() {
        let stack = [(2u32, 1.5f64), (0, -0.0)];
        let bytes = encode(
            &meta(),
            &StateRef::Running {
                leaves: 5,
                items: 20,
                stack: &stack,
            },
        )
        .unwrap();
        let path = Path::new("x");
        let (read, rest) = decode_meta(path, &bytes).unwrap();
        assert_eq!(read, meta());
        let State::Running {
            leaves,
            items,
            stack: back,
        } = decode_state::<f64>(path, rest).unwrap()
        else {
            panic!("not running")
        };
        assert_eq!((leaves, items), (5, 20));
        assert_eq!(
            back.iter().map(|(h, a)| (*h, a.to_bits())).collect::<Vec<_>>(),
            [(2, 1.5f64.to_bits()), (0, (-0.0f64).to_bits())]
        );
        let bytes = encode(&meta(), &StateRef::Finished { answer: &7u8 }).unwrap();
        let (_, rest) = decode_meta(path, &bytes).unwrap();
        assert!(matches!(
            decode_state::<u8>(path, rest),
            Ok(State::Finished { answer: 7 })
        ));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let bytes = encode(
            &meta(),
            &StateRef::Running {
                leaves: 1,
                items: 4,
                stack: &[(0u32, 3u64)],
            },
        )
        .unwrap();
        let path = Path::new("x");
        for len in 0..bytes.len() {
            let err = decode_meta(path, &bytes[..len]).map(drop).unwrap_err();
            assert!(matches!(err.problem(), CheckpointProblem::Truncated), "{len}: {err}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_meta(path, &flipped).is_err(), "bit {bit} flipped went unnoticed");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_meta(path, &longer).is_err());
    }
}
