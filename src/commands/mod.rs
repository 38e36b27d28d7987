//! Subcommands: orchestration and user-facing output. Each runs the pipeline's stages in
//! order and decides what goes to stderr; none of them holds logic a stage could own.

pub mod cleanup;
pub mod doctor;
pub mod export;
pub mod list;
pub mod trust;
pub mod venv;

use std::time::{SystemTime, UNIX_EPOCH};

/// A failure that carries its own exit status (126, 127), as `env` and `podman run` use them.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

/// `paude completions SHELL`: the completion script, on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<std::process::ExitCode> {
    use clap::CommandFactory;
    // paude's commands, without the hidden one paude runs itself.
    let full = crate::cli::Cli::command();
    let mut command = clap::Command::new("paude")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommands(
            full.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .cloned(),
        );
    clap_complete::generate(shell, &mut command, "paude", &mut std::io::stdout());
    Ok(std::process::ExitCode::SUCCESS)
}

/// `paude man [COMMAND]`: the manual page of paude, or of one of its commands, in roff, on
/// stdout.
pub fn man(of: Option<&str>) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    use clap::CommandFactory;
    let paude = crate::cli::Cli::command();
    let page = match of {
        None => clap_mangen::Man::new(paude),
        Some(name) => {
            let Some(sub) = paude
                .get_subcommands()
                .find(|sub| sub.get_name() == name && !sub.is_hide_set())
            else {
                let names: Vec<&str> = paude
                    .get_subcommands()
                    .filter(|sub| !sub.is_hide_set())
                    .map(|sub| sub.get_name())
                    .collect();
                anyhow::bail!(
                    "paude has no command `{name}`; its commands: {}",
                    names.join(", ")
                );
            };
            clap_mangen::Man::new(sub.clone()).title(format!("paude-{name}"))
        }
    };
    let mut out = Vec::new();
    page.render(&mut out).context("rendering the manual page")?;
    std::io::Write::write_all(&mut std::io::stdout(), &out).context("writing to stdout")?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Whether status lines are left out (`--quiet`).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Leaves out the status lines from here on (`--quiet`); warnings and errors stay.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Prints a status line on stderr (stdout belongs to the sandboxed command), unless quiet.
pub fn status(message: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("paude: {}", crate::text::printable(message));
    }
}

/// Prints a warning on stderr.
pub fn warn(message: &str) {
    eprintln!("paude: warning: {}", crate::text::printable(message));
}

/// `2026-11-22T09:30:00Z`: a time in UTC as RFC 3339, for JSON output.
/// How a build reports to the user: on a terminal, a progress line redrawn in place (packages
/// and bytes unpacked, and an estimate of the time left) under the status lines; elsewhere
/// (a log, a pipe, a CI job) only the status lines, so a build leaves a single summary line.
pub struct BuildReport {
    terminal: bool,
    /// Whether a progress line is on the screen, to be cleared before the next line.
    drawn: bool,
}

impl BuildReport {
    pub fn new(stderr_is_terminal: bool) -> BuildReport {
        BuildReport {
            terminal: stderr_is_terminal,
            drawn: false,
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            // Carriage return, then erase the line.
            eprint!("\r\x1b[2K");
            self.drawn = false;
        }
    }
}

impl crate::store::Report for BuildReport {
    fn line(&mut self, text: &str) {
        self.clear();
        status(text);
    }

    fn wants_progress(&self) -> bool {
        self.terminal && !QUIET.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn progress(&mut self, progress: &crate::store::packages::Progress) {
        if !self.wants_progress() {
            return;
        }
        use crate::store::human_bytes;
        let bytes = if progress.bytes_total > 0 {
            format!(
                "{} of about {}",
                human_bytes(progress.bytes_done),
                human_bytes(progress.bytes_total)
            )
        } else {
            human_bytes(progress.bytes_done)
        };
        let left = match progress.remaining() {
            Some(left) if left.as_secs_f64() >= 0.5 => {
                format!(", about {:.0}s left", left.as_secs_f64())
            }
            _ => String::new(),
        };
        // Kept short: a line longer than the terminal wraps, and then is not redrawn in place.
        eprint!(
            "\r\x1b[2Kpaude: {} {}/{}, {bytes}{left}",
            progress.what, progress.packages_done, progress.packages_total
        );
        self.drawn = true;
    }
}

impl Drop for BuildReport {
    fn drop(&mut self) {
        self.clear();
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01, by whole 400-year eras
/// (146097 days each), then years within the era counted from March, so the leap day ends a
/// year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `3 days ago`: how long before `now` a time was, for tables.
pub fn ago(time: SystemTime, now: SystemTime) -> String {
    let seconds = match now.duration_since(time) {
        Ok(since) => since.as_secs(),
        Err(_) => return "just now".into(),
    };
    let (count, unit) = match seconds {
        0..60 => return "just now".into(),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        86_400..2_592_000 => (seconds / 86_400, "day"),
        2_592_000..31_536_000 => (seconds / 2_592_000, "month"),
        _ => (seconds / 31_536_000, "year"),
    };
    format!("{count} {unit}{} ago", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_798_014_645)), "2026-12-23T08:30:45Z");
        assert_eq!(rfc3339(at(4_107_542_399)), "2100-02-28T23:59:59Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn ages_read_naturally() {
        let now = at(1_000_000_000);
        let before = |s: u64| at(1_000_000_000 - s);
        assert_eq!(ago(before(5), now), "just now");
        assert_eq!(ago(at(1_000_000_100), now), "just now");
        assert_eq!(ago(before(60), now), "1 minute ago");
        assert_eq!(ago(before(7200), now), "2 hours ago");
        assert_eq!(ago(before(86_400 * 9), now), "9 days ago");
        assert_eq!(ago(before(86_400 * 65), now), "2 months ago");
        assert_eq!(ago(before(86_400 * 800), now), "2 years ago");
    }
}
