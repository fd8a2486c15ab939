//! `nubes man`: man pages generated from the clap definition (clap_mangen), so they
//! never disagree with `--help`. Printed (nubes.1) or written one per command into a
//! folder, for release packaging.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

fn render(cmd: clap::Command, title: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(title.to_string())
        .render(&mut out)
        .map_err(|e| Error::failed(format!("cannot render the man page: {e}")))?;
    Ok(out)
}

pub fn run(out: Option<&Path>) -> Result<()> {
    let cmd = Cli::command();
    let Some(dir) = out else {
        crate::out!("{}", String::from_utf8_lossy(&render(cmd, "nubes")?));
        return Ok(());
    };
    fs_err::create_dir_all(dir)?;
    fs_err::write(dir.join("nubes.1"), render(cmd.clone(), "nubes")?)?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("nubes-{}", sub.get_name());
        fs_err::write(dir.join(format!("{name}.1")), render(sub.clone(), &name)?)?;
        written += 1;
    }
    crate::outln!("wrote {written} man pages into {}", dir.display());
    Ok(())
}
