//! shoal's wire protocol: RESP2/RESP3 frames, the incremental decoders and the encoder, input
//! limits, Redis Cluster's key → slot function, and the command table.
//!
//! This crate does no I/O and knows nothing of shards or Raft; the server and the client crate
//! both build on it, so the two can never disagree about the wire.

pub mod command;
pub mod encode;
pub mod frame;
pub mod limits;
pub mod parse;
pub mod request;
pub mod slot;

pub use command::{CommandId, CommandSpec, Flags, Group, KeySpec, LookupError, COMMANDS};
pub use encode::{encode, encode_command, format_double, format_reply_double, Version};
pub use frame::Frame;
pub use limits::{Limits, ProtocolError, INLINE_MAX};
pub use parse::{decode_frame, parse_int, FrameCodec};
pub use request::{split_inline_args, RequestDecoder};
pub use slot::{hash_tag, key_slot, SLOT_COUNT};
