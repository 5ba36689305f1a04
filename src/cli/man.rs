//! `qasid man`: man pages rendered from the argument definitions, so they never drift from the
//! real flags: `qasid.1` and one page per subcommand (`qasid-verify.1`, `qasid-index-show.1`).
//!
//! Every page carries the EXIT STATUS section, built from the same mapping `main` uses, and the
//! subcommand's `after_help` (its examples) kept line for line rather than filled into prose.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory as _};
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use qasid::ErrorClass;

use super::{exit_code, Cli, Failure};

/// Write man pages: qasid.1 and one page per subcommand (qasid-verify.1, ...).
///
/// Without --out, prints qasid.1 on stdout. With --out, writes every page into DIR and prints
/// the path of each page written.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid man | man -l -
  qasid man --out ~/.local/share/man/man1    # then: man qasid-publish
  sudo qasid man --out /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Folder to write every page into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl ManArgs {
    pub fn run(self) -> Result<(), Failure> {
        let pages = pages().map_err(Failure::runtime)?;
        let mut out = std::io::stdout().lock();
        match self.out {
            None => {
                // The root page is rendered first.
                out.write_all(&pages[0].roff).map_err(Failure::runtime)?;
            }
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Failure::runtime(
                        anyhow::Error::new(e).context(format!("cannot create {}", dir.display())),
                    )
                })?;
                for page in &pages {
                    let path = write_page(&dir, page)?;
                    writeln!(out, "{}", path.display()).map_err(Failure::runtime)?;
                }
            }
        }
        out.flush().map_err(Failure::runtime)
    }
}

/// One rendered page.
struct Page {
    /// `qasid.1`, `qasid-verify.1`, ...
    file_name: String,
    roff: Vec<u8>,
}

/// Every page, the root first, then each visible subcommand depth-first.
fn pages() -> std::io::Result<Vec<Page>> {
    // `build` names the subcommands for man (`qasid-verify`) and synopses (`qasid verify`).
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut pages = Vec::new();
    collect(&root, None, &mut pages)?;
    Ok(pages)
}

fn collect(
    cmd: &clap::Command,
    parent: Option<&str>,
    pages: &mut Vec<Page>,
) -> std::io::Result<()> {
    pages.push(render(cmd, parent)?);
    let name = page_name(cmd);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, Some(name), pages)?;
    }
    Ok(())
}

fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

fn render(cmd: &clap::Command, parent: Option<&str>) -> std::io::Result<Page> {
    let man = Man::new(cmd.clone())
        .source(format!("qasid {}", env!("CARGO_PKG_VERSION")))
        .manual("qasid manual");
    let mut roff = Vec::new();
    man.render_title(&mut roff)?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    man.render_description_section(&mut roff)?;
    man.render_options_section(&mut roff)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut roff)?;
    }
    let mut tail = Roff::new();
    // The root's closing text only summarises the exit codes and the documents, which EXIT
    // STATUS and SEE ALSO give in full.
    if parent.is_some() {
        if let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
            after_help(&mut tail, &text.to_string());
        }
    }
    exit_status(&mut tail);
    see_also(&mut tail, cmd, parent);
    tail.to_writer(&mut roff)?;
    Ok(Page {
        file_name: man.get_filename(),
        roff,
    })
}

/// The subcommand's closing help text. Clap's help shows it verbatim, so indented lines
/// (commands) stay as they are; other lines are filled like prose.
fn after_help(roff: &mut Roff, text: &str) {
    let mut lines = text.lines().peekable();
    let heading = match lines.peek() {
        Some(first) if first.starts_with("Example") => {
            lines.next();
            "EXAMPLES"
        }
        _ => "NOTES",
    };
    roff.control("SH", [heading]);
    let mut verbatim = false;
    for line in lines {
        let indented = line.starts_with(' ');
        if indented != verbatim {
            roff.control(if indented { "nf" } else { "fi" }, []);
            verbatim = indented;
        }
        if line.trim().is_empty() {
            roff.control("PP", []);
        } else if indented {
            roff.text([roman(line.strip_prefix("  ").unwrap_or(line))]);
        } else {
            roff.text([roman(line)]);
        }
    }
    if verbatim {
        roff.control("fi", []);
    }
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    let codes = [
        (0, "Success."),
        (
            exit_code(ErrorClass::Runtime),
            "Runtime error: I/O, network, a lock held by another process.",
        ),
        (
            exit_code(ErrorClass::Usage),
            "Usage error or bad input: an unknown flag, an unreadable key string, a folder that \
             cannot be bundled.",
        ),
        (
            exit_code(ErrorClass::Verification),
            "Verification failed: the input is not authentic or not whole (signature, hash, \
             size, structure, rollback, equivocation).",
        ),
    ];
    for (code, meaning) in codes {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
    roff.control("PP", []);
    roff.text([roman(
        "Errors go to stderr as one line; results go to stdout. Colour is used only on a \
         terminal and never when NO_COLOR is set.",
    )]);
}

fn see_also(roff: &mut Roff, cmd: &clap::Command, parent: Option<&str>) {
    let mut refs: Vec<&str> = Vec::new();
    refs.extend(parent);
    refs.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(page_name),
    );
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, name) in refs.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman("(1)"));
    }
    if !line.is_empty() {
        roff.text(line);
        roff.control("PP", []);
    }
    roff.text([roman(
        "docs/FORMAT.md (keys, bundles, limits) and docs/PROTOCOL.md (repository layout, signed \
         index, mirrors) in the qasid source describe every format precisely enough to verify \
         without qasid.",
    )]);
}

/// Writes one page through a temp file in `dir`, so a reader never sees half a page.
fn write_page(dir: &Path, page: &Page) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::PermissionsExt as _;

    let path = dir.join(&page.file_name);
    let context = |e: std::io::Error| {
        Failure::runtime(anyhow::Error::new(e).context(format!("cannot write {}", path.display())))
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(context)?;
    tmp.write_all(&page.roff).map_err(context)?;
    // Temp files are created 0600; a man page is for everyone.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(context)?;
    tmp.persist(&path).map_err(|e| context(e.error))?;
    Ok(path)
}
