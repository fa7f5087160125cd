//! The character rules shared by the merchant's free-text identifiers that reach the database
//! (customer numbers, order numbers; security issue 12, finding 8). Decided once here, so both
//! backends see the same values and both identifiers follow the same rules:
//!
//! - **refused**: control characters (Unicode Cc, NUL included: PostgreSQL cannot store NUL in
//!   `TEXT`, SQLite can, so accepting it split the backends), bidirectional controls (U+061C,
//!   U+200E/F, U+202A–U+202E, U+2066–U+2069: `\u{202e}ecila` *displays* as `alice`), every other
//!   format character (Cf: zero-width spaces and joiners, soft hyphen, BOM, tag characters — they
//!   make two different values print the same), line and paragraph separators (Zl, Zp);
//! - **refused**: compatibility look-alikes — a value whose NFKC form differs from its NFC form
//!   (`ａｌｉｃｅ` full-width, `ﬁ` ligatures, `①`, superscripts). Mapping them (NFKC) would merge
//!   `ａｌｉｃｅ` into `alice`, giving one customer the other's saved cards; refusing keeps distinct
//!   values distinct and tells the merchant;
//! - **normalised**: canonical equivalents are one value (NFC: `e` + U+0301 is `é`), since Unicode
//!   defines them as the same text and they display identically;
//! - **not trimmed**: the original keeps the value as received (R1; the signature covers it as
//!   received), so `" alice"` stays a different customer from `"alice"`; a value that is only
//!   whitespace (after the field's stripping) is refused like an empty one.
//!
//! The reference (`shared/reference`) only says "a string of up to 32 characters" validated by
//! the original's prohibited-character table; these rules are stricter, never looser.

use unicode_normalization::UnicodeNormalization as _;

/// Why an identifier's characters are refused; the caller maps it to its field's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharacterProblem {
    /// A control character (Cc), NUL included.
    Control,
    /// A bidirectional control (embedding, override, isolate, mark).
    Bidi,
    /// Another invisible format character (Cf) or a line/paragraph separator (Zl, Zp).
    Invisible,
    /// A compatibility look-alike (NFKC differs from NFC): full-width, ligature, circled, …
    LookAlike,
}

impl CharacterProblem {
    pub fn reason(self) -> &'static str {
        match self {
            CharacterProblem::Control => "control characters are not allowed",
            CharacterProblem::Bidi => "bidirectional control characters are not allowed",
            CharacterProblem::Invisible => "invisible format characters are not allowed",
            CharacterProblem::LookAlike => {
                "compatibility characters (full-width, ligatures, …) are not allowed"
            }
        }
    }
}

/// The bidirectional controls: ALM, LRM, RLM, the embeddings and overrides, the isolates.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode general category Cf (format), as of Unicode 15.1, plus Zl and Zp.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// Applies the rules of the module header to a raw value: the NFC form, or why it is refused.
/// Length limits and the field's own stripping stay with the field's type.
pub fn normalize(raw: &str) -> Result<String, CharacterProblem> {
    for c in raw.chars() {
        if is_bidi_control(c) {
            return Err(CharacterProblem::Bidi);
        }
        if c.is_control() {
            return Err(CharacterProblem::Control);
        }
        if is_invisible_format(c) {
            return Err(CharacterProblem::Invisible);
        }
    }
    // ASCII is its own NFC and NFKC form: no look-alikes to fold (most identifiers).
    if raw.is_ascii() {
        return Ok(raw.to_owned());
    }
    let nfc: String = raw.nfc().collect();
    if nfc.nfkc().ne(nfc.chars()) {
        return Err(CharacterProblem::LookAlike);
    }
    Ok(nfc)
}

/// Empty, or nothing but whitespace.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_other_control_characters_are_refused() {
        for raw in [
            "ali\0ce",
            "a\tb",
            "a\nb",
            "a\rb",
            "a\u{7f}b",
            "a\u{85}b",
            "\u{1b}[31m",
        ] {
            assert_eq!(normalize(raw), Err(CharacterProblem::Control), "{raw:?}");
        }
    }

    #[test]
    fn every_bidi_control_is_refused() {
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let raw = format!("{c}ecila");
            assert_eq!(normalize(&raw), Err(CharacterProblem::Bidi), "{c:?}");
        }
    }

    #[test]
    fn zero_width_and_other_format_characters_are_refused() {
        for raw in [
            "al\u{200B}ice",
            "al\u{200D}ice",
            "\u{FEFF}alice",
            "al\u{AD}ice",
            "a\u{2028}b",
            "a\u{E0041}",
        ] {
            assert_eq!(normalize(raw), Err(CharacterProblem::Invisible), "{raw:?}");
        }
    }

    #[test]
    fn full_width_and_other_compatibility_look_alikes_are_refused() {
        for raw in ["ａｌｉｃｅ", "ﬁle", "①", "x²", "Ⅸ"] {
            assert_eq!(normalize(raw), Err(CharacterProblem::LookAlike), "{raw:?}");
        }
    }

    #[test]
    fn canonical_equivalents_become_one_value() {
        assert_eq!(normalize("Jose\u{301}").as_deref(), Ok("José"));
        assert_eq!(normalize("José").as_deref(), Ok("José"));
    }

    #[test]
    fn the_ascii_shortcut_agrees_with_the_normal_forms() {
        let printable: String = (0x20u8..0x7f).map(char::from).collect();
        let nfc: String = printable.nfc().collect();
        assert_eq!(nfc, printable);
        assert!(nfc.nfkc().eq(nfc.chars()));
        assert_eq!(normalize(&printable).as_deref(), Ok(printable.as_str()));
        for c in (0u8..0x20).chain([0x7f]).map(char::from) {
            assert_eq!(normalize(&format!("a{c}b")), Err(CharacterProblem::Control));
        }
    }

    #[test]
    fn ordinary_values_pass_unchanged_spaces_included() {
        for raw in [
            "alice",
            "Cust-0001 a",
            " alice ",
            "клиент-7",
            "顧客42",
            "A/B=C(1)#2",
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(raw));
        }
    }

    #[test]
    fn blank_means_empty_or_only_whitespace() {
        assert!(is_blank(""));
        assert!(is_blank("   "));
        assert!(is_blank("\u{3000}\u{A0}"));
        assert!(!is_blank(" a "));
    }
}
