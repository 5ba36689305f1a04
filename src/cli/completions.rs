//! `qasid completions`: print a shell completion script generated from the argument definitions,
//! so completions can never drift from the real flags.

use std::io::Write as _;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::{Cli, Failure};

/// Print a shell completion script on stdout.
///
/// The script is generated from qasid's own argument definitions, so it always matches this
/// binary. Install it where your shell looks for completions (see the examples).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid completions bash > ~/.local/share/bash-completion/completions/qasid
  qasid completions zsh > ~/.zfunc/_qasid    # with fpath+=(~/.zfunc) before compinit in ~/.zshrc
  qasid completions fish > ~/.config/fish/completions/qasid.fish")]
pub struct CompletionsArgs {
    /// The shell to generate the script for.
    #[arg(value_name = "SHELL")]
    shell: Shell,
}

impl CompletionsArgs {
    pub fn run(self) -> Result<(), Failure> {
        // clap_complete panics on a write error, so render into memory and write it ourselves: a
        // closed pipe (`qasid completions bash | head`) then stays a quiet success.
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "qasid", &mut script);
        let mut out = std::io::stdout().lock();
        out.write_all(&script)
            .and_then(|()| out.flush())
            .map_err(Failure::runtime)
    }
}
