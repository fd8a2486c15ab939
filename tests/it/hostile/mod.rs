//! Hostile input (issue 6, item 4): property tests on the parsers nubes feeds with
//! user-, repository- and network-controlled text (`props`), and the nastiest of those
//! inputs through the real binary (`e2e`). Every rejection must be exit 2 with a message
//! that names the problem; nothing may panic; nothing may be written.

mod e2e;
mod props;
pub mod strategies;

/// Characters that must never reach a terminal raw from user input: control characters
/// (a newline forges a log line, ESC drives the terminal) and the invisible format
/// characters used to disguise text (bidi overrides, zero-width joiners, BOM).
pub fn is_dangerous(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{061c}')
}

/// Assert that `text` (an error message or hint) shows no dangerous character raw.
#[track_caller]
pub fn assert_shown_safely(text: &str, input: &str) {
    if let Some(c) = text.chars().find(|c| is_dangerous(*c)) {
        panic!(
            "message shows U+{:04X} raw for input {:?}: {:?}",
            c as u32,
            input.chars().take(80).collect::<String>(),
            text
        );
    }
}

/// `^[a-z][a-z0-9]*(-[a-z0-9]+)*$`, at most 20 characters (DESIGN.md).
pub fn is_canonical(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 20
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
        && !name.contains("--")
}
