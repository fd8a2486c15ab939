//! proptest strategies for hostile text and documents, shared by the property tests.

use proptest::prelude::*;

/// Pieces an attacker (or an unlucky user) puts in names: look-alikes, path tricks,
/// control characters, shell metacharacters, and the parts of valid names.
pub const FRAGMENTS: &[&str] = &[
    "a",
    "alice",
    "z9",
    "42",
    "-",
    "--",
    "env-",
    "refs/heads/",
    "refs/tags/",
    "refs/pull/1/merge",
    "\u{430}",  // Cyrillic а
    "\u{ff41}", // fullwidth ａ
    "\u{200d}", // zero-width joiner
    "\u{200b}", // zero-width space
    "\u{202e}", // right-to-left override
    "\u{2066}", // left-to-right isolate
    "\u{feff}", // byte order mark
    "\u{130}",  // İ: lowercases to two characters
    "\u{212a}", // Kelvin sign K: lowercases to ASCII k
    "\u{fb01}", // ﬁ ligature
    "é",
    "ß",
    "🦀",
    "..",
    "/",
    "\\",
    ".",
    "\0",
    "\n",
    "\r",
    "\t",
    " ",
    "\x1b[2J",
    "\x7f",
    "$(id)",
    "`id`",
    ";",
    "|",
    "&",
    "&&",
    ">",
    "<",
    "*",
    "?",
    "~",
    "'",
    "\"",
    "#",
    "%00",
    "%2e%2e",
    "{env}",
    "{{",
    "}}",
    "{% raw %}",
    "A",
    "Z",
    "_",
];

/// A string made of hostile fragments and arbitrary characters.
pub fn hostile_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
        1 => "[a-z0-9-]{1,24}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

/// A JSON value of the wrong shape for almost any field.
pub fn wrong_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(1.5)),
        Just(json!([])),
        Just(json!({})),
        Just(json!(["refs/heads/env-a"])),
        Just(json!({"ref": "refs/heads/env-a"})),
        hostile_string().prop_map(Value::String),
    ]
}

/// `depth` nested arrays around `inner`, as text (built without recursion).
pub fn nested(depth: usize, inner: &str) -> String {
    let mut s = String::with_capacity(depth * 2 + inner.len());
    s.extend(std::iter::repeat_n('[', depth));
    s.push_str(inner);
    s.extend(std::iter::repeat_n(']', depth));
    s
}
