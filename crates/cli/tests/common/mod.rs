//! Helpers shared by the end-to-end tests of the `allmlp` binary.

#![allow(dead_code)] // each test file uses a subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `allmlp` binary with `args` in `dir`.
pub fn allmlp(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allmlp"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the allmlp binary runs")
}

/// Asserts a clean failure: non-zero exit, `error: ` first, no panic, each of `what` named.
pub fn assert_fails(o: &Output, what: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure: {err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for w in what {
        assert!(err.contains(w), "expected `{w}` in: {err}");
    }
}
