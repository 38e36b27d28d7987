//! Debian version numbers: parsing, and the ordering dpkg uses to compare them.
//!
//! A version is `[epoch:]upstream[-revision]`. Epochs compare numerically; upstream and revision
//! compare with dpkg's algorithm: alternating runs of non-digits (compared character by
//! character, where `~` sorts before everything including the end of the string, letters sort
//! before other characters) and runs of digits (compared numerically). A missing revision is the
//! empty string, which compares equal to `0`.
//!
//! Parsing is lax in the way dpkg is lax when it reads its own database: only the structure
//! (numeric epoch, non-empty upstream, no embedded spaces) is checked, not the character set,
//! because a status file written by some older tool must still load.

use std::cmp::Ordering;
use std::fmt;

/// A parsed Debian version. Equality and ordering are dpkg's (`1.0` == `0:1.0` == `1.0-0`).
#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u64,
    pub upstream: String,
    /// Empty when the version has no `-revision`.
    pub revision: String,
}

impl Version {
    /// Parses `[epoch:]upstream[-revision]`; the error is a message without location.
    pub fn parse(text: &str) -> Result<Version, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty version".to_string());
        }
        if text.contains(char::is_whitespace) {
            return Err(format!("version `{text}` has embedded spaces"));
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((epoch, rest)) => {
                let epoch = if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) {
                    epoch.parse::<u64>().ok()
                } else {
                    None
                };
                match epoch {
                    Some(epoch) => (epoch, rest),
                    None => return Err(format!("epoch in version `{text}` is not a number")),
                }
            }
            None => (0, text),
        };
        // The revision starts after the *last* hyphen: upstream versions may contain hyphens.
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((_, "")) => return Err(format!("revision in version `{text}` is empty")),
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(format!("upstream part of version `{text}` is empty"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }

    /// Whether this version satisfies `self <op> wanted`, the test of a versioned relation.
    pub fn satisfies(&self, op: Op, wanted: &Version) -> bool {
        let ordering = self.cmp(wanted);
        match op {
            Op::Earlier => ordering == Ordering::Less,
            Op::EarlierOrEqual => ordering != Ordering::Greater,
            Op::Equal => ordering == Ordering::Equal,
            Op::LaterOrEqual => ordering != Ordering::Less,
            Op::Later => ordering == Ordering::Greater,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_part(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| compare_part(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

/// A relation operator. The obsolete `<` and `>` mean `<=` and `>=` (dpkg's reading of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Earlier,
    /// `<=` (or the obsolete `<`)
    EarlierOrEqual,
    /// `=`
    Equal,
    /// `>=` (or the obsolete `>`)
    LaterOrEqual,
    /// `>>`
    Later,
}

impl Op {
    /// Splits a leading operator off `text` (`">= 1.2"` → `(LaterOrEqual, " 1.2")`).
    pub fn split_prefix(text: &str) -> Option<(Op, &str)> {
        // Two-character operators first, so that `<<` is not read as `<` followed by `<`.
        const OPERATORS: [(&str, Op); 7] = [
            ("<<", Op::Earlier),
            ("<=", Op::EarlierOrEqual),
            (">=", Op::LaterOrEqual),
            (">>", Op::Later),
            ("=", Op::Equal),
            ("<", Op::EarlierOrEqual),
            (">", Op::LaterOrEqual),
        ];
        OPERATORS
            .iter()
            .find_map(|(token, op)| text.strip_prefix(token).map(|rest| (*op, rest)))
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Earlier => "<<",
            Op::EarlierOrEqual => "<=",
            Op::Equal => "=",
            Op::LaterOrEqual => ">=",
            Op::Later => ">>",
        })
    }
}

/// The weight of one character in a non-digit run: `~` below the end of the string (0), letters
/// in ASCII order above it, every other character above all letters. Digits weigh 0 because a
/// digit ends a non-digit run just like the end of the string does.
fn weight(byte: Option<u8>) -> i32 {
    match byte {
        None => 0,
        Some(b) if b.is_ascii_digit() => 0,
        Some(b) if b.is_ascii_alphabetic() => i32::from(b),
        Some(b'~') => -1,
        Some(b) => i32::from(b) + 256,
    }
}

/// dpkg's comparison of an upstream version or a revision.
fn compare_part(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let is_digit_at = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        // Non-digit run. Both sides advance together only while the weights are equal, and
        // equal weights of two non-digits imply neither side is at its end.
        while (i < a.len() && !is_digit_at(a, i)) || (j < b.len() && !is_digit_at(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        // Digit run: numeric comparison without overflow — skip leading zeros, then the longer
        // run is larger, else the first differing digit decides.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while is_digit_at(a, i) && is_digit_at(b, j) {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if is_digit_at(a, i) {
            return Ordering::Greater;
        }
        if is_digit_at(b, j) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[track_caller]
    fn check(a: &str, expected: Ordering, b: &str) {
        assert_eq!(v(a).cmp(&v(b)), expected, "{a} vs {b}");
        assert_eq!(v(b).cmp(&v(a)), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn parses_epoch_upstream_revision() {
        let version = v("1:2.39.5-0+deb12u3");
        assert_eq!(version.epoch, 1);
        assert_eq!(version.upstream, "2.39.5");
        assert_eq!(version.revision, "0+deb12u3");
        // The revision starts after the last hyphen.
        let version = v("1.2-beta-3");
        assert_eq!(
            (version.upstream.as_str(), version.revision.as_str()),
            ("1.2-beta", "3")
        );
        // Colons after the epoch belong to the upstream version.
        assert_eq!(v("2:1:0").upstream, "1:0");
        assert_eq!(v("2.0").to_string(), "2.0");
        assert_eq!(v("0:2.0-1").to_string(), "2.0-1");
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in ["", "a:1.0", ":1.0", "1.0-", "-1", "1.0 2", "1:"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn classic_comparisons() {
        use Ordering::{Equal, Greater, Less};
        check("1.0", Less, "1.1");
        check("1.0", Equal, "1.0");
        check("1.2", Less, "1.10");
        check("1.002", Equal, "1.2");
        check("0:1.0", Equal, "1.0");
        check("1.0", Equal, "1.0-0");
        check("1:0.1", Greater, "2.0");
        check("2:1.0", Greater, "1:9.9");
        check("1.0-1", Less, "1.0-2");
        check("1.0-10", Greater, "1.0-9");
        check("1.0-1", Less, "1.0.1-1");
        check("1.0a", Greater, "1.0");
        check("1.0a", Less, "1.0b");
        check("1.0+b1", Greater, "1.0");
        check("1.0.", Greater, "1.0");
        check("1.0a", Less, "1.0+");
        check("1.0a", Less, "1.0.");
    }

    #[test]
    fn tilde_sorts_before_everything() {
        use Ordering::Less;
        check("1.0~rc1", Less, "1.0");
        check("1.0~rc1", Less, "1.0~rc2");
        check("1.0~~", Less, "1.0~~a");
        check("1.0~~a", Less, "1.0~");
        check("1.0~", Less, "1.0");
        check("1.0", Less, "1.0a");
        check("2.36-9+deb12u1~bpo", Less, "2.36-9+deb12u1");
    }

    #[test]
    fn satisfies_each_operator() {
        let installed = v("1:2.39.5-0+deb12u3");
        assert!(installed.satisfies(Op::Later, &v("1:2.39.5")));
        // The "same upstream, any revision" idiom: `<< 1:2.39.5-.`.
        assert!(installed.satisfies(Op::Earlier, &v("1:2.39.5-.")));
        assert!(installed.satisfies(Op::LaterOrEqual, &installed));
        assert!(installed.satisfies(Op::EarlierOrEqual, &installed));
        assert!(installed.satisfies(Op::Equal, &v("1:2.39.5-0+deb12u3")));
        assert!(!installed.satisfies(Op::Equal, &v("2.39.5-0+deb12u3")));
        assert!(!installed.satisfies(Op::Earlier, &installed));
        assert!(!installed.satisfies(Op::Later, &installed));
    }

    #[test]
    fn splits_operators_including_obsolete_ones() {
        assert_eq!(Op::split_prefix("<< 1"), Some((Op::Earlier, " 1")));
        assert_eq!(Op::split_prefix("<=1"), Some((Op::EarlierOrEqual, "1")));
        assert_eq!(Op::split_prefix("< 1"), Some((Op::EarlierOrEqual, " 1")));
        assert_eq!(Op::split_prefix("> 1"), Some((Op::LaterOrEqual, " 1")));
        assert_eq!(Op::split_prefix(">> 1"), Some((Op::Later, " 1")));
        assert_eq!(Op::split_prefix("= 1"), Some((Op::Equal, " 1")));
        assert_eq!(Op::split_prefix("~ 1"), None);
    }
}
