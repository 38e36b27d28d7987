//! `paude export`: the environment a manifest describes, as an OCI image (see `image`).

use super::{BuildReport, status, venv};
use crate::cli::ExportArgs;
use crate::host::HostFacts;
use crate::image::{self, Package, Request};
use crate::manifest::{HomeMode, Manifest};
use crate::sandbox::plan;
use crate::store::human_bytes;
use crate::store::packages::Progress;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

pub fn run(args: ExportArgs, host: &HostFacts) -> Result<ExitCode> {
    if let Some(tag) = &args.tag
        && !image::valid_tag(tag)
    {
        bail!(
            "--tag {tag:?}: not a name an OCI index allows; use letters and digits joined by one \
             of `-._:@+` or by `--`, in components separated by `/` (for example `core`, \
             `localhost/core:1`)"
        );
    }
    let mtime = source_date_epoch(host)?;
    // Checked before the environment is built or read: a mistake here costs nothing.
    if let Some(dir) = &args.oci {
        image::check_layout(dir).map_err(anyhow::Error::msg)?;
    }
    if let Some(file) = &args.oci_archive {
        check_archive_path(file)?;
    }
    let (manifest, store, lease) = venv::environment_of(&args.manifest, host)?;
    let rootfs = &lease.rootfs;
    let packages: Vec<Package> = store
        .packages_of(rootfs)?
        .into_iter()
        .map(|(id, entry)| Package {
            tree: entry.tree(),
            bytes: entry.stats.bytes,
            id,
        })
        .collect();
    let library_dirs = store.library_dirs(rootfs)?;
    let request = Request {
        rootfs: &rootfs.path,
        packages: &packages,
        env: plan::image_environment(&manifest.env_set, &library_dirs),
        shell: venv::default_shell(&rootfs.path),
        mtime,
        tag: args.tag.as_deref(),
    };
    let started = Instant::now();
    // Without --oci the layout is made beside the archive, and removed once it is written.
    let scratch = match (&args.oci, &args.oci_archive) {
        (Some(dir), _) => {
            image::open_layout(dir).map_err(anyhow::Error::msg)?;
            Layout::Kept(dir.clone())
        }
        (None, Some(file)) => Layout::Scratch(scratch_beside(file)?),
        (None, None) => unreachable!("clap requires --oci or --oci-archive"),
    };
    let written = (|| {
        let report = Shown {
            report: Mutex::new(BuildReport::new(host.stderr_is_terminal)),
            started,
        };
        let image = image::write_blobs(scratch.path(), &request, &report)?;
        if let Layout::Kept(dir) = &scratch {
            image::write_index(dir, &image)?;
        }
        if let Some(file) = &args.oci_archive {
            image::write_archive(file, &image, mtime)?;
        }
        Ok::<_, image::ImageError>(image)
    })();
    drop(scratch);
    let image = written.context("writing the image")?;
    let compressed: u64 = image.layers.iter().map(|(_, w)| w.size).sum();
    let content: u64 = image.layers.iter().map(|(_, w)| w.content_bytes).sum();
    let places: Vec<String> = [
        args.oci.as_ref().map(|dir| {
            format!(
                "oci:{}{}",
                dir.display(),
                args.tag
                    .as_ref()
                    .map(|t| format!(":{t}"))
                    .unwrap_or_default()
            )
        }),
        args.oci_archive
            .as_ref()
            .map(|file| format!("oci-archive:{}", file.display())),
    ]
    .into_iter()
    .flatten()
    .collect();
    status(&format!(
        "exported environment {}: {} packages in {} layers, {} of files, {} compressed, in {:.1}s, to {}",
        rootfs.key,
        packages.len(),
        image.layers.len(),
        human_bytes(content),
        human_bytes(compressed),
        started.elapsed().as_secs_f64(),
        places.join(" and ")
    ));
    for line in left_out(&manifest) {
        status(&line);
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", image.manifest.digest).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `SOURCE_DATE_EPOCH`, the time of every entry in the image (reproducible-builds.org's
/// convention); 0 where it is unset.
fn source_date_epoch(host: &HostFacts) -> Result<u64> {
    let Some(value) = host.var("SOURCE_DATE_EPOCH") else {
        return Ok(0);
    };
    match value.to_str().and_then(|text| text.parse::<u64>().ok()) {
        // tar's and the image config's times stop at year 9999 and 8^11 seconds.
        Some(seconds) if seconds < 0o77777777777 => Ok(seconds),
        _ => bail!(
            "SOURCE_DATE_EPOCH is {value:?}, which is not a number of seconds since 1970; \
             set it to one (`git log -1 --format=%ct` is usual), or unset it for 0"
        ),
    }
}

fn check_archive_path(file: &Path) -> Result<()> {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--oci-archive {}: the directory {} does not exist; create it, or name a file in an existing one",
            file.display(),
            parent.display()
        );
    }
    if file.is_dir() {
        bail!(
            "--oci-archive {}: is a directory; name a file (a directory is what --oci writes)",
            file.display()
        );
    }
    Ok(())
}

/// A layout directory: the user's, or one made for an archive alone.
enum Layout {
    Kept(PathBuf),
    Scratch(PathBuf),
}

impl Layout {
    fn path(&self) -> &Path {
        match self {
            Layout::Kept(path) | Layout::Scratch(path) => path,
        }
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        if let Layout::Scratch(path) = self {
            std::fs::remove_dir_all(path).ok();
        }
    }
}

fn scratch_beside(file: &Path) -> Result<PathBuf> {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = file.with_file_name(format!(".{name}.layout-{}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    image::open_layout(&dir).map_err(anyhow::Error::msg)?;
    Ok(dir)
}

/// The export's progress, on the build's progress line.
struct Shown {
    report: Mutex<BuildReport>,
    started: Instant,
}

impl image::Progress for Shown {
    fn bytes(&self, done: u64, total: u64, layers_done: usize, layers_total: usize) {
        use crate::store::Report;
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        report.progress(&Progress {
            what: "writing layers",
            packages_done: layers_done,
            packages_total: layers_total,
            bytes_done: done,
            bytes_total: total,
            elapsed: self.started.elapsed(),
        });
    }
}

/// What a paude launch puts around the tree that an image cannot hold, as lines for stderr:
/// a runtime that runs the image has to be told these itself.
pub fn left_out(manifest: &Manifest) -> Vec<String> {
    let mut lines = vec![
        "not in the image: the workspace bind (mount your project at /workspace), the \
         shadowing of the workspace's Python venvs, the seccomp filter, the read-only \
         protected paths (the repository's hooks and config, the manifest), the user's own \
         passwd entry, and the default /dev, /proc, /sys and /tmp mounts (the runtime's)"
            .to_string(),
    ];
    if !manifest.mounts.is_empty() {
        let targets: Vec<String> = manifest
            .mounts
            .iter()
            .map(|mount| mount.target.display().to_string())
            .collect();
        lines.push(format!(
            "not in the image: the manifest's mounts ({}); give them to the runtime",
            targets.join(", ")
        ));
    }
    if !manifest.env_keep.is_empty() {
        lines.push(format!(
            "not in the image: envKeep ({}), host variables a runtime passes with its own options",
            manifest.env_keep.join(", ")
        ));
    }
    if manifest.home != HomeMode::Tmpfs {
        lines.push("not in the image: the manifest's home directory".into());
    }
    lines.push(format!(
        "not in the image: the network setting (network: {}); the runtime decides",
        manifest.network.describe()
    ));
    lines
}
