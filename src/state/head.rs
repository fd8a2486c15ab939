//! The few fields of a Terraform state document nubes needs (lineage, serial, number of
//! resources), read without building the whole document in memory, and the write guard
//! that refuses another lineage or a lower serial.

use serde::Deserialize;

use crate::env_name::printable;
use serde::de::IgnoredAny;

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
            return Err("not a Terraform state document: it is not a JSON object".into());
        }
        let raw: RawHead = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a Terraform state document: {e}"))?;
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
