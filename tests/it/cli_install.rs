//! Installing and operating qasid: shell completions, man pages and the systemd unit in
//! `contrib/`, checked with the tools that consume them (bash, man, systemd-analyze) where the
//! machine has them.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use assert_cmd::Command as Cmd;
use predicates::prelude::*;

fn qasid() -> Cmd {
    let mut cmd = Cmd::cargo_bin("qasid").unwrap();
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Whether `program` can be started (for checks that need a tool the machine may lack).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The subcommands a user types; every one must be completable and have a page.
const SUBCOMMANDS: [&str; 12] = [
    "keygen",
    "bundle",
    "verify",
    "read",
    "fetch",
    "sync",
    "publish",
    "push",
    "mirror",
    "index",
    "completions",
    "man",
];

fn completion_script(shell: &str) -> String {
    let out = qasid().args(["completions", shell]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completion_parses_and_registers_every_subcommand() {
    let script = completion_script("bash");
    for sub in SUBCOMMANDS {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qasid.bash");
    fs::write(&path, &script).unwrap();

    let syntax = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    // Sourced, it registers a completion for `qasid` and completes `qasid ver<TAB>`.
    let probe = r#"source "$1"
complete -p qasid >/dev/null || exit 10
COMP_WORDS=(qasid ver); COMP_CWORD=1; COMP_LINE="qasid ver"; COMP_POINT=${#COMP_LINE}
fn=$(complete -p qasid | sed -n 's/.*-F \([^ ]*\).*/\1/p')
"$fn" qasid ver qasid
printf '%s\n' "${COMPREPLY[@]}""#;
    let run = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", probe, "probe"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "verify");
}

#[test]
fn zsh_and_fish_completions_are_generated_and_parse_where_installed() {
    for (shell, check) in [("zsh", ["-n"]), ("fish", ["--no-execute"])] {
        let script = completion_script(shell);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        if !have(shell) {
            eprintln!("{shell} not installed: generated the script, did not parse it");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("qasid.{shell}"));
        fs::write(&path, &script).unwrap();
        let out = Command::new(shell).args(check).arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    qasid()
        .args(["completions", "tcsh"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty());
}

#[test]
fn man_prints_the_root_page_without_out() {
    qasid()
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::contains("\n.TH qasid 1 "))
        .stdout(predicate::str::contains(".SH \"EXIT STATUS\""));
}

#[test]
fn man_writes_one_readable_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man/man1");
    let out = qasid()
        .arg("man")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout).unwrap();

    let mut expected = vec!["qasid.1".to_owned(), "qasid-index-show.1".to_owned()];
    expected.extend(SUBCOMMANDS.iter().map(|s| format!("qasid-{s}.1")));
    for name in &expected {
        let path = out_dir.join(name);
        assert!(path.is_file(), "{name} missing");
        assert!(
            listed.contains(&path.display().to_string()),
            "{name} not listed"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
    assert!(!out_dir.join("qasid-help.1").exists());

    let verify = fs::read_to_string(out_dir.join("qasid-verify.1")).unwrap();
    assert!(verify.contains("\n.TH qasid-verify 1 "), "{verify}");
    for needle in [
        ".SH NAME",
        ".SH SYNOPSIS",
        "\\-\\-publisher",
        ".SH EXAMPLES",
        ".SH \"EXIT STATUS\"",
        "Verification failed",
        "qasid\\fR(1)",
    ] {
        assert!(verify.contains(needle), "qasid-verify.1 lacks {needle:?}");
    }
    // Exit codes 0 to 3, each as a tagged paragraph.
    for code in 0..=3 {
        assert!(
            verify.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "no exit status {code}"
        );
    }

    if !have("man") {
        eprintln!("man not installed: checked the roff source only");
        return;
    }
    let rendered = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(out_dir.join("qasid-verify.1"))
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(
        rendered.stderr.is_empty(),
        "groff warnings: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    for needle in [
        "EXIT STATUS",
        "qasid-verify - Check that a bundle",
        "--publisher",
    ] {
        assert!(
            text.contains(needle),
            "rendered page lacks {needle:?}:\n{text}"
        );
    }
}

fn unit_file() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/qasid-mirror.service"))
        .unwrap()
}

/// The value of `key=` in the unit (the last one, as systemd takes it for single-valued keys).
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn systemd_unit_outlasts_the_shutdown_grace_and_is_sandboxed() {
    let unit = unit_file();
    let grace = qasid::config::Config::default().mirror.shutdown_grace;
    let stop = humantime::parse_duration(unit_value(&unit, "TimeoutStopSec").unwrap()).unwrap();
    assert!(
        stop > grace,
        "TimeoutStopSec {stop:?} must exceed the shutdown grace {grace:?}, or systemd kills a \
         draining mirror"
    );
    for (key, value) in [
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "qasid"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(unit_value(&unit, key), Some(value), "{key}");
    }
    assert!(unit.contains("SystemCallFilter=@system-service\n"));
    assert!(unit_value(&unit, "MemoryMax").is_some());
    // The store must be in the only writable place.
    assert!(unit_value(&unit, "ExecStart")
        .unwrap()
        .contains("mirror --config /etc/qasid/mirrors.toml --store /var/lib/qasid/store"));
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_where_installed() {
    if !have("systemd-analyze") {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    }
    // verify checks that ExecStart's binary exists and that Documentation= man pages resolve:
    // point it at the binary under test and at freshly generated pages.
    let dir = tempfile::tempdir().unwrap();
    let binary = assert_cmd::cargo::cargo_bin("qasid");
    let unit = unit_file().replace("/usr/local/bin/qasid", binary.to_str().unwrap());
    let unit_path = dir.path().join("qasid-mirror.service");
    fs::write(&unit_path, unit).unwrap();
    qasid()
        .arg("man")
        .arg("--out")
        .arg(dir.path().join("man/man1"))
        .assert()
        .success();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    // It exits 0 on settings it ignores (a misspelt value, an unknown key), so any message
    // counts as a failure.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
