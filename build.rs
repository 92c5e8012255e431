//! Records the git commit the binary is built from, for `deployql_build_info`.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DEPLOYQL_GIT_COMMIT={commit}");
    // Named, so that cargo does not rerun this (and rebuild the crate) when
    // any other file of the package changes, as it does for a build script
    // that names nothing: a checkout with no `.git` at all.
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit moves the branch's ref (or HEAD itself when detached).
    // Only paths that exist: cargo takes a missing one as changed, and
    // would rerun this and rebuild the crate on every build (a checkout
    // without packed refs, a tarball).
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
