//! The peer wire format: how nodes frame messages on their shared TCP connection.
//!
//! Each frame is `[u32 len LE][u32 crc32 LE][payload]`, where the payload is
//! `bincode(PeerMessage { group, request_id, body })`. `group` names the Raft group (0 is the
//! metadata group, shards follow), so one connection per node pair carries every group's
//! traffic; `request_id` matches responses to requests, so many requests can be in flight.
//!
//! A frame whose checksum does not match is an error that closes the connection: after a
//! corrupted length nothing that follows can be trusted, and Raft retries on a new connection.
//! A length above the limit is refused before anything is allocated for it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use super::bounded_decode::decode_bounded;

/// Length and checksum.
const HEADER: usize = 8;
/// Default largest frame: snapshots travel in chunks well below this.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// One message between peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerMessage<B> {
    /// The Raft group the message belongs to; 0 is the metadata group.
    pub group: u64,
    /// Chosen by the requester; a response carries the request's id.
    pub request_id: u64,
    pub body: B,
}

#[derive(Debug, Error)]
pub enum WireError {
    #[error("peer frame checksum mismatch (expected {expected:#010x}, got {actual:#010x})")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("peer frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("peer frame does not decode: {0}")]
    Decode(String),
    #[error("peer frame does not encode: {0}")]
    Encode(String),
    #[error("peer connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Frames payloads with length and CRC; yields verified payloads.
#[derive(Clone, Debug)]
pub struct PeerCodec {
    max_frame: usize,
}

impl Default for PeerCodec {
    fn default() -> Self {
        PeerCodec {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

impl PeerCodec {
    pub fn new(max_frame: usize) -> PeerCodec {
        PeerCodec { max_frame }
    }
}

impl Decoder for PeerCodec {
    type Item = Bytes;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        if src.len() < HEADER {
            return Ok(None);
        }
        let len = u32::from_le_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_frame {
            return Err(WireError::TooLarge(len, self.max_frame));
        }
        if src.len() < HEADER + len {
            // Reserve only what the (bounded) length says is coming.
            src.reserve(HEADER + len - src.len());
            return Ok(None);
        }
        let expected = u32::from_le_bytes([src[4], src[5], src[6], src[7]]);
        src.advance(HEADER);
        let payload = src.split_to(len).freeze();
        let actual = crc32fast::hash(&payload);
        if actual != expected {
            return Err(WireError::BadChecksum { expected, actual });
        }
        Ok(Some(payload))
    }
}

impl Encoder<&[u8]> for PeerCodec {
    type Error = WireError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), WireError> {
        if payload.len() > self.max_frame {
            return Err(WireError::TooLarge(payload.len(), self.max_frame));
        }
        dst.reserve(HEADER + payload.len());
        dst.put_u32_le(payload.len() as u32);
        dst.put_u32_le(crc32fast::hash(payload));
        dst.put_slice(payload);
        Ok(())
    }
}

impl Encoder<Vec<u8>> for PeerCodec {
    type Error = WireError;

    fn encode(&mut self, payload: Vec<u8>, dst: &mut BytesMut) -> Result<(), WireError> {
        self.encode(&payload[..], dst)
    }
}

/// Serializes a message into a frame payload.
pub fn to_payload<B: Serialize>(msg: &PeerMessage<B>) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(msg, bincode::config::standard())
        .map_err(|e| WireError::Encode(e.to_string()))
}

/// The routing part of a message, readable without knowing the body's type (bincode writes
/// struct fields in order, so these are the payload's first two values).
#[derive(Debug, Deserialize)]
pub struct Header {
    pub group: u64,
    pub request_id: u64,
}

/// Reads only the header of a verified frame payload.
pub fn header_of(payload: &[u8]) -> Result<Header, WireError> {
    decode_bounded(payload)
        .map(|(h, _)| h)
        .map_err(|e| WireError::Decode(e.to_string()))
}

/// Deserializes a verified frame payload (allocating no more than its length justifies: see
/// [`decode_bounded`]).
pub fn from_payload<B: DeserializeOwned>(payload: &[u8]) -> Result<PeerMessage<B>, WireError> {
    let (msg, used) = decode_bounded(payload).map_err(|e| WireError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(WireError::Decode(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &PeerMessage<Vec<String>>) -> BytesMut {
        let mut out = BytesMut::new();
        PeerCodec::default()
            .encode(&to_payload(msg).unwrap()[..], &mut out)
            .unwrap();
        out
    }

    fn msg(id: u64) -> PeerMessage<Vec<String>> {
        PeerMessage {
            group: 3,
            request_id: id,
            body: vec!["append".into(), "x".repeat(id as usize)],
        }
    }

    #[test]
    fn round_trip_split_at_every_byte() {
        let mut wire = frame(&msg(1));
        wire.extend_from_slice(&frame(&msg(40)));
        for cut in 0..wire.len() {
            let mut codec = PeerCodec::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(p) = codec.decode(&mut buf).unwrap() {
                got.push(from_payload::<Vec<String>>(&p).unwrap());
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(p) = codec.decode(&mut buf).unwrap() {
                got.push(from_payload::<Vec<String>>(&p).unwrap());
            }
            assert_eq!(got, vec![msg(1), msg(40)], "cut at {cut}");
        }
    }

    #[test]
    fn a_bad_checksum_is_rejected() {
        let mut wire = frame(&msg(5));
        let last = wire.len() - 1;
        wire[last] ^= 0x40;
        let err = PeerCodec::default().decode(&mut wire).unwrap_err();
        assert!(matches!(err, WireError::BadChecksum { .. }), "{err}");
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocating() {
        let mut wire = BytesMut::new();
        wire.put_u32_le(u32::MAX);
        wire.put_u32_le(0);
        let err = PeerCodec::new(1024).decode(&mut wire).unwrap_err();
        assert!(matches!(err, WireError::TooLarge(_, 1024)));
        assert!(wire.capacity() < 1 << 20);
    }

    #[test]
    fn the_header_reads_without_the_body_type() {
        let h = header_of(&to_payload(&msg(9)).unwrap()).unwrap();
        assert_eq!((h.group, h.request_id), (3, 9));
    }

    #[test]
    fn garbage_payloads_do_not_decode() {
        assert!(from_payload::<Vec<String>>(&[0xff; 7]).is_err());
    }
}
