//! `cargo xtask bench`: Rust criterion benches against PyTorch, case by case.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use allmlp_benches::{AUTOGRAD_CASES, CONV_CASES, GEMM_SHAPES, MODEL_CASES, TRAIN_STEP_CASES};

use crate::criterion::{self, Benches, Timing};
use crate::torch::{self, Torch};
use crate::workspace_root;

/// The implementation the ratio is taken of (ratio = this / torch).
const OURS: &str = "tensor-core";

/// Every benchmark kind, in the order `all` runs them (bench targets of allmlp-benches).
const ALL_KINDS: [&str; 5] = ["gemm", "conv", "train_step", "autograd", "models"];

/// Parsed command line of `cargo xtask bench`.
struct Options {
    kinds: Vec<&'static str>,
    threads: Vec<usize>,
    case: Option<String>,
    torch: bool,
    timing: Timing,
    /// Times each case runs (Rust then torch, each time); the rates are the medians.
    rounds: usize,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        kinds: ALL_KINDS.to_vec(),
        threads: vec![1, 2],
        case: None,
        torch: true,
        timing: Timing {
            quick: false,
            verbose: false,
        },
        rounds: 1,
    };
    let mut name = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-torch" => opts.torch = false,
            "--quick" => opts.timing.quick = true,
            "--verbose" | "-v" => opts.timing.verbose = true,
            "--threads" => {
                let list = args.next().ok_or("--threads needs a list, e.g. 1,2")?;
                opts.threads = parse_threads(list)?;
            }
            "--case" => opts.case = Some(args.next().ok_or("--case needs a name")?.clone()),
            "--rounds" => {
                let n = args.next().ok_or("--rounds needs a count")?;
                opts.rounds = match n.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--rounds: expected a positive integer, got `{n}`")),
                };
            }
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "bench: unknown option `{flag}` (see cargo xtask --help)"
                ));
            }
            other if name.is_none() => name = Some(other.to_string()),
            other => return Err(format!("bench: unexpected argument `{other}`")),
        }
    }
    opts.kinds = match name.as_deref() {
        None | Some("all") => ALL_KINDS.to_vec(),
        Some("gemm") => vec!["gemm"],
        Some("conv") => vec!["conv"],
        Some("train-step" | "train_step") => vec!["train_step"],
        Some("autograd") => vec!["autograd"],
        Some("models") => vec!["models"],
        Some(other) => {
            return Err(format!(
                "bench: NAME must be gemm, conv, train-step, autograd, models or all, got `{other}`"
            ));
        }
    };
    Ok(opts)
}

fn parse_threads(list: &str) -> Result<Vec<usize>, String> {
    list.split(',')
        .map(|t| match t.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "--threads: expected positive integers like 1,2, got `{list}`"
            )),
        })
        .collect()
}

/// What a row's figures count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    /// Floating-point operations: `work` is FLOPs per iteration, rates are GFLOP/s.
    Gflops,
    /// Images: `work` is images per iteration, rates are images/s.
    Images,
    /// Latency: milliseconds per iteration (`work` unused); lower is better.
    Millis,
}

impl Unit {
    /// The unit of every case of `kind` but the `models` latency cases.
    fn of(kind: &str) -> Unit {
        if matches!(kind, "gemm" | "conv") {
            Unit::Gflops
        } else {
            Unit::Images
        }
    }

    fn label(self) -> &'static str {
        match self {
            Unit::Gflops => "GFLOP/s",
            Unit::Images => "img/s",
            Unit::Millis => "ms, batch-1 latency",
        }
    }

    /// Figure from `work` per iteration and seconds per iteration.
    fn rate(self, work: f64, seconds: f64) -> f64 {
        match self {
            Unit::Gflops => work / seconds / 1e9,
            Unit::Images => work / seconds,
            Unit::Millis => seconds * 1e3,
        }
    }

    /// True for rates (more is better), false for latencies.
    fn higher_is_better(self) -> bool {
        self != Unit::Millis
    }
}

/// One benchmark case: its id parts, its work per iteration and how to tell
/// bench_torch.py about it (no arguments: no PyTorch side).
struct Case {
    kind: &'static str,
    name: String,
    work: f64,
    unit: Unit,
    /// The target of the ratio tensor-core/torch, if any (a minimum for rates, a maximum
    /// for latencies).
    target: Option<f64>,
    torch_args: Vec<String>,
}

fn cases(kind: &'static str) -> Vec<Case> {
    let unit = Unit::of(kind);
    if kind == "models" {
        return MODEL_CASES
            .iter()
            .map(|c| Case {
                kind,
                name: c.name(),
                work: c.batch as f64,
                unit: if c.is_latency() {
                    Unit::Millis
                } else {
                    Unit::Images
                },
                target: c.target,
                torch_args: c.torch_args(),
            })
            .collect();
    }
    if kind == "train_step" {
        return TRAIN_STEP_CASES
            .iter()
            .map(|c| Case {
                kind,
                name: c.name(),
                work: c.batch as f64,
                unit,
                target: None,
                torch_args: c.torch_args(),
            })
            .collect();
    }
    if kind == "autograd" {
        return AUTOGRAD_CASES
            .iter()
            .map(|&(name, batch)| Case {
                kind,
                name: name.into(),
                work: batch as f64,
                unit,
                target: None,
                torch_args: Vec::new(),
            })
            .collect();
    }
    if kind == "gemm" {
        return GEMM_SHAPES
            .iter()
            .map(|&(m, k, n)| {
                let name = format!("{m}x{k}x{n}");
                let torch_args = vec!["--kind".into(), kind.into(), "--case".into(), name.clone()];
                let work = 2.0 * (m * k * n) as f64;
                Case {
                    kind,
                    name,
                    work,
                    unit,
                    target: None,
                    torch_args,
                }
            })
            .collect();
    }
    CONV_CASES
        .iter()
        .map(|c| {
            let mut torch_args = vec!["--kind".into(), kind.into(), "--case".into(), c.name.into()];
            let dims = [
                ("n", c.n),
                ("c", c.c),
                ("o", c.o),
                ("h", c.h),
                ("w", c.w),
                ("k", c.k),
                ("stride", c.stride),
                ("pad", c.pad),
                ("groups", c.groups),
            ];
            for (flag, value) in dims {
                torch_args.extend([format!("--{flag}"), value.to_string()]);
            }
            Case {
                kind,
                name: c.name.into(),
                work: c.flops(),
                unit,
                target: None,
                torch_args,
            }
        })
        .collect()
}

/// One line of the table: the figure of each implementation for a case and thread count.
struct Row {
    kind: &'static str,
    case: String,
    threads: usize,
    unit: Unit,
    target: Option<f64>,
    rates: BTreeMap<String, f64>,
    torch: Option<f64>,
}

impl Row {
    /// Implementation ids, `tensor-core` first (shown as n/a when missing), then the rest.
    fn impls(&self) -> Vec<String> {
        let rest = self.rates.keys().filter(|k| *k != OURS).cloned();
        std::iter::once(OURS.to_string()).chain(rest).collect()
    }

    /// tensor-core / torch (for latencies: < 1 is faster).
    fn ratio(&self) -> Option<f64> {
        Some(self.rates.get(OURS)? / self.torch?)
    }

    /// Whether the ratio meets the case's target (`None` without a target or a ratio).
    fn meets_target(&self) -> Option<bool> {
        let (r, t) = (self.ratio()?, self.target?);
        Some(if self.unit.higher_is_better() {
            r >= t
        } else {
            r <= t
        })
    }

    fn line(&self) -> String {
        let mut s = format!("{} {} threads={}", self.kind, self.case, self.threads);
        for id in self.impls() {
            let _ = write!(s, " {id}={}", fmt(self.rates.get(&id).copied(), 1));
        }
        let _ = write!(
            s,
            " torch={} ratio={}",
            fmt(self.torch, 1),
            fmt(self.ratio(), 2)
        );
        if self.unit == Unit::Millis {
            s.push_str(" (ms)");
        }
        if self.target.is_some() {
            let _ = write!(s, " target{}", self.target_text());
        }
        s
    }

    /// `≥1.30 met`, `≤0.80 missed`, `≥1.30 n/a` (no ratio) or `-` (no target).
    fn target_text(&self) -> String {
        let Some(t) = self.target else {
            return "-".into();
        };
        let op = if self.unit.higher_is_better() {
            "≥"
        } else {
            "≤"
        };
        let verdict = match self.meets_target() {
            Some(true) => "met",
            Some(false) => "missed",
            None => "n/a",
        };
        format!("{op}{t:.2} {verdict}")
    }
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

/// Geometric mean and worst ratio (with its case) of rows of one kind, unit and thread
/// count; the worst is the lowest ratio of rates, the highest of latencies.
fn summary(rows: &[&Row]) -> Option<(f64, f64, String, usize)> {
    let ratios: Vec<(f64, &str)> = rows
        .iter()
        .filter_map(|r| Some((r.ratio()?, r.case.as_str())))
        .collect();
    let higher_is_better = rows.first().is_none_or(|r| r.unit.higher_is_better());
    let (worst, worst_case) = ratios.iter().copied().min_by(|a, b| {
        if higher_is_better {
            a.0.total_cmp(&b.0)
        } else {
            b.0.total_cmp(&a.0)
        }
    })?;
    let geomean = (ratios.iter().map(|r| r.0.ln()).sum::<f64>() / ratios.len() as f64).exp();
    Some((geomean, worst, worst_case.to_string(), ratios.len()))
}

fn summary_line(kind: &str, threads: usize, rows: &[&Row]) -> String {
    // `models` has two figures (img/s and ms): say which; other kinds have one.
    let what = match rows.first() {
        Some(r) if kind == "models" => format!("{kind} ({})", r.unit.label()),
        _ => kind.to_string(),
    };
    let mut line = match summary(rows) {
        Some((geo, worst, case, n)) => format!(
            "summary {what} threads={threads} geomean-ratio={geo:.2} worst-ratio={worst:.2} \
             ({case}) cases={n}"
        ),
        None => format!("summary {what} threads={threads} geomean-ratio=n/a (no ratios)"),
    };
    let verdicts: Vec<bool> = rows.iter().filter_map(|r| r.meets_target()).collect();
    if !verdicts.is_empty() {
        let met = verdicts.iter().filter(|&&m| m).count();
        let _ = write!(line, " targets-met={met}/{}", verdicts.len());
    }
    line
}

/// Runs `cargo xtask bench` with its arguments.
pub fn run(args: &[String]) -> Result<(), String> {
    let opts = parse(args)?;
    let benches = criterion::benches()?;
    let present: Vec<&str> = opts
        .kinds
        .iter()
        .copied()
        .filter(|k| {
            let ok = benches.names.iter().any(|n| n == k);
            if !ok {
                eprintln!(
                    "xtask bench: allmlp-benches has no bench `{k}` yet (benches/benches/{k}.rs \
                     and [[bench]] name = \"{k}\" in benches/Cargo.toml); no Rust numbers for {k}"
                );
            }
            ok
        })
        .collect();
    let exes = if present.is_empty() {
        BTreeMap::new()
    } else {
        criterion::build(&present)?
    };
    let torch = if opts.torch {
        torch::find(&workspace_root())
    } else {
        Err("--no-torch".to_string())
    };

    let header = header(&opts, &torch);
    for line in &header {
        println!("# {line}");
    }
    let mut rows = Vec::new();
    let mut failures = 0;
    for &kind in &opts.kinds {
        let cases: Vec<Case> = cases(kind)
            .into_iter()
            .filter(|c| {
                opts.case
                    .as_ref()
                    .is_none_or(|f| c.name.contains(f.as_str()))
            })
            .collect();
        if cases.is_empty() {
            eprintln!("xtask bench: no {kind} case matches --case");
        }
        for &threads in &opts.threads {
            for case in &cases {
                let mut rounds = Vec::with_capacity(opts.rounds);
                for round in 1..=opts.rounds {
                    let (row, failed) = run_case(case, threads, &opts, &benches, &exes, &torch);
                    failures += usize::from(failed);
                    if opts.rounds > 1 {
                        eprintln!("round {round}/{}: {}", opts.rounds, row.line());
                    }
                    rounds.push(row);
                }
                let row = median_row(rounds);
                println!("{}", row.line());
                rows.push(row);
            }
        }
    }
    let summaries = summaries(&opts, &rows);
    for line in &summaries {
        println!("{line}");
    }
    let path = benches.target_dir.join("bench-summary.md");
    std::fs::write(&path, markdown(&header, &rows, &summaries))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("xtask bench: table written to {}", path.display());
    if failures > 0 {
        return Err(format!("{failures} Rust bench run(s) failed (see above)"));
    }
    Ok(())
}

/// One row of the same case from several rounds: each implementation's and torch's median
/// over the rounds that measured it (the mean of the middle two for an even count).
fn median_row(mut rounds: Vec<Row>) -> Row {
    fn median(mut v: Vec<f64>) -> Option<f64> {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }
    let ids: std::collections::BTreeSet<String> = rounds
        .iter()
        .flat_map(|r| r.rates.keys().cloned())
        .collect();
    let rates = ids
        .into_iter()
        .filter_map(|id| {
            let v = rounds
                .iter()
                .filter_map(|r| r.rates.get(&id).copied())
                .collect();
            Some((id, median(v)?))
        })
        .collect();
    let torch = median(rounds.iter().filter_map(|r| r.torch).collect());
    let mut row = rounds.swap_remove(0);
    row.rates = rates;
    row.torch = torch;
    row
}

/// Rust then torch for one case and thread count; `true` when the Rust bench failed.
fn run_case(
    case: &Case,
    threads: usize,
    opts: &Options,
    benches: &Benches,
    exes: &BTreeMap<String, std::path::PathBuf>,
    torch: &Result<Torch, String>,
) -> (Row, bool) {
    let mut row = Row {
        kind: case.kind,
        case: case.name.clone(),
        threads,
        unit: case.unit,
        target: case.target,
        rates: BTreeMap::new(),
        torch: None,
    };
    let mut failed = false;
    if let Some(exe) = exes.get(case.kind) {
        let start = SystemTime::now();
        let filter = criterion::filter(case.kind, &case.name);
        match criterion::run(exe, benches, &filter, threads, &opts.timing) {
            Ok(()) => {
                let medians =
                    criterion::results(&benches.criterion_home, case.kind, &case.name, Some(start));
                if medians.is_empty() {
                    eprintln!(
                        "xtask bench: no criterion results for `{filter}` in {} (does the {} \
                         bench define ids {}/<implementation>/{}?)",
                        benches.criterion_home.display(),
                        case.kind,
                        case.kind,
                        case.name
                    );
                }
                row.rates = medians
                    .into_iter()
                    .map(|(id, ns)| (id, case.unit.rate(case.work, ns * 1e-9)))
                    .collect();
            }
            Err(e) => {
                eprintln!("xtask bench: Rust bench failed: {e}");
                failed = true;
            }
        }
    }
    if let (Ok(torch), false) = (torch, case.torch_args.is_empty()) {
        match torch.median_seconds(&case.torch_args, threads, opts.timing.quick) {
            Ok(s) => row.torch = Some(case.unit.rate(case.work, s)),
            Err(e) => eprintln!("xtask bench: torch {} {}: {e}", case.kind, case.name),
        }
    }
    (row, failed)
}

fn header(opts: &Options, torch: &Result<Torch, String>) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?.to_string();
            Some(line.split_once(':')?.1.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let threads: Vec<String> = opts.threads.iter().map(|t| t.to_string()).collect();
    let mut lines = vec![
        format!(
            "allmlp bench: {cpu}, {cores} hardware threads; threads={}{}{}",
            threads.join(","),
            if opts.timing.quick { " (quick)" } else { "" },
            if opts.rounds > 1 {
                format!(
                    "; {} rounds per case (Rust then torch each round), medians over them",
                    opts.rounds
                )
            } else {
                String::new()
            }
        ),
        "rates from medians (criterion for Rust: of sample means, or of each sample's per-call \
         medians for train_step and models; perf_counter per call for torch): GFLOP/s for gemm and \
         conv, images/s for train_step, autograd and the batch-8 models cases, ms per call for \
         the batch-1 models cases; ratio = tensor-core/torch (for ms: below 1 is faster)"
            .into(),
    ];
    match torch {
        Ok(t) => lines.push(t.info.clone()),
        Err(why) => lines.push(format!("torch=n/a: {why}")),
    }
    for var in torch::OPENBLAS_VARS {
        if let Some(v) = std::env::var_os(var) {
            lines.push(format!(
                "{var}={} is unset for the torch process",
                v.to_string_lossy()
            ));
        }
    }
    lines
}

fn summaries(opts: &Options, rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for &kind in &opts.kinds {
        for (_, unit) in sections(rows).into_iter().filter(|s| s.0 == kind) {
            for &threads in &opts.threads {
                let rows: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.kind == kind && r.unit == unit && r.threads == threads)
                    .collect();
                if !rows.is_empty() {
                    out.push(summary_line(kind, threads, &rows));
                }
            }
        }
    }
    out
}

/// The `(kind, unit)` pairs of `rows`, in order of first appearance.
fn sections(rows: &[Row]) -> Vec<(&'static str, Unit)> {
    let mut out: Vec<(&'static str, Unit)> = Vec::new();
    for r in rows {
        if !out.contains(&(r.kind, r.unit)) {
            out.push((r.kind, r.unit));
        }
    }
    out
}

/// The table as markdown, one section per kind.
fn markdown(header: &[String], rows: &[Row], summaries: &[String]) -> String {
    let mut md = String::from("# Benchmark summary (`cargo xtask bench`)\n\n");
    for line in header {
        let _ = writeln!(md, "- {line}");
    }
    for (kind, unit) in sections(rows) {
        let rows: Vec<&Row> = rows
            .iter()
            .filter(|r| r.kind == kind && r.unit == unit)
            .collect();
        let mut impls: Vec<String> = vec![OURS.into()];
        for row in &rows {
            for id in row.impls() {
                if !impls.contains(&id) {
                    impls.push(id);
                }
            }
        }
        let targets = rows.iter().any(|r| r.target.is_some());
        let _ = writeln!(md, "\n## {kind} ({})\n", unit.label());
        let _ = writeln!(
            md,
            "| case | threads | {} | torch | ratio |{}",
            impls.join(" | "),
            if targets { " target |" } else { "" }
        );
        let _ = writeln!(
            md,
            "|---|---:|{}---:|---:|{}",
            "---:|".repeat(impls.len()),
            if targets { "---|" } else { "" }
        );
        for row in rows {
            let cells: Vec<String> = impls
                .iter()
                .map(|id| fmt(row.rates.get(id).copied(), 1))
                .collect();
            let _ = write!(
                md,
                "| {} | {} | {} | {} | {} |",
                row.case,
                row.threads,
                cells.join(" | "),
                fmt(row.torch, 1),
                fmt(row.ratio(), 2)
            );
            if targets {
                let _ = write!(md, " {} |", row.target_text());
            }
            md.push('\n');
        }
    }
    md.push('\n');
    for line in summaries {
        let _ = writeln!(md, "- {line}");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn row(case: &str, ours: Option<f64>, torch: Option<f64>) -> Row {
        let mut rates = BTreeMap::new();
        if let Some(x) = ours {
            rates.insert(OURS.to_string(), x);
        }
        rates.insert("matrixmultiply".to_string(), 50.0);
        Row {
            kind: "gemm",
            case: case.into(),
            threads: 1,
            unit: Unit::Gflops,
            target: None,
            rates,
            torch,
        }
    }

    fn model_row(case: &str, unit: Unit, ours: f64, torch: f64, target: Option<f64>) -> Row {
        Row {
            kind: "models",
            case: case.into(),
            threads: 2,
            unit,
            target,
            rates: BTreeMap::from([(OURS.to_string(), ours)]),
            torch: Some(torch),
        }
    }

    #[test]
    fn parses_options() {
        let o = parse(&args("gemm --threads 1,4 --no-torch --quick")).unwrap();
        assert_eq!(o.kinds, ["gemm"]);
        assert_eq!(o.threads, [1, 4]);
        assert!(!o.torch && o.timing.quick);
        let o = parse(&[]).unwrap();
        assert_eq!(o.kinds, ALL_KINDS);
        assert_eq!(o.rounds, 1);
        assert_eq!(parse(&args("models --rounds 3")).unwrap().rounds, 3);
        assert_eq!(parse(&args("train-step")).unwrap().kinds, ["train_step"]);
        assert_eq!(parse(&args("models --quick")).unwrap().kinds, ["models"]);
        assert_eq!(o.threads, [1, 2]);
        for bad in [
            "fft",
            "--threads 0",
            "--threads",
            "--threads 1,x",
            "--bogus",
            "gemm conv",
            "--rounds 0",
            "--rounds",
            "--rounds x",
        ] {
            let err = parse(&args(bad)).err();
            assert!(err.is_some(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn cases_carry_shapes_and_flops() {
        let gemm = cases("gemm");
        assert_eq!(gemm[0].name, "1568x512x2048");
        assert_eq!(gemm[0].work, 2.0 * 1568.0 * 512.0 * 2048.0);
        let conv = cases("conv");
        assert_eq!(conv.len(), CONV_CASES.len());
        let stem = &conv[0];
        assert_eq!(stem.name, "stem7x7s2");
        // 4·64·112·112 outputs, 3·7·7 MACs each, 2 FLOPs per MAC.
        assert_eq!(stem.work, 2.0 * (4 * 64 * 112 * 112 * 3 * 49) as f64);
        let a = stem.torch_args.join(" ");
        assert!(
            a.contains("--case stem7x7s2 --n 4 --c 3 --o 64 --h 224 --w 224 --k 7"),
            "{a}"
        );
        assert!(a.ends_with("--stride 2 --pad 3 --groups 1"), "{a}");
    }

    #[test]
    fn train_step_rates_are_images_per_second() {
        let c = &cases("train_step")[0];
        assert_eq!(c.work, TRAIN_STEP_CASES[0].batch as f64);
        assert!(c.torch_args.join(" ").contains("--kind train_step"));
        assert_eq!(Unit::of("train_step").rate(c.work, 0.5), 2.0 * c.work);
        assert_eq!(Unit::of("gemm").rate(2e9, 0.5), 4.0);
        assert!(cases("autograd").iter().all(|c| c.torch_args.is_empty()));
    }

    #[test]
    fn lines_and_summary() {
        let r = row("1568x512x2048", Some(118.3), Some(110.2));
        assert_eq!(
            r.line(),
            "gemm 1568x512x2048 threads=1 tensor-core=118.3 matrixmultiply=50.0 torch=110.2 ratio=1.07"
        );
        let missing = row("8192x49x64", None, Some(10.0));
        assert!(
            missing
                .line()
                .ends_with("tensor-core=n/a matrixmultiply=50.0 torch=10.0 ratio=n/a")
        );
        let rows = [
            row("a", Some(2.0), Some(1.0)),
            row("b", Some(1.0), Some(2.0)),
            missing,
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let (geo, worst, case, n) = summary(&refs).unwrap();
        assert!((geo - 1.0).abs() < 1e-12);
        assert_eq!((worst, case.as_str(), n), (0.5, "b", 2));
        assert!(summary(&refs[2..]).is_none());
        let md = markdown(&["h".into()], &rows, &[summary_line("gemm", 1, &refs)]);
        assert!(md.contains("| case | threads | tensor-core | matrixmultiply | torch | ratio |"));
        assert!(md.contains("| a | 1 | 2.0 | 50.0 | 1.0 | 2.00 |"), "{md}");
        assert!(
            md.contains("geomean-ratio=1.00 worst-ratio=0.50 (b) cases=2"),
            "{md}"
        );
    }

    #[test]
    fn model_cases_are_throughput_at_batch_8_and_latency_at_batch_1() {
        let cases = cases("models");
        assert_eq!(cases.len(), MODEL_CASES.len());
        let b8 = cases.iter().find(|c| c.name == "mixer_b16_224_b8").unwrap();
        assert_eq!(
            (b8.unit, b8.work, b8.target),
            (Unit::Images, 8.0, Some(1.3))
        );
        // 8 images in 1.25 s: 6.4 img/s.
        assert!((b8.unit.rate(b8.work, 1.25) - 6.4).abs() < 1e-12);
        let a = b8.torch_args.join(" ");
        assert!(
            a.contains("--kind models --case mixer_b16_224_b8 --model mixer_b16_224 --source timm --batch 8"),
            "{a}"
        );
        let b1 = cases.iter().find(|c| c.name == "resmlp_12_224_b1").unwrap();
        assert_eq!((b1.unit, b1.target), (Unit::Millis, Some(0.8)));
        assert_eq!(b1.unit.rate(b1.work, 0.044), 44.0);
        let dep = cases
            .iter()
            .find(|c| c.name == "repmlpnet_t224_deploy_b1")
            .unwrap();
        assert!(dep.target.is_none());
        assert!(
            dep.torch_args
                .join(" ")
                .ends_with("--source repmlpnet-ref --batch 1 --deploy")
        );
        // The four timm models, at both batch sizes, carry the targets.
        assert_eq!(cases.iter().filter(|c| c.target.is_some()).count(), 8);
    }

    #[test]
    fn latency_ratios_are_better_when_lower() {
        let fast = model_row("a_b1", Unit::Millis, 40.0, 56.0, Some(0.8));
        let slow = model_row("b_b1", Unit::Millis, 90.0, 89.0, Some(0.8));
        assert_eq!(fast.meets_target(), Some(true));
        assert_eq!(slow.meets_target(), Some(false));
        assert!(
            fast.line().ends_with("ratio=0.71 (ms) target≤0.80 met"),
            "{}",
            fast.line()
        );
        let refs = [&fast, &slow];
        let (_, worst, case, _) = summary(&refs).unwrap();
        assert_eq!(case, "b_b1");
        assert!((worst - 90.0 / 89.0).abs() < 1e-12);
        let line = summary_line("models", 2, &refs);
        assert!(
            line.starts_with("summary models (ms, batch-1 latency) threads=2"),
            "{line}"
        );
        assert!(line.ends_with("targets-met=1/2"), "{line}");
        let thr = model_row("c_b8", Unit::Images, 25.0, 19.3, Some(1.3));
        assert_eq!(thr.meets_target(), Some(false));
        let none = model_row("d_b8", Unit::Images, 5.0, 4.0, None);
        assert!(none.meets_target().is_none() && !none.line().contains("target"));
        // One markdown section per unit, with a target column.
        let rows = [thr, fast, none];
        let md = markdown(&[], &rows, &[]);
        assert!(md.contains("## models (img/s)") && md.contains("## models (ms, batch-1 latency)"));
        assert!(
            md.contains("| c_b8 | 2 | 25.0 | 19.3 | 1.30 | ≥1.30 missed |"),
            "{md}"
        );
        assert!(md.contains("| d_b8 | 2 | 5.0 | 4.0 | 1.25 | - |"), "{md}");
        assert!(
            md.contains("| a_b1 | 2 | 40.0 | 56.0 | 0.71 | ≤0.80 met |"),
            "{md}"
        );
        let opts = parse(&args("models --threads 2")).unwrap();
        let sums = summaries(&opts, &rows);
        assert_eq!(sums.len(), 2, "{sums:?}");
    }

    #[test]
    fn rounds_combine_into_medians() {
        let mut a = row("c", Some(100.0), Some(90.0));
        a.rates.insert("matrixmultiply".into(), 10.0);
        let b = row("c", Some(80.0), None);
        let c = row("c", Some(120.0), Some(70.0));
        let m = median_row(vec![a, b, c]);
        assert_eq!(m.rates[OURS], 100.0);
        assert_eq!(m.rates["matrixmultiply"], 50.0);
        // Torch measured in two of the three rounds: the mean of the middle two.
        assert_eq!(m.torch, Some(80.0));
        assert_eq!(m.case, "c");
        let one = median_row(vec![row("d", None, None)]);
        assert!(!one.rates.contains_key(OURS) && one.torch.is_none());
    }
}
