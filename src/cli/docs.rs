//! `tickler completions` and `tickler man`: shell completions and manual pages, generated from
//! the command line's own definition.

use std::path::Path;

use clap::ValueEnum;

use super::Cli;

/// The shells `tickler completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script of `shell` for every command and option.
pub fn completions(shell: CompletionShell) -> String {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = vec![];
    clap_complete::generate(shell, &mut Cli::command(), "tickler", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `tickler man DIR`: tickler.1 and a page per command (tickler-tasks-enqueue.1, ...).
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    Ok(())
}
