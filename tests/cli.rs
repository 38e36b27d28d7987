//! The command line's own outputs: shell completions and the manual pages.

mod common;

use common::*;
use std::process::Command;

fn paude(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paude"))
        .args(args)
        .env_clear()
        .output()
        .expect("paude")
}

/// The completion scripts are for paude's commands, and bash reads its script without error.
#[test]
fn completions_name_the_commands_and_bash_reads_them() {
    for shell in ["bash", "zsh", "fish", "elvish"] {
        let script = ok(&paude(&["completions", shell]));
        for command in ["venv", "export", "cleanup", "trust"] {
            assert!(script.contains(command), "{shell}: {command}");
        }
        assert!(
            !script.contains("__evaluate"),
            "{shell}: the hidden helper is offered"
        );
    }
    let script = ok(&paude(&["completions", "bash"]));
    let check = Command::new("bash")
        .args(["-n", "-c", &script])
        .output()
        .expect("bash");
    assert!(check.status.success(), "{}", text(&check.stderr));
    let wrong = paude(&["completions", "tcsh"]);
    assert_eq!(wrong.status.code(), Some(125));
}

/// `paude man` is a roff page for paude, and `paude man COMMAND` one for each command, with
/// its options; an unknown command is named with the ones there are.
#[test]
fn manual_pages_are_roff_for_paude_and_each_command() {
    let page = ok(&paude(&["man"]));
    assert!(page.contains(".TH paude 1"), "{page}");
    assert!(page.contains("venv"));
    let venv = ok(&paude(&["man", "venv"]));
    assert!(venv.contains(".TH paude-venv 1"), "{venv}");
    assert!(venv.contains("dry\\-run"), "{venv}");
    let export = ok(&paude(&["man", "export"]));
    assert!(export.contains("oci\\-archive"), "{export}");
    let wrong = paude(&["man", "nope"]);
    assert_eq!(wrong.status.code(), Some(125));
    assert!(
        text(&wrong.stderr).contains("its commands: venv"),
        "{}",
        text(&wrong.stderr)
    );
}
