//! `paude export` with the real tools that read OCI images: skopeo reads what it writes,
//! umoci unpacks it into a tree in which the real bwrap runs the environment's git, two
//! exports of one closure are the same bytes, and two environments share the layers of the
//! packages they share. As an unprivileged user where the tests run as root.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Who exports: nobody where the tests run as root.
fn exporter() -> As {
    if is_root() { As::Nobody } else { As::Me }
}

/// Whether `tool` runs here; under `CI=true` a missing one fails the test.
fn tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is not installed, and CI=true: apt-get install {tool}");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

fn core_manifest() -> String {
    format!("{}/examples/core-venv.jsonnet", env!("CARGO_MANIFEST_DIR"))
}

/// `tool ARGS` as `who`; its stdout, which it must succeed to give.
fn run_ok(who: As, program: &str, args: &[&str]) -> String {
    let output = command_as(who, program)
        .args(args)
        .env("HOME", shared_home(who))
        .output()
        .expect("running");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A dir for the images, owned by `who`.
fn images(who: As) -> TestDir {
    TestDir::new(who)
}

fn export(paude: &Paude, args: &[&str]) -> String {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    ok(&paude.run(&all)).trim().to_string()
}

/// What a tree holds, path by path: the kind, the mode, and a link's target or a file's bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, (char, u32, Vec<u8>)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&relative)).expect("read_dir") {
            let entry = entry.expect("entry");
            let inner = relative.join(entry.file_name());
            let meta = entry.metadata().expect("lstat");
            let mode = meta.mode() & 0o7777;
            let what = if meta.is_dir() {
                pending.push(inner.clone());
                ('d', mode, Vec::new())
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).expect("readlink");
                ('l', 0, target.into_os_string().into_encoded_bytes())
            } else {
                ('f', mode, std::fs::read(entry.path()).expect("read"))
            };
            found.insert(inner, what);
        }
    }
    found
}

/// The environment's tree in the store of `paude_home` (the only one there).
fn rootfs(paude_home: &Path) -> PathBuf {
    let venvs: Vec<PathBuf> = std::fs::read_dir(paude_home.join("venv"))
        .expect("venv")
        .map(|entry| entry.expect("entry").path().join("rootfs"))
        .filter(|path| path.is_dir())
        .collect();
    assert_eq!(venvs.len(), 1, "{venvs:?}");
    venvs.into_iter().next().unwrap()
}

/// The layers of the image `digest` in the layout `dir`, each with its history line.
fn layers(dir: &Path, digest: &str) -> Vec<(String, String)> {
    let blob = |digest: &str| -> Value {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).expect("blob")).expect("json")
    };
    let manifest = blob(digest);
    let config = blob(manifest["config"]["digest"].as_str().expect("config"));
    let history = config["history"].as_array().expect("history");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(history.len(), layers.len());
    layers
        .iter()
        .zip(history)
        .map(|(layer, history)| {
            (
                history["created_by"]
                    .as_str()
                    .expect("created_by")
                    .to_string(),
                layer["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

/// skopeo reads the image with the manifest's variables and paude's defaults; umoci unpacks
/// it rootless into exactly the environment's tree (with the working directory and the
/// image's accounts), in which the real bwrap runs git.
#[test]
fn an_image_is_the_environment_and_the_tools_read_it() {
    require_bwrap!();
    if !tool("skopeo") || !tool("umoci") {
        return;
    }
    let who = exporter();
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let out = images(who);
    let paude = Paude::new(who, home.path(), workspace.path());
    let layout = out.path().join("image");
    let manifest = format!(
        "(import '{}') + {{envSet+: {{GREETING: 'hello'}}}}",
        core_manifest()
    );
    let layout_text = layout.to_str().unwrap();
    let output = paude.run([
        "export",
        "-e",
        &manifest,
        "--oci",
        layout_text,
        "--tag",
        "core",
    ]);
    let digest = ok(&output).trim().to_string();
    let said = text(&output.stderr);
    assert!(said.contains("exported environment"), "{said}");
    assert!(
        said.contains("not in the image: the workspace bind"),
        "{said}"
    );

    let inspected: Value = serde_json::from_str(&run_ok(
        who,
        "skopeo",
        &["inspect", &format!("oci:{layout_text}:core")],
    ))
    .expect("skopeo's JSON");
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Os"], "linux");
    let env: Vec<&str> = inspected["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{env:?}");
    assert!(
        env.iter()
            .any(|v| v.starts_with("PATH=/usr/local/bin:/usr/bin")),
        "{env:?}"
    );
    let library_path = env
        .iter()
        .find_map(|v| v.strip_prefix("LD_LIBRARY_PATH="))
        .expect("LD_LIBRARY_PATH");

    let bundle = out.path().join("bundle");
    run_ok(
        who,
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{layout_text}:core"),
            bundle.to_str().unwrap(),
        ],
    );
    let unpacked = bundle.join("rootfs");
    let mut image = tree(&unpacked);
    let mut environment = tree(&rootfs(&paude.paude_home()));
    assert_eq!(image.remove(Path::new("workspace")).map(|e| e.0), Some('d'));
    let passwd = image.remove(Path::new("etc/passwd")).expect("passwd");
    assert!(String::from_utf8_lossy(&passwd.2).starts_with("root:x:0:0:"));
    assert!(image.remove(Path::new("etc/group")).is_some());
    environment.remove(Path::new("etc/passwd"));
    environment.remove(Path::new("etc/group"));
    let differing: Vec<&PathBuf> = environment
        .keys()
        .chain(image.keys())
        .filter(|path| environment.get(*path) != image.get(*path))
        .collect();
    assert!(differing.is_empty(), "the image differs at {differing:?}");
    assert!(environment.len() > 4000, "{}", environment.len());

    let unpacked_text = unpacked.to_str().unwrap();
    let version = run_ok(
        who,
        "bwrap",
        &[
            "--bind",
            unpacked_text,
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-all",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--setenv",
            "LD_LIBRARY_PATH",
            library_path,
            "git",
            "--version",
        ],
    );
    assert!(version.starts_with("git version "), "{version}");
}

/// The same closure gives the same bytes: two exports from two stores (each unpacking the
/// packages anew) have one digest, and so have their archives, byte for byte;
/// `SOURCE_DATE_EPOCH` moves every time, and with it the digest.
#[test]
fn the_same_closure_gives_the_same_digests() {
    require_bwrap!();
    if !tool("skopeo") {
        return;
    }
    let who = exporter();
    let workspace = TestDir::new(who);
    let out = images(who);
    let mut digests = Vec::new();
    let mut archives = Vec::new();
    for round in 0..2 {
        let home = TestDir::new(who);
        let paude = Paude::new(who, home.path(), workspace.path());
        let layout = out.path().join(format!("image-{round}"));
        let archive = out.path().join(format!("image-{round}.tar"));
        digests.push(export(
            &paude,
            &[
                "-e",
                &core_manifest(),
                "--oci",
                layout.to_str().unwrap(),
                "--oci-archive",
                archive.to_str().unwrap(),
                "--tag",
                "localhost/core:1",
            ],
        ));
        archives.push(std::fs::read(&archive).expect("archive"));
        let inspected: Value = serde_json::from_str(&run_ok(
            who,
            "skopeo",
            &["inspect", &format!("oci-archive:{}", archive.display())],
        ))
        .expect("skopeo's JSON");
        assert_eq!(inspected["Digest"], digests[round].as_str());
        assert_eq!(inspected["Created"], "1970-01-01T00:00:00Z");
    }
    assert_eq!(digests[0], digests[1]);
    assert!(archives[0] == archives[1], "the archives differ");

    let home = shared_home(who);
    let dated = Paude::new(who, home, workspace.path()).env("SOURCE_DATE_EPOCH", "1700000000");
    let layout = out.path().join("dated");
    let digest = export(
        &dated,
        &["-e", &core_manifest(), "--oci", layout.to_str().unwrap()],
    );
    assert_ne!(digest, digests[0]);
    let inspected: Value = serde_json::from_str(&run_ok(
        who,
        "skopeo",
        &["inspect", &format!("oci:{}", layout.display())],
    ))
    .expect("skopeo's JSON");
    assert_eq!(inspected["Created"], "2023-11-14T22:13:20Z");
}

/// A second environment that adds a package to the first holds every layer of the first's
/// own packages, digest for digest; and a second image in the same layout keeps the first.
#[test]
fn environments_that_share_packages_share_layers() {
    require_bwrap!();
    let who = exporter();
    let workspace = TestDir::new(who);
    let out = images(who);
    let paude = Paude::new(who, shared_home(who), workspace.path());
    let layout = out.path().join("image");
    let layout_text = layout.to_str().unwrap();
    let core = export(
        &paude,
        &[
            "-e",
            &core_manifest(),
            "--oci",
            layout_text,
            "--tag",
            "core",
        ],
    );
    let more = export(
        &paude,
        &[
            "-e",
            "{packages: ['bash', 'coreutils', 'git', 'dash', 'python3-minimal']}",
            "--oci",
            layout_text,
            "--tag",
            "more",
        ],
    );
    assert_ne!(core, more);
    let (first, second) = (layers(&layout, &core), layers(&layout, &more));
    let own: Vec<&(String, String)> = first
        .iter()
        .filter(|(history, _)| history.starts_with("paude: package "))
        .collect();
    assert!(own.len() >= 8, "{first:?}");
    for layer in &own {
        assert!(second.contains(layer), "{layer:?} is not in {second:?}");
    }
    let shared = first.iter().filter(|layer| second.contains(layer)).count();
    assert!(
        shared + 3 >= first.len(),
        "{shared} of {} shared",
        first.len()
    );
    assert!(
        second
            .iter()
            .any(|(history, _)| history.contains("python3-minimal"))
    );
    // Both images are in the index, each by its name.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
            .expect("json");
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["core", "more"]);
}

/// Mistakes are refused with the option and the fix, exit 125, before anything is built.
#[test]
fn bad_export_input_is_refused_before_anything_is_written() {
    let who = exporter();
    let home = TestDir::new(who);
    let workspace = TestDir::new(who);
    let out = images(who);
    let taken = out.path().join("taken");
    write(&taken.join("notes.txt"), "mine\n");
    hand_over(who, out.path());
    let paude = Paude::new(who, home.path(), workspace.path());
    let image = out.path().join("image");
    let image = image.to_str().unwrap();
    let manifest = core_manifest();
    // The options, a variable, and what the error says.
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--oci", image, "--tag", "a b"], None, "--tag \"a b\""),
        (
            vec!["--oci", image, "--tag", "core-"],
            None,
            "--tag \"core-\"",
        ),
        (vec![], None, "--oci"),
        (
            vec!["--oci", taken.to_str().unwrap()],
            None,
            "is not empty and is no OCI layout",
        ),
        (
            vec!["--oci", image],
            Some(("SOURCE_DATE_EPOCH", "yesterday")),
            "SOURCE_DATE_EPOCH",
        ),
        (
            vec!["--oci-archive", "/nonexistent/x.tar"],
            None,
            "/nonexistent does not exist",
        ),
    ];
    for (args, env, message) in cases {
        let mut paude = paude.clone();
        if let Some((name, value)) = env {
            paude = paude.env(name, value);
        }
        let mut all = vec!["export", "-e", manifest.as_str()];
        all.extend(args.iter().copied());
        let output = paude.run(&all);
        assert_eq!(
            output.status.code(),
            Some(125),
            "{all:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(message),
            "{all:?}: {}",
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty());
        assert!(
            !paude.paude_home().join("venv").exists(),
            "{all:?} built an environment"
        );
    }
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).expect("read"),
        "mine\n"
    );
    assert!(!Path::new(image).exists());
}

/// `podman load` takes the archive, into a store of the test's own, with its name, digest,
/// variables and working directory. (Loading as root: podman gives an unprivileged user a
/// store only through subordinate ids, which nobody has none of. Running a container is
/// not tried: that needs a runtime that may set resource limits, which a container running
/// the tests may not allow.)
#[test]
fn podman_loads_the_archive() {
    require_bwrap!();
    if !is_root() {
        eprintln!("SKIPPED: podman loads into a store of its own as root");
        return;
    }
    if !tool("podman") {
        return;
    }
    let home = TestDir::new(As::Me);
    let workspace = TestDir::new(As::Me);
    let out = images(As::Me);
    let archive = out.path().join("core.tar");
    let paude = Paude::new(As::Me, home.path(), workspace.path());
    // A small closure: podman's portable storage copies the tree once per layer.
    let digest = export(
        &paude,
        &[
            "-e",
            "{packages: ['dash']}",
            "--oci-archive",
            archive.to_str().unwrap(),
            "--tag",
            "localhost/core:1",
        ],
    );
    let storage = out.path().join("podman");
    let root = storage.join("root");
    let run = storage.join("run");
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            run.to_str().unwrap(),
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run_ok(As::Me, "podman", &all)
    };
    let loaded = podman(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("localhost/core:1"), "{loaded}");
    let inspected = podman(&[
        "image",
        "inspect",
        "localhost/core:1",
        "--format",
        "{{.Digest}} {{.Config.WorkingDir}} {{.Config.Env}}",
    ]);
    assert!(
        inspected.starts_with(&format!("{digest} /workspace [PATH=")),
        "{inspected}"
    );
}
