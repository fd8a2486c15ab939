//! [`StateHead`] of a document that arrives in pieces, at the speed of serde_json's slice
//! parser (issue 19).
//!
//! serde_json reads an `io::Read` a byte at a time (`IoRead`), about ten times slower
//! than a slice (`SliceRead`: measured 155 MB/s against 1.2–1.5 GB/s on this project's
//! 2-core machine), and on the gateway's write path that parse was what the last piece
//! of a 100 MiB state waited for. So the document is cut into values that are each
//! parsed from a slice: the top-level object's keys and values one by one, and the
//! elements of its `resources` array one by one, which is where a state's bulk is. Only
//! the value being received is held, so memory stays bounded by the largest resource
//! (not the document); a single value larger than [`SLICE_LIMIT`] is parsed from the
//! stream itself, the slow way, so even that is bounded.
//!
//! What is cut here is only where a value ends ([`End`]: strings, nesting, and the end
//! of a number or literal); whether it is valid JSON, and what it means, is serde_json's
//! judgement on the slice, with the same types [`super::RawHead`] uses, so a document
//! is accepted or refused as [`StateHead::parse`] would (a test compares them on
//! valid, malformed and cut-short documents).

use std::io::Read;

use bytes::Bytes;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::{Counted, Instances, NOT_AN_OBJECT, RawHead, StateHead};

/// A value still incomplete past this size is parsed from the stream instead.
pub(super) const SLICE_LIMIT: usize = 16 << 20;

fn refused(e: impl std::fmt::Display) -> String {
    format!("not a Terraform state document: {e}")
}

/// Where a value that starts at a given offset of the buffer ends, found incrementally
/// as the buffer grows (so a long value is scanned once, not again with every piece).
#[derive(Default)]
struct End {
    /// How far the value has been scanned (an offset from its start).
    scanned: usize,
    depth: usize,
    in_string: bool,
    /// The previous byte inside a string was a backslash.
    escaped: bool,
    /// The first byte: `"`, `{`, `[`, or another for a scalar.
    first: Option<u8>,
}

impl End {
    /// The value's length, once `value` holds all of it; `None` while it may go on.
    /// `ended`: no more bytes will come.
    fn find(&mut self, value: &[u8], ended: bool) -> Option<usize> {
        let first = match self.first {
            Some(f) => f,
            None => {
                let f = *value.first()?;
                self.first = Some(f);
                self.scanned = 1;
                match f {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth = 1,
                    _ => {}
                }
                f
            }
        };
        if !matches!(first, b'"' | b'{' | b'[') {
            // A number or literal runs to the next delimiter.
            return match value[self.scanned..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                Some(i) => Some(self.scanned + i),
                None if ended => Some(value.len()),
                None => {
                    self.scanned = value.len();
                    None
                }
            };
        }
        let mut i = self.scanned;
        while i < value.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &value[i..]) {
                    None => i = value.len(),
                    Some(k) => {
                        i += k;
                        if value[i] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                            if first == b'"' {
                                return Some(i + 1);
                            }
                        }
                        i += 1;
                    }
                }
                continue;
            }
            match value[i] {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        self.scanned = value.len();
        None
    }
}

/// The pieces, as they come, with what of them has not been parsed yet.
struct Source {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    buf: Vec<u8>,
    /// Parsed up to here.
    at: usize,
    ended: bool,
}

impl Source {
    /// One more piece into the buffer; `false` at the end of the document.
    fn more(&mut self) -> bool {
        if self.ended {
            return false;
        }
        // Drop what was parsed before growing the buffer.
        if self.at > 0 && self.at * 2 >= self.buf.len() {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        match self.rx.blocking_recv() {
            Some(piece) => {
                self.buf.extend_from_slice(&piece);
                true
            }
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The next byte that is not whitespace (not consumed); `None` at the end.
    fn peek(&mut self) -> Option<u8> {
        loop {
            while self.at < self.buf.len() {
                if !self.buf[self.at].is_ascii_whitespace() {
                    return Some(self.buf[self.at]);
                }
                self.at += 1;
            }
            if !self.more() {
                return None;
            }
        }
    }

    /// Consume `byte`, which must come next (after whitespace).
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        match self.peek() {
            Some(b) if b == byte => {
                self.at += 1;
                Ok(())
            }
            Some(b) => Err(refused(format!(
                "expected {what}, found `{}`",
                char::from(b).escape_default()
            ))),
            None => Err(refused(format!("it ends where {what} was expected"))),
        }
    }

    /// The next value, parsed as `T` from a slice (or from the stream when it grows
    /// past [`SLICE_LIMIT`] before it ends).
    fn value<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        if self.peek().is_none() {
            return Err(refused("it ends where a value was expected"));
        }
        let mut end = End::default();
        loop {
            if let Some(len) = end.find(&self.buf[self.at..], self.ended) {
                let slice = &self.buf[self.at..self.at + len];
                let value = serde_json::from_slice(slice).map_err(refused)?;
                self.at += len;
                return Ok(value);
            }
            if self.buf.len() - self.at > SLICE_LIMIT {
                return self.value_from_stream(end.first);
            }
            if !self.more() {
                // Incomplete at the end: serde_json says what is missing.
                let slice = &self.buf[self.at..];
                return match serde_json::from_slice::<T>(slice) {
                    Ok(_) => Err(refused("it ends in the middle of a value")),
                    Err(e) => Err(refused(e)),
                };
            }
        }
    }

    /// The slow way, for one huge value: serde_json reads it from the buffered part and
    /// then the pieces still coming. A string, object or array ends at a byte serde_json
    /// need not look past, so the pieces after it are exactly where it stopped.
    fn value_from_stream<T: DeserializeOwned>(&mut self, first: Option<u8>) -> Result<T, String> {
        if !matches!(first, Some(b'"' | b'{' | b'[')) {
            return Err(refused(format!(
                "a number or literal longer than {} MiB",
                SLICE_LIMIT >> 20
            )));
        }
        let held = self.buf.split_off(self.at);
        self.buf.clear();
        self.at = 0;
        let mut reader = Resume {
            held,
            at: 0,
            source: self,
        };
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        let value = T::deserialize(&mut de).map_err(refused)?;
        Ok(value)
    }
}

/// The held bytes, then the rest of the pieces: a `Read` for [`Source::value_from_stream`].
struct Resume<'a> {
    held: Vec<u8>,
    at: usize,
    source: &'a mut Source,
}

impl Read for Resume<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.at < self.held.len() {
                let n = out.len().min(self.held.len() - self.at);
                out[..n].copy_from_slice(&self.held[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            let s = &mut *self.source;
            if s.at < s.buf.len() {
                let n = out.len().min(s.buf.len() - s.at);
                out[..n].copy_from_slice(&s.buf[s.at..s.at + n]);
                s.at += n;
                return Ok(n);
            }
            if !s.more() {
                return Ok(0);
            }
        }
    }
}

/// The head of the document in `rx`'s pieces; the error says what is wrong with it.
pub(super) fn parse(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Result<StateHead, String> {
    let mut s = Source {
        rx,
        buf: Vec::new(),
        at: 0,
        ended: false,
    };
    match s.peek() {
        Some(b'{') => s.at += 1,
        _ => return Err(NOT_AN_OBJECT.into()),
    }
    let mut raw = RawHead {
        version: None,
        lineage: None,
        serial: None,
        resources: None,
    };
    let mut seen: [bool; 4] = [false; 4];
    if s.peek() == Some(b'}') {
        s.at += 1;
    } else {
        loop {
            let key: String = match s.peek() {
                Some(b'"') => s.value()?,
                _ => return Err(refused("expected a key (a string) in the object")),
            };
            s.expect(b':', "`:` after a key")?;
            let field = ["version", "lineage", "serial", "resources"]
                .iter()
                .position(|f| *f == key);
            if let Some(f) = field {
                if seen[f] {
                    return Err(refused(format!("duplicate field `{key}`")));
                }
                seen[f] = true;
            }
            match field {
                Some(0) => raw.version = s.value()?,
                Some(1) => raw.lineage = s.value()?,
                Some(2) => raw.serial = s.value()?,
                Some(3) if s.peek() == Some(b'[') => raw.resources = Some(resources(&mut s)?),
                Some(3) => raw.resources = s.value::<Option<Counted>>()?,
                _ => {
                    s.value::<IgnoredAny>()?;
                }
            }
            match s.peek() {
                Some(b',') => s.at += 1,
                Some(b'}') => {
                    s.at += 1;
                    break;
                }
                Some(b) => {
                    return Err(refused(format!(
                        "expected `,` or `}}` after a value, found `{}`",
                        char::from(b).escape_default()
                    )));
                }
                None => return Err(refused("it ends inside the object")),
            }
        }
    }
    if let Some(b) = s.peek() {
        return Err(refused(format!(
            "trailing characters after the object (`{}`)",
            char::from(b).escape_default()
        )));
    }
    StateHead::from_raw(raw)
}

/// The `resources` array, element by element: the number of resource instances.
fn resources(s: &mut Source) -> Result<Counted, String> {
    s.expect(b'[', "`[`")?;
    let mut n = 0;
    if s.peek() == Some(b']') {
        s.at += 1;
        return Ok(Counted(n));
    }
    loop {
        let Instances(k) = s.value()?;
        n += k;
        match s.peek() {
            Some(b',') => s.at += 1,
            Some(b']') => {
                s.at += 1;
                return Ok(Counted(n));
            }
            Some(b) => {
                return Err(refused(format!(
                    "expected `,` or `]` in `resources`, found `{}`",
                    char::from(b).escape_default()
                )));
            }
            None => return Err(refused("it ends inside `resources`")),
        }
    }
}
