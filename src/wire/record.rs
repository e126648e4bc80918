//! Records of a sealed (password-protected) link: after the 6-byte header, everything on the TCP
//! stream is a record, a big-endian u16 length and that many bytes of one Noise message (a
//! handshake message, or a transport message holding a piece of the plaintext stream). The u16
//! bounds a record by Noise's own limit of 65,535 bytes, so a hostile length prefix can claim at
//! most 64 KiB. One length is reserved: an empty record is the abort notice, sent in the clear by
//! an end whose Noise handshake failed so that the other end can say why the link ended.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;

/// Largest Noise message (the Noise specification, section 3; snow's `MAXMSGLEN`).
pub const MAX_RECORD_BYTES: usize = 65_535;
/// The AEAD tag every non-empty Noise message of a sealed link ends with (ChaCha20-Poly1305).
pub const RECORD_TAG_BYTES: usize = 16;
/// Most plaintext one transport record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD_BYTES - RECORD_TAG_BYTES;
pub const RECORD_PREFIX_BYTES: usize = 2;

/// One record as read off the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The sender could not authenticate us and is closing.
    Abort,
    /// A Noise message, not yet authenticated.
    Sealed(Bytes),
}

/// Takes one whole record off the front of `src`: `None` while it is incomplete. The length is
/// checked before the body is waited for: 1 to 15 bytes cannot hold a tag.
pub fn decode_record(src: &mut BytesMut) -> Result<Option<Record>, WireError> {
    let Some(prefix) = src.first_chunk::<RECORD_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes(*prefix));
    if len != 0 && len < RECORD_TAG_BYTES {
        return Err(WireError::RecordTooShort {
            len,
            min: RECORD_TAG_BYTES,
        });
    }
    if src.len() < RECORD_PREFIX_BYTES + len {
        src.reserve(RECORD_PREFIX_BYTES + len - src.len());
        return Ok(None);
    }
    src.advance(RECORD_PREFIX_BYTES);
    Ok(Some(match len {
        0 => Record::Abort,
        _ => Record::Sealed(src.split_to(len).freeze()),
    }))
}

/// Appends `record` to `out`.
pub fn encode_record(record: &Record, out: &mut BytesMut) -> Result<(), WireError> {
    let body: &[u8] = match record {
        Record::Abort => &[],
        Record::Sealed(message) => message,
    };
    let len = body.len();
    if matches!(record, Record::Sealed(_)) && !(RECORD_TAG_BYTES..=MAX_RECORD_BYTES).contains(&len)
    {
        return Err(if len > MAX_RECORD_BYTES {
            WireError::FrameTooLarge {
                len,
                max: MAX_RECORD_BYTES,
            }
        } else {
            WireError::RecordTooShort {
                len,
                min: RECORD_TAG_BYTES,
            }
        });
    }
    out.reserve(RECORD_PREFIX_BYTES + len);
    // In range: checked above (an abort is empty).
    out.put_u16(len as u16);
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests;
