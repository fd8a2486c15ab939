//! The few fields of a Terraform state document nubes needs (lineage, serial, number of
//! resources), read without building the whole document in memory, and the write guard
//! that refuses another lineage or a lower serial.

use std::io::{BufRead, BufReader, Read};

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::env_name::printable;

mod pieces;

const NOT_AN_OBJECT: &str = "not a Terraform state document: it is not a JSON object";

/// Lineage and serial of a state document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateHead {
    pub lineage: String,
    pub serial: u64,
    /// Resource instances (a `count = 3` resource counts 3).
    pub resources: usize,
}

#[derive(Deserialize)]
struct RawHead {
    version: Option<u64>,
    lineage: Option<String>,
    serial: Option<serde_json::Number>,
    #[serde(default)]
    resources: Option<Counted>,
}

/// Counts resource instances (`resources[*].instances[*]`) without keeping them.
struct Counted(usize);

/// One element of `resources`: only its number of instances is kept.
struct Instances(usize);

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Resource {
            #[serde(default)]
            instances: Option<Vec<IgnoredAny>>,
        }
        Ok(Instances(
            Resource::deserialize(d)?
                .instances
                .map(|i| i.len())
                .unwrap_or(0),
        ))
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Counted;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Counted, A::Error> {
                let mut n = 0;
                while let Some(Instances(k)) = seq.next_element::<Instances>()? {
                    n += k;
                }
                Ok(Counted(n))
            }
        }
        d.deserialize_seq(V)
    }
}

impl StateHead {
    /// Parse the head of a state document; the error says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        // serde reads a struct from a JSON array too (`[4, "lineage", 1]`); a state
        // document is always an object, and code that edits it relies on that.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(NOT_AN_OBJECT.into());
        }
        let raw: RawHead = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a Terraform state document: {e}"))?;
        Self::from_raw(raw)
    }

    /// [`parse`](StateHead::parse) of a document read in pieces (a streamed body, a
    /// file): the whole document is checked, but only the head is kept in memory.
    pub fn parse_reader<R: Read>(reader: R) -> Result<Self, String> {
        let mut reader = BufReader::with_capacity(64 << 10, reader);
        loop {
            let buf = reader
                .fill_buf()
                .map_err(|e| format!("cannot read the state document: {e}"))?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) if buf[i] == b'{' => {
                    reader.consume(i);
                    break;
                }
                Some(_) => return Err(NOT_AN_OBJECT.into()),
                None if buf.is_empty() => return Err(NOT_AN_OBJECT.into()),
                None => {
                    let n = buf.len();
                    reader.consume(n);
                }
            }
        }
        let mut de = serde_json::Deserializer::from_reader(reader);
        let raw = RawHead::deserialize(&mut de)
            .and_then(|raw| de.end().map(|()| raw))
            .map_err(|e| format!("not a Terraform state document: {e}"))?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawHead) -> Result<Self, String> {
        if raw.version.is_none() {
            return Err("not a Terraform state document: no `version` field".into());
        }
        let lineage = raw
            .lineage
            .filter(|l| !l.is_empty())
            .ok_or_else(|| "not a Terraform state document: no `lineage`".to_string())?;
        let serial = match raw.serial {
            None => return Err("not a Terraform state document: no `serial`".into()),
            Some(n) => n.as_u64().ok_or_else(|| {
                format!(
                    "invalid state document: `serial` is {n}, it must be a non-negative integer"
                )
            })?,
        };
        Ok(StateHead {
            lineage,
            serial,
            resources: raw.resources.map(|c| c.0).unwrap_or(0),
        })
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Lineage { stored: String, incoming: String },
    Serial { stored: u64, incoming: u64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Lineage { stored, incoming } => write!(
                f,
                "the new state has lineage {} but the stored state has lineage {}: it belongs to \
                 a different state history, so the stored state was kept",
                printable(incoming),
                printable(stored)
            ),
            Refusal::Serial { stored, incoming } => write!(
                f,
                "the new state has serial {incoming}, lower than the stored serial {stored}: it is \
                 older than what is stored, so the stored state was kept"
            ),
        }
    }
}

/// A write may replace `stored` only with the same lineage and a serial not lower.
pub fn check_write(stored: Option<&StateHead>, incoming: &StateHead) -> Result<(), Refusal> {
    let Some(stored) = stored else { return Ok(()) };
    if stored.lineage != incoming.lineage {
        return Err(Refusal::Lineage {
            stored: stored.lineage.clone(),
            incoming: incoming.lineage.clone(),
        });
    }
    if incoming.serial < stored.serial {
        return Err(Refusal::Serial {
            stored: stored.serial,
            incoming: incoming.serial,
        });
    }
    Ok(())
}

/// Parses a state document's head while its pieces pass by (a request body on its way
/// to storage), on a blocking thread so the pieces keep moving: [`HeadFeed::feed`] each
/// piece in order, then [`HeadFeed::finish`] for the verdict on the whole document.
pub struct HeadFeed {
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    task: Option<tokio::task::JoinHandle<Result<StateHead, String>>>,
    /// The verdict, once the parser has given it.
    verdict: Option<Result<StateHead, String>>,
}

impl HeadFeed {
    pub fn start() -> HeadFeed {
        // A few pieces of slack: the parser keeps up with storage, and a bounded queue
        // keeps memory bounded if it does not.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        // Value by value from slices (`pieces`): ten times the speed of a reader.
        let task = tokio::task::spawn_blocking(move || pieces::parse(rx));
        HeadFeed {
            tx: Some(tx),
            task: Some(task),
            verdict: None,
        }
    }

    /// Hands the parser the next piece. `Err` with the reason as soon as the parser has
    /// refused the document: the parser reads to the end before it accepts one, so a
    /// parser that stopped taking pieces has refused, and the caller can stop reading
    /// (and stop sending the body anywhere) there.
    pub async fn feed(&mut self, piece: Bytes) -> Result<(), String> {
        if let Some(tx) = &self.tx
            && tx.send(piece).await.is_ok()
        {
            return Ok(());
        }
        self.tx = None;
        match self.verdict().await {
            Err(why) => Err(why.clone()),
            // Unreachable by construction (see above), but never a silent accept.
            Ok(_) => Err("not a Terraform state document: data after its end".into()),
        }
    }

    pub async fn finish(mut self) -> Result<StateHead, String> {
        self.tx = None;
        self.verdict().await.clone()
    }

    async fn verdict(&mut self) -> &Result<StateHead, String> {
        if let Some(task) = self.task.take() {
            self.verdict = Some(match task.await {
                Ok(verdict) => verdict,
                Err(e) => Err(format!("the state document could not be checked: {e}")),
            });
        }
        self.verdict.get_or_insert_with(|| {
            Err("the state document could not be checked: its parser is gone".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_head_and_counts_resources() {
        let h = StateHead::parse(br#"{"version":4,"serial":7,"lineage":"abc","resources":[{"instances":[{},{}]},{"b":[1,2],"instances":[{"x":1}]},{}],"outputs":{}}"#).unwrap();
        assert_eq!(
            h,
            StateHead {
                lineage: "abc".into(),
                serial: 7,
                resources: 3
            }
        );
    }

    #[test]
    fn rejects_bad_documents() {
        for (doc, want) in [
            (&b"{"[..], "not a Terraform state"),
            (&b"[]"[..], "not a Terraform state"),
            (br#"[4, "lineage", 1]"#, "not a JSON object"),
            (
                br#"{"version":4,"serial":-1,"lineage":"a"}"#,
                "non-negative",
            ),
            (
                br#"{"version":4,"serial":"1","lineage":"a"}"#,
                "not a Terraform state",
            ),
            (br#"{"version":4,"serial":1}"#, "lineage"),
            (br#"{"serial":1,"lineage":"a"}"#, "version"),
        ] {
            let e = StateHead::parse(doc).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn reading_in_pieces_agrees_with_reading_whole() {
        let docs: [&[u8]; 6] = [
            br#"  {"version":4,"serial":7,"lineage":"abc","resources":[{"instances":[{},{}]}]}"#,
            br#"[4, "lineage", 1]"#,
            br#"{"version":4,"serial":-1,"lineage":"a"}"#,
            br#"{"version":4,"serial":1,"lineage":"a"} trailing"#,
            br#"{"version":4,"serial":1,"lineage":"a""#,
            b"   ",
        ];
        for doc in docs {
            // One byte per read: the worst case for the buffered reader.
            struct Trickle<'a>(&'a [u8]);
            impl Read for Trickle<'_> {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let n = self.0.len().min(buf.len()).min(1);
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let whole = StateHead::parse(doc);
            let pieces = StateHead::parse_reader(Trickle(doc));
            assert_eq!(
                whole.is_ok(),
                pieces.is_ok(),
                "{}",
                String::from_utf8_lossy(doc)
            );
            if let (Ok(a), Ok(b)) = (&whole, &pieces) {
                assert_eq!(a, b);
            }
        }
    }

    /// `pieces::parse` of `doc` sent in pieces of `size` bytes.
    fn in_pieces(doc: &[u8], size: usize) -> Result<StateHead, String> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let owned: Vec<Bytes> = doc
            .chunks(size.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        let sender = std::thread::spawn(move || {
            for piece in owned {
                if tx.blocking_send(piece).is_err() {
                    return; // refused: the parser stopped taking pieces
                }
            }
        });
        let verdict = pieces::parse(rx);
        sender.join().unwrap();
        verdict
    }

    #[test]
    fn value_by_value_agrees_with_the_whole_document_parser() {
        let valid: [&[u8]; 7] = [
            br#"{"version":4,"terraform_version":"1.9.0","serial":7,"lineage":"abc","outputs":{"u":{"value":"a\"}b","type":"string"}},"resources":[{"mode":"managed","instances":[{"attributes":{"s":"x]}\\","n":-1.5e3,"t":true,"z":null}},{}]},{"instances":[]},{}],"check_results":null}"#,
            br#" { "serial" : 1 , "lineage" : "l" , "version" : 4 , "resources" : [ ] } "#,
            br#"{"version":4,"serial":2,"lineage":"l","resources":null}"#,
            br#"{"version":4,"serial":2,"lineage":"l"}"#,
            br#"{"resources":[{"instances":[{"a":"\u00e9\u20ac"}]}],"version":4,"serial":0,"lineage":"caf\u00e9"}"#,
            br#"{"version":4,"serial":3,"lineage":"l","x":[[[]]],"y":"[{","resources":[{"instances":[1,2,3]}]}"#,
            "{\"version\":4,\"serial\":3,\"lineage\":\"l\u{e9}\",\"resources\":[{\"instances\":[\"\u{20ac}\"]}]}".as_bytes(),
        ];
        let invalid: [&[u8]; 16] = [
            b"",
            b"   ",
            br#"[4, "lineage", 1]"#,
            br#"{"version":4,"serial":-1,"lineage":"a"}"#,
            br#"{"version":4,"serial":"1","lineage":"a"}"#,
            br#"{"version":4,"serial":1,"lineage":"a"} trailing"#,
            br#"{"version":4,"serial":1,"serial":2,"lineage":"a"}"#,
            br#"{"version":4,"serial":1,"lineage":"a","resources":{}}"#,
            br#"{"version":4,"serial":1,"lineage":"a","resources":[{},]}"#,
            br#"{"version":4,"serial":1,"lineage":"a","resources":[{}}"#,
            br#"{"version":4,"serial":1,"lineage":"a",}"#,
            br#"{"version":4,"serial":1 "lineage":"a"}"#,
            br#"{"version":4,"serial":1,"lineage":"a","x":tru}"#,
            br#"{"version":4,"serial":1,"lineage":"a","x":"\q"}"#,
            br#"{"version":4,"serial":1,"lineage":"a","x":[1,2}"#,
            br#"{version:4}"#,
        ];
        let mut checked = 0;
        for doc in valid.iter().chain(invalid.iter()) {
            // Whole, and every prefix of it (a document cut short anywhere).
            for cut in (0..=doc.len()).rev() {
                let doc = &doc[..cut];
                let whole = StateHead::parse(doc);
                for size in [1, 2, 5, 64] {
                    let pieces = in_pieces(doc, size);
                    assert_eq!(
                        whole.is_ok(),
                        pieces.is_ok(),
                        "pieces of {size}: {whole:?} vs {pieces:?} for {}",
                        String::from_utf8_lossy(doc)
                    );
                    if let (Ok(a), Ok(b)) = (&whole, &pieces) {
                        assert_eq!(a, b);
                    }
                    if let Err(why) = &pieces {
                        assert!(
                            why.starts_with("not a Terraform state document")
                                || why.contains("non-negative"),
                            "{why}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
        for doc in valid {
            assert!(
                in_pieces(doc, 3).is_ok(),
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }

    #[test]
    fn a_resource_larger_than_a_slice_is_parsed_from_the_stream() {
        let big = "y".repeat(pieces::SLICE_LIMIT + (1 << 20));
        let doc = format!(
            r#"{{"version":4,"serial":5,"lineage":"l","resources":[{{"instances":[{{}}]}},{{"instances":[{{"a":"{big}"}},{{}}]}},{{"instances":[{{}}]}}],"outputs":{{}}}}"#
        );
        let head = in_pieces(doc.as_bytes(), 64 << 10).unwrap();
        assert_eq!((head.serial, head.resources), (5, 4));
        // The element after the huge one is broken: found after resuming from slices.
        let broken = doc.replacen(r#"{"instances":[{}]}],"#, r#"{"instances":[{}]],"#, 1);
        assert_ne!(broken, doc);
        assert!(in_pieces(broken.as_bytes(), 64 << 10).is_err());
        // A huge value that is not valid is refused from the stream too.
        let bad = doc.replacen(r#""a":"y"#, r#""a":y"#, 1);
        assert_ne!(bad, doc);
        assert!(in_pieces(bad.as_bytes(), 64 << 10).is_err());
    }

    #[tokio::test]
    async fn a_feed_parses_pieces_as_they_pass() {
        let doc = br#"{"version":4,"serial":9,"lineage":"l","resources":[{"instances":[{}]}]}"#;
        let mut feed = HeadFeed::start();
        for piece in doc.chunks(5) {
            feed.feed(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let head = feed.finish().await.unwrap();
        assert_eq!((head.serial, head.resources), (9, 1));
        // A refused document: once the parser has stopped, feeding says why (the caller
        // stops sending the body there), and so does finish.
        let mut bad = HeadFeed::start();
        let mut refused = None;
        for _ in 0..5000 {
            if let Err(why) = bad.feed(Bytes::from_static(b"[1,2] more")).await {
                refused = Some(why);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(
            refused
                .as_deref()
                .unwrap_or("")
                .contains("not a JSON object"),
            "{refused:?}"
        );
        assert!(
            bad.finish()
                .await
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn guard() {
        let s = |l: &str, n| StateHead {
            lineage: l.into(),
            serial: n,
            resources: 0,
        };
        assert!(check_write(None, &s("a", 0)).is_ok());
        assert!(check_write(Some(&s("a", 3)), &s("a", 3)).is_ok());
        assert!(check_write(Some(&s("a", 3)), &s("a", 4)).is_ok());
        assert!(matches!(
            check_write(Some(&s("a", 3)), &s("a", 2)),
            Err(Refusal::Serial { .. })
        ));
        assert!(matches!(
            check_write(Some(&s("a", 3)), &s("b", 9)),
            Err(Refusal::Lineage { .. })
        ));
    }
}
