//! The PyTorch side of `cargo xtask bench` and `cargo xtask parity`: find (or set up) a
//! python with torch, and run `tools/bench_torch.py` on one case at a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Environment variable naming a python that has torch (skips the `.venv` setup).
const PYTHON_ENV: &str = "ALLMLP_TORCH_PYTHON";

/// OpenBLAS tuning variables that can slow numpy/torch; removed for the torch process only.
pub const OPENBLAS_VARS: [&str; 2] = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"];

/// A python interpreter with torch, and the benchmark script.
pub struct Torch {
    python: PathBuf,
    script: PathBuf,
    /// One line about the torch build: version, MKL-DNN and MKL availability.
    pub info: String,
}

/// Finds a python with torch: `$ALLMLP_TORCH_PYTHON`, else `<root>/.venv`, creating it
/// and installing `tools/requirements-bench.txt` when needed. The error says why not.
pub fn find(root: &Path) -> Result<Torch, String> {
    let script = root.join("tools").join("bench_torch.py");
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    find_python(root, |python| probe(python, script.clone()))
}

/// Finds a python that imports torch, timm, safetensors and numpy (the fixture scripts'
/// needs), the same way as [`find`].
pub fn find_fixture_python(root: &Path) -> Result<PathBuf, String> {
    find_python(root, |python| {
        let out = Command::new(&python)
            .args(["-c", "import torch, timm, safetensors, numpy"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        if out.status.success() {
            return Ok(python);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        Err(format!(
            "{} cannot import torch, timm, safetensors and numpy: {}",
            python.display(),
            last.unwrap_or("no message")
        ))
    })
}

/// `$ALLMLP_TORCH_PYTHON` if set (it must pass `check`), else `<root>/.venv`'s python if it
/// passes `check`, else that venv created / completed with `tools/requirements-bench.txt`
/// and checked again.
fn find_python<T>(root: &Path, check: impl Fn(PathBuf) -> Result<T, String>) -> Result<T, String> {
    if let Some(python) = std::env::var_os(PYTHON_ENV) {
        return check(PathBuf::from(python)).map_err(|e| format!("${PYTHON_ENV}: {e}"));
    }
    let venv = root.join(".venv");
    let python = venv_python(&venv);
    if python.is_file()
        && let Ok(found) = check(python.clone())
    {
        return Ok(found);
    }
    setup_venv(root, &venv, &python)?;
    check(python)
}

/// The interpreter inside a venv.
fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// `python3 -m venv .venv` (if missing) and `pip install -r tools/requirements-bench.txt`.
fn setup_venv(root: &Path, venv: &Path, python: &Path) -> Result<(), String> {
    let requirements = root.join("tools").join("requirements-bench.txt");
    if !python.is_file() {
        eprintln!("xtask: creating {} for PyTorch", venv.display());
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .map_err(|e| format!("no python3 to create {}: {e}", venv.display()))?;
        if !status.success() {
            return Err(format!(
                "python3 -m venv {} failed: {status}",
                venv.display()
            ));
        }
    }
    eprintln!(
        "xtask: installing {} into {} (large download)",
        requirements.display(),
        venv.display()
    );
    let status = Command::new(python)
        .args(["-m", "pip", "install", "-r"])
        .arg(&requirements)
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pip install -r {} failed: {status}",
            requirements.display()
        ));
    }
    Ok(())
}

/// Checks that `python` imports torch and reads its build info.
fn probe(python: PathBuf, script: PathBuf) -> Result<Torch, String> {
    let mut torch = Torch {
        python,
        script,
        info: String::new(),
    };
    let info = torch.json(&["--info"], 1)?;
    let flag = |key: &str| info[key].as_bool().map_or("?".into(), |b| b.to_string());
    torch.info = format!(
        "torch {} (mkldnn={}, mkl={}), python {} at {}",
        info["torch"].as_str().unwrap_or("?"),
        flag("mkldnn"),
        flag("mkl"),
        info["python"].as_str().unwrap_or("?"),
        torch.python.display()
    );
    Ok(torch)
}

impl Torch {
    /// Median seconds of one call for the case described by `case_args`
    /// (`--kind ... --case ...` and shape flags) on `threads` threads.
    pub fn median_seconds(
        &self,
        case_args: &[String],
        threads: usize,
        quick: bool,
    ) -> Result<f64, String> {
        let mut args: Vec<String> = case_args.to_vec();
        args.extend(["--threads".into(), threads.to_string()]);
        if quick {
            args.push("--quick".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.json(&args, threads)?;
        out["median_s"]
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("bench_torch.py printed no valid median_s: {out}"))
    }

    /// Runs the script with `--json` and parses the last line of its output.
    fn json(&self, args: &[&str], threads: usize) -> Result<Value, String> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).args(args).arg("--json");
        for var in OPENBLAS_VARS {
            cmd.env_remove(var);
        }
        let out = cmd
            .env("OMP_NUM_THREADS", threads.to_string())
            .env("MKL_NUM_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.python.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(format!(
                "{} {} failed ({}): {}",
                self.python.display(),
                self.script.display(),
                out.status,
                last.unwrap_or("no message")
            ));
        }
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(last)
            .map_err(|e| format!("bench_torch.py printed invalid JSON ({e}): {last:?}"))
    }
}
