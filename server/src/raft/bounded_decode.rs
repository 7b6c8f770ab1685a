//! bincode decoding that allocates no more than the input justifies.
//!
//! bincode 2 allocates a `String` or byte vector at the length its prefix claims *before* it
//! reads the bytes (`vec![0; len]`), so without a limit a few corrupt bytes (a flipped bit in a
//! log record, a hostile peer frame) ask for gigabytes, or for more than `isize::MAX` and panic.
//! A decode limit bounds every claim, but bincode takes it as a const generic; so the input's
//! length picks one of a few size classes, and no claim can exceed 16 times the input (at least
//! 64 KiB), while a valid encoding (whose claims never exceed its own length) always fits.

use bincode::config::{Config, Configuration};
use bincode::error::DecodeError;
use serde::de::DeserializeOwned;

/// Decodes `bytes` with bincode's standard configuration and a claim limit scaled to their
/// length; returns the value and the bytes it used.
pub fn decode_bounded<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeError> {
    fn with<T: DeserializeOwned, C: Config>(
        bytes: &[u8],
        config: C,
    ) -> Result<(T, usize), DecodeError> {
        bincode::serde::decode_from_slice(bytes, config)
    }
    let standard: Configuration = bincode::config::standard();
    match bytes.len() {
        n if n <= 1 << 12 => with(bytes, standard.with_limit::<{ 1 << 16 }>()),
        n if n <= 1 << 16 => with(bytes, standard.with_limit::<{ 1 << 20 }>()),
        n if n <= 1 << 20 => with(bytes, standard.with_limit::<{ 1 << 24 }>()),
        n if n <= 1 << 24 => with(bytes, standard.with_limit::<{ 1 << 28 }>()),
        _ => with(bytes, standard.with_limit::<{ 1 << 31 }>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_encodings_decode_at_every_size_class() {
        for len in [0, 100, 5_000, 70_000, 2_000_000] {
            let value = (vec![7u8; len], "name".to_owned(), 42u64);
            let bytes = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
            let (back, used): ((Vec<u8>, String, u64), usize) = decode_bounded(&bytes).unwrap();
            assert_eq!((back, used), (value, bytes.len()));
        }
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating() {
        // A varint u64 length prefix of 2^62 (0xfd = 8 bytes follow), then nothing.
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode_bounded::<String>(&bytes).is_err());
        assert!(decode_bounded::<Vec<u8>>(&bytes).is_err());
        // 1 GiB claimed by a 9-byte input.
        let mut bytes = vec![0xfc];
        bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(
            decode_bounded::<String>(&bytes),
            Err(DecodeError::LimitExceeded)
        ));
    }
}
