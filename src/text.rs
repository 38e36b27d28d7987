//! Text for the terminal that paude did not write itself: file contents in a trust diff or an
//! evaluation error, names of files a sandbox made. A sandbox can put escape sequences in
//! any of them, which a terminal would obey (set the title, write the clipboard, erase the
//! lines above and print something reassuring instead); [`printable`] shows them instead.
//! And [`counted`], the one way paude's own lines count things.

use std::borrow::Cow;

/// `1 file`, `2 files`: a count and its word, which takes an `s` unless the count is one.
pub fn counted(count: impl Into<u64>, word: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("1 {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// `text` with every control character but newline and tab written as `\u{…}`, and so shown
/// rather than obeyed.
pub fn printable(text: &str) -> Cow<'_, str> {
    let obeyed = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(obeyed) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if obeyed(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(printable("plain\n\ttext"), "plain\n\ttext");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]52;c;aGk=\u{7}b\r\u{9b}"),
            "a\\u{1b}]52;c;aGk=\\u{7}b\\u{d}\\u{9b}"
        );
    }
}
