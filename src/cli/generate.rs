//! `podgraft completions SHELL` and `podgraft man`: generated from the clap definitions, so they
//! never drift from the real flags.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "podgraft", out);
}

/// The man page of `podgraft` (roff): to `out`, or with `dir` as files there: `podgraft.1` and
/// one `podgraft-<command>.1` per subcommand.
pub fn man(dir: Option<&std::path::Path>, out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        return clap_mangen::Man::new(cmd).render(out);
    };
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![("podgraft".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("podgraft-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut file = std::fs::File::create(&path)?;
        clap_mangen::Man::new(page).render(&mut file)?;
        writeln!(out, "{}", path.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_man_name_every_subcommand() {
        let mut bash = Vec::new();
        completions(clap_complete::Shell::Bash, &mut bash);
        let bash = String::from_utf8(bash).unwrap();
        let mut page = Vec::new();
        man(None, &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH podgraft"), "{page}");
        let dir = tempfile::tempdir().unwrap();
        let mut listed = Vec::new();
        man(Some(dir.path()), &mut listed).unwrap();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            assert!(bash.contains(name), "completion lacks {name}");
            assert!(page.contains(name), "man page lacks {name}");
            let sub_page =
                std::fs::read_to_string(dir.path().join(format!("podgraft-{name}.1"))).unwrap();
            assert!(
                sub_page.contains(&format!(".TH podgraft-{name}")),
                "{sub_page}"
            );
        }
        let ls = std::fs::read_to_string(dir.path().join("podgraft-ls.1")).unwrap();
        assert!(
            bash.contains("--selector") && ls.contains("selector"),
            "{ls}"
        );
    }
}
