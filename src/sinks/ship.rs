//! What every forwarder ships of an entry, decided in one place: which
//! timestamp, and how message bytes become text.
//!
//! - [`ship_time`] is the only function a forwarder asks for an entry's
//!   time. Today it is the ring's receive time; once entries carry the
//!   producer's own time it becomes that, for every forwarder at once.
//! - [`message_text`] turns message bytes into the UTF-8 text that Loki
//!   (JSON and protobuf `string`) and CloudWatch Logs require, by the rule
//!   of [`crate::format`]: valid UTF-8 is kept as is and each byte that is
//!   not part of valid UTF-8 becomes the four characters `\xNN`. Nothing is
//!   replaced silently and the same bytes always give the same text, so a
//!   re-sent entry is identical to the first copy (Loki drops it).
//!   Syslog ships the bytes as they are (RFC 5424 allows any octets in MSG).
//! - [`Admit`] is what every batcher answers when offered an entry.
//! - [`OriginCache`] keeps what a forwarder derives from an entry's origin
//!   (labels, destination names), so it is computed once per source.
//! - [`split_text`] cuts a text into pieces of at most a given number of
//!   bytes, at character boundaries, for backends that cap a line.

use std::borrow::Cow;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};

use crate::entry::{EntryRef, Flags, Origin};

/// Whether a batcher took an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Added,
    /// The batch is full: finish it and push the entry again (a batcher
    /// always takes the first entry of a batch, so the entry will fit).
    Full,
}

/// The time to ship for an entry, in ns since the Unix epoch.
#[inline]
pub fn ship_time(e: &EntryRef<'_>) -> u64 {
    e.time
}

/// `msg` as UTF-8 text: borrowed when it is valid UTF-8, otherwise with each
/// invalid byte written as `\xNN` in lower-case hex (`\xff`), as
/// [`crate::format`] writes it.
pub fn message_text(msg: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(msg) {
        return Cow::Borrowed(s);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(msg.len() + 16);
    for chunk in msg.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push_str("\\x");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    Cow::Owned(out)
}

/// What a forwarder derives from an origin and the stream and level of an
/// entry (the other flags do not shape labels or names), computed once.
///
/// A lookup hashes the origin once, with no allocation; the entry before
/// it is checked first, which a run of entries from one source hits
/// without hashing.
#[derive(Debug)]
pub struct OriginCache<T> {
    /// By the hash of (origin, bits): the origins with that hash.
    map: FxHashMap<u64, Vec<Cached<T>>>,
    /// The last lookup.
    last: Option<Cached<T>>,
    /// Values held.
    len: usize,
}

/// An origin, the flag bits that matter, and its value.
type Cached<T> = (Arc<Origin>, u8, Arc<T>);

impl<T> Default for OriginCache<T> {
    fn default() -> Self {
        OriginCache {
            map: FxHashMap::default(),
            last: None,
            len: 0,
        }
    }
}

impl<T> OriginCache<T> {
    /// The value for `origin` with `flags`, made by `make` the first time.
    pub fn get_or_insert_with(
        &mut self,
        origin: &Origin,
        flags: Flags,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let bits = flags.bits() & 0xfc;
        if let Some((o, b, v)) = &self.last {
            if *b == bits && **o == *origin {
                return v.clone();
            }
        }
        let mut hasher = FxHasher::default();
        origin.hash(&mut hasher);
        bits.hash(&mut hasher);
        let bucket = self.map.entry(hasher.finish()).or_default();
        let (o, v) = match bucket.iter().find(|(o, b, _)| *b == bits && **o == *origin) {
            Some((o, _, v)) => (o.clone(), v.clone()),
            None => {
                let o = Arc::new(origin.clone());
                let v = Arc::new(make());
                bucket.push((o.clone(), bits, v.clone()));
                self.len += 1;
                (o, v)
            }
        };
        self.last = Some((o, bits, v.clone()));
        v
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.last = None;
        self.len = 0;
    }
}

/// Splits `text` into pieces of at most `max_bytes` bytes each, cutting only
/// at character boundaries. An empty text gives one empty piece. A
/// `max_bytes` below 4 is raised to 4 so that every character fits.
pub fn split_text(text: &str, max_bytes: usize) -> SplitText<'_> {
    SplitText {
        rest: text,
        max: max_bytes.max(4),
        first: true,
    }
}

/// The iterator of [`split_text`].
#[derive(Clone, Debug)]
pub struct SplitText<'a> {
    rest: &'a str,
    max: usize,
    first: bool,
}

impl<'a> Iterator for SplitText<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            if std::mem::take(&mut self.first) {
                return Some("");
            }
            return None;
        }
        self.first = false;
        let mut cut = self.rest.len().min(self.max);
        while !self.rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, rest) = self.rest.split_at(cut);
        self.rest = rest;
        Some(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_bytes() {
        assert!(matches!(message_text(b"plain"), Cow::Borrowed("plain")));
        assert_eq!(message_text(b"a\xffb\xc3"), "a\\xffb\\xc3");
        assert_eq!(message_text("é\u{1F600}".as_bytes()), "é\u{1F600}");
        // The rule is a function of the bytes: the same input, the same text.
        assert_eq!(message_text(b"\x80\x80"), message_text(b"\x80\x80"));
    }

    #[test]
    fn origin_cache_computes_once_per_origin_and_shape() {
        use crate::entry::Stream;
        let mut cache = OriginCache::default();
        let mut made = 0;
        let a = Origin::new("a").with_label("k", "v");
        let b = Origin::new("b");
        let stderr = Flags::default().with_stream(Some(Stream::Stderr));
        for (origin, flags) in [
            (&a, Flags::default()),
            (&b, Flags::default()),
            (&a, Flags::default().with_partial(true)),
            (&a, stderr),
            (&a.clone(), Flags::default()),
        ] {
            cache.get_or_insert_with(origin, flags, || {
                made += 1;
                made
            });
        }
        // a, b, a on stderr; partial does not count and equal origins share.
        assert_eq!((made, cache.len()), (3, 3));
        assert_eq!(*cache.get_or_insert_with(&b, Flags::default(), || 99), 2);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn splits_at_char_boundaries() {
        let s = "aé\u{1F600}bc";
        let pieces: Vec<&str> = split_text(s, 4).collect();
        assert_eq!(pieces, ["aé", "\u{1F600}", "bc"]);
        assert_eq!(pieces.concat(), s);
        assert!(pieces.iter().all(|p| p.len() <= 4));
        assert_eq!(split_text("", 10).collect::<Vec<_>>(), [""]);
        assert_eq!(split_text("abc", 10).collect::<Vec<_>>(), ["abc"]);
        assert_eq!(split_text("abcdef", 3).count(), 2);
        // A cap below one character's size still makes progress.
        assert_eq!(split_text("\u{1F600}\u{1F600}", 1).count(), 2);
    }
}
