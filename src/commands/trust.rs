//! `paude trust`: the user trusts the workspace's own `paude.jsonnet` as it is now, with every
//! file its evaluation reads, wherever it lies (see `manifest::trust`).

use super::status;
use crate::cli::TrustArgs;
use crate::host::HostFacts;
use crate::manifest::{self, ManifestSource, trust};
use crate::store::Store;
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;
use std::process::ExitCode;

pub fn run(args: TrustArgs, host: &HostFacts) -> Result<ExitCode> {
    let workspace = super::venv::named_workspace(args.workspace.as_deref(), host)?;
    let store = Store::new(host.paude_home.clone());
    if args.revoke {
        store.set_trust(&workspace, None)?;
        status(&format!(
            "{}'s paude.jsonnet is no longer trusted",
            workspace.display()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let path = workspace.join(super::venv::WORKSPACE_MANIFEST);
    match path.symlink_metadata() {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => bail!(
            "{} is not a regular file (a link is not trusted: it could lead anywhere)",
            path.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    }
    let mut options = super::venv::load_options(&args.jsonnet, host)?;
    options.evaluator = Some("/proc/self/exe".into());
    let loaded = manifest::load(&ManifestSource::File(path.clone()), &options)
        .with_context(|| format!("{} cannot be trusted as it is", path.display()))?;
    // What is trusted is the digest of the bytes evaluated; the file is read again only for
    // its text (to show what changes), which must be those same bytes.
    let mut files = Vec::new();
    for file in &loaded.files_read {
        let (now, _) = manifest::read_file(&file.path)
            .with_context(|| format!("reading {}", file.path.display()))?;
        files.push(trust::Trusted::of(file, &now).ok_or_else(|| {
            anyhow!(
                "{} changed while paude read it; look at it again, then run `paude trust` again",
                file.path.display()
            )
        })?);
    }
    let names: Vec<String> = files
        .iter()
        .map(|file| shown(&file.path, &workspace))
        .collect();
    let outside = files
        .iter()
        .filter(|file| file.path.strip_prefix(&workspace).is_err())
        .count();
    store.set_trust(
        &workspace,
        Some(&trust::Record {
            workspace: workspace.clone(),
            files,
        }),
    )?;
    status(&format!(
        "trusted {} in {} as they are now",
        names.join(", "),
        workspace.display()
    ));
    if outside > 0 {
        status(&format!(
            "{outside} of them outside the workspace: a change to any of them is refused too, \
             until you trust it again"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `path` as the user knows it: relative to the workspace when it lies there, else whole.
fn shown(path: &Path, workspace: &Path) -> String {
    path.strip_prefix(workspace)
        .unwrap_or(path)
        .display()
        .to_string()
}
