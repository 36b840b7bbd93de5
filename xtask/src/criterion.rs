//! The Rust side of `cargo xtask bench`: build the criterion benches of
//! `allmlp-benches`, run one case at a time, and read criterion's results.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde_json::Value;

use crate::cargo;

/// The benchmark package.
const PACKAGE: &str = "allmlp-benches";

/// What `cargo metadata` says about the benchmark package.
pub struct Benches {
    /// Names of the package's `[[bench]]` targets.
    pub names: Vec<String>,
    /// The package's directory (cargo runs bench executables there).
    pub package_dir: PathBuf,
    /// Where criterion writes: `$CRITERION_HOME` or `<target dir>/criterion`.
    pub criterion_home: PathBuf,
    /// The cargo target directory.
    pub target_dir: PathBuf,
}

/// `cargo metadata --no-deps` of the workspace.
fn metadata() -> Result<Value, String> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo metadata failed: {}", out.status));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed invalid JSON: {e}"))
}

/// The cargo target directory (`CARGO_TARGET_DIR` and cargo's config respected).
pub fn target_dir() -> Result<PathBuf, String> {
    target_dir_of(&metadata()?)
}

fn target_dir_of(meta: &Value) -> Result<PathBuf, String> {
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata: no target_directory".to_string())
}

/// Reads the bench targets and the target directory from `cargo metadata`.
pub fn benches() -> Result<Benches, String> {
    let meta = metadata()?;
    let target_dir = target_dir_of(&meta)?;
    let package = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == PACKAGE))
        .ok_or(format!(
            "cargo metadata: no package {PACKAGE} in the workspace"
        ))?;
    let package_dir = package["manifest_path"]
        .as_str()
        .and_then(|m| Path::new(m).parent())
        .map(PathBuf::from)
        .ok_or(format!("cargo metadata: no manifest_path for {PACKAGE}"))?;
    let names = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"))
        })
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect();
    let criterion_home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir.join("criterion"));
    Ok(Benches {
        names,
        package_dir,
        criterion_home,
        target_dir,
    })
}

/// Builds the named benches once (`cargo bench --no-run`) and returns their executables.
pub fn build(names: &[&str]) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut cmd = cargo();
    cmd.args(["bench", "-p", PACKAGE, "--no-run"])
        .arg("--message-format=json-render-diagnostics");
    for name in names {
        cmd.args(["--bench", name]);
    }
    eprintln!("xtask bench: building {} ({})", PACKAGE, names.join(", "));
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo bench --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the benches failed: {}", out.status));
    }
    let mut exes = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let is_bench = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "bench"));
        if msg["reason"] == "compiler-artifact"
            && is_bench
            && let (Some(name), Some(exe)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            exes.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    Ok(exes)
}

/// How long criterion warms up and measures.
pub struct Timing {
    /// Shorter runs (`--quick` of the xtask).
    pub quick: bool,
    /// Show criterion's output instead of capturing it.
    pub verbose: bool,
}

/// Runs a bench executable on the benchmarks matching `filter` (a regex) with
/// `ALLMLP_NUM_THREADS=threads`.
pub fn run(
    exe: &Path,
    benches: &Benches,
    filter: &str,
    threads: usize,
    timing: &Timing,
) -> Result<(), String> {
    let mut cmd = Command::new(exe);
    cmd.current_dir(&benches.package_dir)
        .env("ALLMLP_NUM_THREADS", threads.to_string())
        .env("CRITERION_HOME", &benches.criterion_home)
        .args(["--bench", filter, "--noplot"]);
    if timing.quick {
        cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1"]);
    }
    if timing.verbose {
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("{} {filter}: {status}", exe.display()))
        };
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} {filter}: {}\n{}{}",
        exe.display(),
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout), 20),
        tail(&String::from_utf8_lossy(&out.stderr), 20)
    ))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("{l}\n")).collect()
}

/// The regex selecting the ids `<kind>/<any implementation>/<case>`.
pub fn filter(kind: &str, case: &str) -> String {
    format!("^{}/[^/]+/{}$", escape(kind), escape(case))
}

/// Escapes regex metacharacters.
fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let meta = "\\.+*?()|[]{}^$".contains(c);
            meta.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Median nanoseconds per iteration for each implementation id of `<kind>/<impl>/<case>`,
/// from results written at or after `since` (older results are stale and ignored).
///
/// Criterion writes `<home>/<group>/<function>/<value>/new/{benchmark,estimates}.json`
/// with the path parts made filename-safe; `benchmark.json` holds the real ids, so
/// this walks `<home>/<kind>` and matches on those.
pub fn results(
    home: &Path,
    kind: &str,
    case: &str,
    since: Option<SystemTime>,
) -> BTreeMap<String, f64> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![home.join(kind)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some((id, ns)) = read_new(&path, kind, case, since) {
                    found.insert(id, ns);
                }
            } else {
                dirs.push(path);
            }
        }
    }
    found
}

/// Reads one `new/` directory: `(implementation, median ns)` if it is `<kind>/<impl>/<case>`,
/// written either as `BenchmarkId::new(impl, case)` or as `bench_function("impl/case")`.
fn read_new(
    new: &Path,
    kind: &str,
    case: &str,
    since: Option<SystemTime>,
) -> Option<(String, f64)> {
    let id: Value =
        serde_json::from_str(&fs::read_to_string(new.join("benchmark.json")).ok()?).ok()?;
    if id["group_id"] != kind {
        return None;
    }
    let function_id = id["function_id"].as_str()?;
    let function = match id["value_str"].as_str() {
        Some(value) if value == case => function_id.to_string(),
        Some(_) => return None,
        None => function_id
            .strip_suffix(case)?
            .strip_suffix('/')?
            .to_string(),
    };
    let estimates_path = new.join("estimates.json");
    if let Some(since) = since {
        let modified = fs::metadata(&estimates_path)
            .and_then(|m| m.modified())
            .ok()?;
        if modified < since {
            return None;
        }
    }
    let estimates: Value = serde_json::from_str(&fs::read_to_string(estimates_path).ok()?).ok()?;
    let ns = estimates["median"]["point_estimate"].as_f64()?;
    (ns.is_finite() && ns > 0.0).then_some((function, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a criterion-style result as criterion 0.8 lays it out.
    fn write(home: &Path, dir: &str, group: &str, function: &str, value: &str, median: f64) {
        let new = home.join(dir).join("new");
        fs::create_dir_all(&new).unwrap();
        let id = serde_json::json!({
            "group_id": group, "function_id": function, "value_str": value,
            "throughput": null, "full_id": format!("{group}/{function}/{value}"),
            "directory_name": dir, "title": format!("{group}/{function}/{value}"),
        });
        fs::write(new.join("benchmark.json"), id.to_string()).unwrap();
        let est = |x: f64| {
            serde_json::json!({
                "confidence_interval": {"confidence_level": 0.95,
                    "lower_bound": x * 0.9, "upper_bound": x * 1.1},
                "point_estimate": x, "standard_error": x * 0.01,
            })
        };
        let estimates = serde_json::json!({
            "mean": est(median * 1.5), "median": est(median),
            "median_abs_dev": est(1.0), "slope": est(median * 2.0), "std_dev": est(2.0),
        });
        fs::write(new.join("estimates.json"), estimates.to_string()).unwrap();
    }

    #[test]
    fn reads_medians_of_one_case_only() {
        let home = std::env::temp_dir().join(format!("xtask-criterion-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        let case = "1568x512x2048";
        write(
            &home,
            "gemm/tensor-core/1568x512x2048",
            "gemm",
            "tensor-core",
            case,
            2.5e6,
        );
        write(
            &home,
            "gemm/matrixmultiply/1568x512x2048",
            "gemm",
            "matrixmultiply",
            case,
            4e6,
        );
        write(
            &home,
            "gemm/tensor-core/1024x1024x1024",
            "gemm",
            "tensor-core",
            "1024x1024x1024",
            1.0,
        );
        // A base/ copy (previous run) must be ignored, so must other groups.
        let base = home.join("gemm/tensor-core/1568x512x2048/base");
        fs::create_dir_all(&base).unwrap();
        write(
            &home,
            "conv/tensor-core/1568x512x2048",
            "conv",
            "tensor-core",
            case,
            9.0,
        );
        // `bench_function("no-grad/<case>")`: the case is part of the function id.
        let new = home.join("gemm/no-grad_1568x512x2048/new");
        fs::create_dir_all(&new).unwrap();
        let id = serde_json::json!({"group_id": "gemm", "function_id": "no-grad/1568x512x2048", "value_str": null});
        fs::write(new.join("benchmark.json"), id.to_string()).unwrap();
        fs::copy(
            home.join("gemm/tensor-core/1568x512x2048/new/estimates.json"),
            new.join("estimates.json"),
        )
        .unwrap();
        let got = results(&home, "gemm", case, None);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got["no-grad"], 2.5e6);
        assert_eq!(got["tensor-core"], 2.5e6);
        assert_eq!(got["matrixmultiply"], 4e6);
        // Results older than the run are stale.
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(results(&home, "gemm", case, Some(future)).is_empty());
        // Missing directory: nothing, no panic.
        assert!(results(&home.join("nope"), "gemm", case, None).is_empty());
        fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn filter_matches_ids_of_the_case() {
        assert_eq!(
            filter("gemm", "1568x512x2048"),
            "^gemm/[^/]+/1568x512x2048$"
        );
        assert_eq!(filter("conv", "a.b"), "^conv/[^/]+/a\\.b$");
    }
}
