//! The artifacts step: builds every connector component (first-party plugins and test
//! components) once for `wasm32-wasip2`, in its own target directory, and writes their
//! paths as constants for the tests and benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, constant name) of every component the tests use.
const COMPONENTS: &[(&str, &str)] = &[
    ("junction-http", "HTTP"),
    ("junction-github", "GITHUB"),
    ("probe", "PROBE"),
    ("bad-manifest", "BAD_MANIFEST"),
    ("wrong-world", "WRONG_WORLD"),
    ("future-interface", "FUTURE_INTERFACE"),
    ("minimal", "MINIMAL"),
    ("incomplete-guest", "INCOMPLETE_GUEST"),
    // One connector, `versioned`, in three versions (one source): 1.0.0 and 2.0.0 GA,
    // 3.0.0-beta.1 preview.
    ("versioned-1", "VERSIONED_1"),
    ("versioned-2", "VERSIONED_2"),
    ("versioned-3", "VERSIONED_3"),
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf();
    for dir in ["sdk", "wit", "plugins", "tests/components"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let target_dir = root.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Small, fast guests: thin LTO for the components only.
        .env("CARGO_PROFILE_RELEASE_LTO", "thin");
    for (package, _) in COMPONENTS {
        cmd.args(["-p", package]);
    }
    // What the outer cargo set for this build must not leak into the inner one.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    assert!(
        status.success(),
        "building the wasm32-wasip2 components failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );

    let release = target_dir.join("wasm32-wasip2").join("release");
    let mut out = String::from("// Paths of the components built by build.rs.\n");
    for (package, constant) in COMPONENTS {
        let file = release.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.is_file(), "{} was not built", file.display());
        out.push_str(&format!(
            "pub const {constant}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    out.push_str(&format!(
        "/// The directory the components are built in.\npub const WASM_TARGET_DIR: &str = {:?};\n",
        target_dir.display().to_string()
    ));
    let dest = Path::new(&env("OUT_DIR")).join("components.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}
