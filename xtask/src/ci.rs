//! `cargo xtask ci`: formatting, lints and tests, stopping at the first failure.

use crate::cargo;

/// The steps in order: a name for messages and cargo's arguments.
const STEPS: [(&str, &[&str]); 3] = [
    ("fmt", &["fmt", "--all", "--", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("test", &["test", "--workspace"]),
];

/// Runs every step; the error names the step that failed.
pub fn run() -> Result<(), String> {
    for (name, args) in STEPS {
        eprintln!("xtask ci: [{name}] cargo {}", args.join(" "));
        let status = cargo()
            .args(args)
            .status()
            .map_err(|e| format!("ci step `{name}`: cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "ci step `{name}` failed (cargo {}: {status})",
                args.join(" ")
            ));
        }
    }
    eprintln!("xtask ci: all steps passed (fmt, clippy, test)");
    Ok(())
}
