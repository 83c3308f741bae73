//! How values sit in redb: records and raw mail as zstd frames behind a
//! one-byte format marker, so a stored mail costs less than twice its
//! size (issue 12 goal 4; `bench/compact_bench.sh` measures it).
//!
//! Records (tables of JSON): a value starting with `{` is plain JSON, what
//! versions before wrote; [`RECORD_ZSTD_V1`] + a zstd frame of the JSON is
//! what this version writes. Raw bytes (the `*_raw_packed` tables; the old
//! unmarked `*_raw` tables hold older values and mail above [`PACK_MAX`]):
//! [`RAW_PLAIN`] + the bytes, or
//! [`RAW_ZSTD_V1`] + a zstd frame of them.
//!
//! Each compressed format is tied to a built-in dictionary (`dict/*-v1.txt`:
//! sample records, common headers and the default acknowledgement) that
//! small values compress against. The files are part of the stored
//! format: never edit them; a better dictionary is a new file and a new
//! marker, and the old marker keeps reading with the old file.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// Record marker: zstd frame of the JSON, against `dict/records-v1.txt`.
pub const RECORD_ZSTD_V1: u8 = 0x01;
/// Raw marker: the bytes as they are (compressing did not make them smaller).
pub const RAW_PLAIN: u8 = 0x00;
/// Raw marker: zstd frame of the bytes, against `dict/raw-v1.txt`.
pub const RAW_ZSTD_V1: u8 = 0x01;

/// zstd level 1: ~40 us for 10 KB of text on this machine, ~4 us a record
/// (level 3 took 3x as long on 10 KB and packed no smaller).
const LEVEL: i32 = 1;
/// Raw bytes above this size are not packed: they go to the old unmarked
/// table as they are (no copy next to the mail and redb's write buffer, the
/// memory bound of a large message; mostly attachments that barely shrink).
pub const PACK_MAX: usize = 1024 * 1024;
/// What a frame may claim to expand to (above the largest mail the limits
/// allow): a corrupt size never becomes a huge allocation.
const MAX_UNPACKED: u64 = 1 << 30;

static RECORD_DICT: &[u8] = include_bytes!("dict/records-v1.txt");
static RAW_DICT: &[u8] = include_bytes!("dict/raw-v1.txt");

type Prepared = Option<(EncoderDictionary<'static>, DecoderDictionary<'static>)>;

/// The dictionaries digested once (None if zstd could not allocate them).
static RECORD: LazyLock<Prepared> = LazyLock::new(|| prepare(RECORD_DICT));
static RAW: LazyLock<Prepared> = LazyLock::new(|| prepare(RAW_DICT));

fn prepare(dict: &[u8]) -> Prepared {
    Some((
        EncoderDictionary::try_copy(dict, LEVEL).ok()?,
        DecoderDictionary::try_copy(dict).ok()?,
    ))
}

/// One compression and one decompression context per thread and
/// dictionary (a context is reused from call to call).
struct Contexts {
    record: Option<(Compressor<'static>, Decompressor<'static>)>,
    raw: Option<(Compressor<'static>, Decompressor<'static>)>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = const { RefCell::new(Contexts { record: None, raw: None }) };
}

#[derive(Clone, Copy)]
enum Dict {
    Record,
    Raw,
}

fn with_contexts<R>(
    dict: Dict,
    f: impl FnOnce(&mut Compressor<'static>, &mut Decompressor<'static>) -> std::io::Result<R>,
) -> std::io::Result<R> {
    CONTEXTS.with(|cell| {
        let mut contexts = cell.borrow_mut();
        let slot = match dict {
            Dict::Record => &mut contexts.record,
            Dict::Raw => &mut contexts.raw,
        };
        if slot.is_none() {
            let prepared = match dict {
                Dict::Record => &*RECORD,
                Dict::Raw => &*RAW,
            };
            let (enc, dec) = prepared
                .as_ref()
                .ok_or_else(|| invalid("zstd could not prepare its dictionary"))?;
            *slot = Some((
                Compressor::with_prepared_dictionary(enc)?,
                Decompressor::with_prepared_dictionary(dec)?,
            ));
        }
        let (c, d) = slot.as_mut().expect("just filled");
        f(c, d)
    })
}

fn compress(dict: Dict, marker: u8, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    with_contexts(dict, |c, _| {
        let mut out = Vec::with_capacity(1 + zstd::zstd_safe::compress_bound(bytes.len()));
        out.push(marker);
        // The frame goes after the marker (a plain Vec would be written from 0).
        let mut cursor = std::io::Cursor::new(out);
        cursor.set_position(1);
        c.compress_to_buffer(bytes, &mut cursor)?;
        Ok(cursor.into_inner())
    })
}

fn decompress(dict: Dict, frame: &[u8]) -> std::io::Result<Vec<u8>> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= MAX_UNPACKED => n as usize,
        _ => return Err(invalid("the frame does not name a plausible size")),
    };
    with_contexts(dict, |_, d| {
        let out = d.decompress(frame, size)?;
        if out.len() != size {
            return Err(invalid("the frame is shorter than it says"));
        }
        Ok(out)
    })
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// A record's JSON as it is stored: compressed, or the JSON itself if
/// compressing fails (a context could not be allocated).
pub fn pack_record(json: Vec<u8>) -> Vec<u8> {
    compress(Dict::Record, RECORD_ZSTD_V1, &json).unwrap_or(json)
}

/// The JSON of a stored record (either format).
pub fn unpack_record(stored: &[u8]) -> std::io::Result<std::borrow::Cow<'_, [u8]>> {
    match stored.split_first() {
        Some((&RECORD_ZSTD_V1, frame)) => Ok(decompress(Dict::Record, frame)?.into()),
        _ => Ok(stored.into()),
    }
}

/// Raw bytes as the `*_raw_packed` tables store them: compressed when
/// that is smaller, else marked as they are.
pub fn pack_raw(raw: &[u8]) -> Vec<u8> {
    match compress(Dict::Raw, RAW_ZSTD_V1, raw) {
        Ok(packed) if packed.len() < raw.len() + 1 => packed,
        _ => {
            let mut out = Vec::with_capacity(raw.len() + 1);
            out.push(RAW_PLAIN);
            out.extend_from_slice(raw);
            out
        }
    }
}

/// Raw bytes packed by the caller's thread before they reach the writer
/// (which is one thread for the whole gateway), found again by address:
/// while the request holding the bytes is alive, which it is for its whole
/// batch, nothing else can be at that address with that length.
pub struct Prepacked {
    addr: usize,
    len: usize,
    packed: Vec<u8>,
}

impl Prepacked {
    /// Packs `raw` (held by a request that outlives the batch it is in).
    pub fn of(raw: &[u8]) -> Prepacked {
        Prepacked {
            addr: raw.as_ptr() as usize,
            len: raw.len(),
            packed: pack_raw(raw),
        }
    }

    /// The packed form of `raw` if one of `list` was made from these bytes.
    pub fn find<'a>(list: &'a [Prepacked], raw: &[u8]) -> Option<&'a [u8]> {
        let (addr, len) = (raw.as_ptr() as usize, raw.len());
        list.iter()
            .find(|p| len != 0 && p.addr == addr && p.len == len)
            .map(|p| p.packed.as_slice())
    }
}

/// The raw bytes of a `*_raw_packed` value.
pub fn unpack_raw(stored: &[u8]) -> std::io::Result<Vec<u8>> {
    match stored.split_first() {
        Some((&RAW_PLAIN, bytes)) => Ok(bytes.to_vec()),
        Some((&RAW_ZSTD_V1, frame)) => decompress(Dict::Raw, frame),
        Some((other, _)) => Err(invalid(&format!("unknown raw format {other}"))),
        None => Err(invalid("empty raw value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_plain_json_still_reads() {
        let json = br#"{"id":7,"subject":"printer","text":"It smokes."}"#.to_vec();
        let packed = pack_record(json.clone());
        assert_eq!(packed[0], RECORD_ZSTD_V1);
        assert_eq!(unpack_record(&packed).unwrap().as_ref(), json.as_slice());
        // What versions before wrote: JSON as it is.
        assert_eq!(unpack_record(&json).unwrap().as_ref(), json.as_slice());
    }

    #[test]
    fn raw_round_trips_compressed_or_plain() {
        let mail = b"From: Ann <ann@customer.test>\r\nTo: support@example.test\r\nSubject: printer\r\n\r\nIt smokes, it smokes, it smokes again.\r\n".repeat(20);
        let packed = pack_raw(&mail);
        assert_eq!(packed[0], RAW_ZSTD_V1);
        assert!(packed.len() < mail.len() / 4, "{} bytes", packed.len());
        assert_eq!(unpack_raw(&packed).unwrap(), mail);
        // Incompressible bytes are kept as they are, behind the marker.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let packed = pack_raw(&noise);
        assert_eq!(packed[0], RAW_PLAIN);
        assert_eq!(packed.len(), noise.len() + 1);
        assert_eq!(unpack_raw(&packed).unwrap(), noise);
        assert_eq!(unpack_raw(&pack_raw(b"")).unwrap(), b"");
    }

    #[test]
    fn prepacked_bytes_are_found_by_their_address_only() {
        let raw = b"Subject: a\r\n\r\nthe same text, the same text, the same text\r\n".to_vec();
        let list = [Prepacked::of(&raw)];
        assert_eq!(
            Prepacked::find(&list, &raw),
            Some(pack_raw(&raw).as_slice())
        );
        let copy = raw.clone();
        assert_eq!(Prepacked::find(&list, &copy), None);
        assert_eq!(Prepacked::find(&list, &raw[1..]), None);
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let packed = pack_raw(&b"Subject: x\r\n\r\nbody body body body\r\n".repeat(10));
        assert!(unpack_raw(&packed[..packed.len() / 2]).is_err());
        assert!(unpack_raw(&[9, 1, 2, 3]).is_err());
        assert!(unpack_raw(&[]).is_err());
        assert!(unpack_record(&[RECORD_ZSTD_V1, 0x28, 0xb5]).is_err());
    }
}
