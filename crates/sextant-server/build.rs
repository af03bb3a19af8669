//! Builds the web UI (`ui/` at the workspace root: TypeScript and Vite, from the npm registry)
//! into `OUT_DIR/ui` and writes `OUT_DIR/ui_assets.rs`, the list of files the binary embeds.
//!
//! It runs `npm ci` when `ui/node_modules` is missing, then `npm run build`. A failed build
//! fails the compilation with npm's output. `SEXTANT_UI_DIST=DIR` embeds an already built UI
//! instead; without `npm` on the machine the UI is replaced by a page that says how to build it
//! (and cargo prints a warning).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ui = manifest.join("../../ui");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("ui");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", ui.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=SEXTANT_UI_DIST");
    let dist = match std::env::var_os("SEXTANT_UI_DIST") {
        Some(dist) => PathBuf::from(dist),
        None if npm_found() => {
            build(&ui, &out);
            out.clone()
        }
        None => {
            println!(
                "cargo:warning=npm was not found: the web UI is not built (install Node.js and npm)"
            );
            std::fs::create_dir_all(&out).expect("create the UI directory");
            std::fs::write(
                out.join("index.html"),
                "<!doctype html><title>Sextant</title><p>This Sextant was built without its web \
                 UI: install Node.js and npm, then build again. The HTTP API works as documented.</p>",
            )
            .expect("write the placeholder page");
            out.clone()
        }
    };
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut code = String::from(
        "/// The web UI's files: (path from the UI root, contents).\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (relative, absolute) in &files {
        code.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            format!("/{relative}"),
            absolute.display().to_string()
        ));
    }
    code.push_str("];\n");
    let target =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("ui_assets.rs");
    std::fs::write(target, code).expect("write ui_assets.rs");
}

fn npm_found() -> bool {
    Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(ui: &Path, args: &[&str]) {
    let output = Command::new("npm")
        .args(args)
        .current_dir(ui)
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm {args:?}: {e}"));
    if !output.status.success() {
        panic!(
            "npm {args:?} failed in {}:\n{}\n{}",
            ui.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn build(ui: &Path, out: &Path) {
    if !ui.join("node_modules/.bin/vite").exists() {
        run(ui, &["ci", "--no-audit", "--no-fund"]);
    }
    let out = out.display().to_string();
    run(
        ui,
        &["run", "build", "--", "--outDir", &out, "--emptyOutDir"],
    );
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let relative = relative.to_string_lossy().replace('\\', "/");
            files.push((relative, path.canonicalize().unwrap_or(path)));
        }
    }
}
