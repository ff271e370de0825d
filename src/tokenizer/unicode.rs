//! Code point classes for the pre-tokenizers, as llama.cpp's `unicode.cpp` defines them.
//!
//! llama.cpp keeps one 16-bit flag word per code point: the general-category group (\p{L}, \p{N},
//! \p{P}, ...; unassigned code points get UNDEFINED, so every code point has a non-zero word) plus a
//! separate `\s` bit from the Unicode White_Space property. The splitters test these flags and treat a
//! position past the end of the current segment as "no flags at all" (zero), which is what makes
//! `\s+(?!\S)` and the `flags.as_uint()` checks work. We compute the same groups from the
//! `unicode-general-category` tables (Unicode 16).

use unicode_general_category::{get_general_category, GeneralCategory as G};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(u16);

impl Flags {
    pub const UNDEFINED: u16 = 0x0001;
    pub const NUMBER: u16 = 0x0002;
    pub const LETTER: u16 = 0x0004;
    pub const SEPARATOR: u16 = 0x0008;
    pub const MARK: u16 = 0x0010;
    pub const PUNCTUATION: u16 = 0x0020;
    pub const SYMBOL: u16 = 0x0040;
    pub const CONTROL: u16 = 0x0080;
    pub const WHITESPACE: u16 = 0x0100;

    /// Flags of a position outside the segment being split (llama.cpp's `unicode_cpt_flags{}`).
    pub const NONE: Flags = Flags(0);

    pub fn of(c: char) -> Flags {
        let cat = match get_general_category(c) {
            G::Unassigned => Self::UNDEFINED,
            G::Control | G::Format | G::PrivateUse | G::Surrogate => Self::CONTROL,
            G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter => Self::LETTER,
            G::NonspacingMark | G::SpacingMark | G::EnclosingMark => Self::MARK,
            G::DecimalNumber | G::LetterNumber | G::OtherNumber => Self::NUMBER,
            G::ConnectorPunctuation
            | G::DashPunctuation
            | G::OpenPunctuation
            | G::ClosePunctuation
            | G::InitialPunctuation
            | G::FinalPunctuation
            | G::OtherPunctuation => Self::PUNCTUATION,
            G::MathSymbol | G::CurrencySymbol | G::ModifierSymbol | G::OtherSymbol => Self::SYMBOL,
            G::SpaceSeparator | G::LineSeparator | G::ParagraphSeparator => Self::SEPARATOR,
            // The enum is non-exhaustive; a category added later is treated as unassigned.
            #[allow(unreachable_patterns)]
            _ => Self::UNDEFINED,
        };
        let ws = if is_white_space(c) { Self::WHITESPACE } else { 0 };
        Flags(cat | ws)
    }

    #[inline]
    pub fn any(self) -> bool {
        self.0 != 0
    }
    #[inline]
    pub fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    #[inline]
    pub fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    #[inline]
    pub fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    #[inline]
    pub fn is_punctuation(self) -> bool {
        self.0 & Self::PUNCTUATION != 0
    }
    /// Neither `\s`, `\p{L}` nor `\p{N}`: the class `[^\s\p{L}\p{N}]`.
    #[inline]
    pub fn is_other(self) -> bool {
        self.0 & (Self::WHITESPACE | Self::LETTER | Self::NUMBER) == 0
    }
}

/// The Unicode White_Space property (llama.cpp's `unicode_set_whitespace`).
pub(crate) fn is_white_space(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// The GPT-2 byte-to-unicode map: printable Latin-1 bytes stand for themselves, the other 68 bytes are
/// mapped in order to U+0100.. so that every byte has a visible, non-space code point.
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap()
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_matches_gpt2() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0xAD], 'Ń');
    }

    #[test]
    fn flags() {
        assert!(Flags::of('a').is_letter());
        assert!(Flags::of('中').is_letter());
        assert!(Flags::of('٣').is_number());
        assert!(Flags::of('\u{3000}').is_whitespace());
        assert!(Flags::of('\u{0301}').is_other());
        assert!(Flags::of('\u{E000}').any());
        assert!(Flags::of('\u{10FFFF}').any());
    }
}
