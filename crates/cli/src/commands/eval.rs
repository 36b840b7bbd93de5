//! `allmlp eval`: test-set accuracy, loss, per-class accuracy and confusion matrix of a trained
//! checkpoint; [`evaluate`] is the computation (also `train`'s per-epoch test evaluation).

use std::path::PathBuf;

use allmlp_layers::infer;
use allmlp_models::Model;
use clap::Args;

use super::{CliError, CliResult, format_table, thousands};
use crate::checkpoint::{LoadedModel, TrainedMeta, load_model};
use crate::data::{Dataset, DatasetSpec, Normalization, Split};
use crate::plot::canvas::check_png_path;
use crate::plot::plot_confusion;

/// Default `--batch-size` of `eval`, and the batch of `train`'s per-epoch evaluation. Small
/// batches are faster here: at batch 500 the activations (tens of MB) are faulted in afresh
/// for every batch. Evaluating the 10,000 Fashion-MNIST test images with a trained
/// `resmlp_tiny` (`allmlp eval --threads 2`, three interleaved runs): batch 500 9.6–10.4 s wall,
/// 2.7–3.6 s of it system time; batch 64 7.4–7.6 s, 0.3 s system (docs/perf.md, "The
/// per-epoch evaluation"). The result does not depend on the batch.
pub const DEFAULT_BATCH: usize = 64;

/// Above this many classes the text confusion matrix is replaced by the most frequent
/// confusions (the PNG of `--plot` shows the whole matrix).
pub const MAX_TEXT_CLASSES: usize = 20;

/// The flags of `allmlp eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Trained checkpoint (safetensors with `model` and `config` metadata, as `allmlp train`
    /// writes: DIR/best.safetensors or DIR/last.safetensors).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    /// Registered model name; needed only when the weights carry no `model` metadata (e.g.
    /// converted from PyTorch).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Dataset whose test split is evaluated: fashion-mnist, fashion-mnist-subset, mnist,
    /// cifar10, cifar100 or folder:PATH (default: the checkpoint's `dataset` metadata, else
    /// fashion-mnist). The inputs get the checkpoint's normalization (else the dataset's
    /// default).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<DatasetSpec>,
    /// Directory holding the dataset files (required for mnist, cifar10, cifar100). Without it
    /// fashion-mnist is read from /usr/share/datasets/fashion-mnist (Debian package
    /// dataset-fashion-mnist) when installed, else from the 1,000-image test subset embedded in
    /// the binary; the output says which.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Images per forward pass (memory grows with it; results do not depend on it).
    #[arg(long, value_name = "B", default_value_t = DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Also draw the confusion matrix to this PNG file (written atomically).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Worker threads (default: ALLMLP_NUM_THREADS, else every core).
    #[arg(long, value_name = "T")]
    pub threads: Option<usize>,
}

/// What [`evaluate`] measures.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Mean cross-entropy of the logits against the labels (nats; no label smoothing).
    pub loss: f64,
    /// Fraction of images whose top logit is their label (ties go to the lower class index).
    pub accuracy: f64,
    /// Accuracy of each class (`None` for a class with no image).
    pub per_class: Vec<Option<f64>>,
    /// `confusion[true][predicted]` image counts, `K × K`.
    pub confusion: Vec<Vec<usize>>,
}

/// Sums over batches of logits: loss and the confusion matrix.
#[derive(Clone, Debug)]
struct Tally {
    loss_sum: f64,
    confusion: Vec<Vec<usize>>,
}

impl Tally {
    fn new(k: usize) -> Tally {
        Tally {
            loss_sum: 0.0,
            confusion: vec![vec![0; k]; k],
        }
    }

    /// Adds `logits` (`[B, K]` row-major) of images labelled `labels` (`[B]`, each `< K`).
    fn add(&mut self, logits: &[f32], labels: &[usize]) {
        let k = self.confusion.len();
        for (row, &label) in logits.chunks_exact(k).zip(labels) {
            let mut best = 0;
            for (j, &z) in row.iter().enumerate() {
                if z > row[best] {
                    best = j;
                }
            }
            // log-sum-exp in f64, shifted by the maximum for stability.
            let m = f64::from(row[best]);
            let lse = m + row
                .iter()
                .map(|&z| (f64::from(z) - m).exp())
                .sum::<f64>()
                .ln();
            self.loss_sum += lse - f64::from(row[label]);
            self.confusion[label][best] += 1;
        }
    }

    fn report(self) -> EvalReport {
        let images: usize = self.confusion.iter().flatten().sum();
        let correct: usize = (0..self.confusion.len())
            .map(|i| self.confusion[i][i])
            .sum();
        let per_class = self
            .confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: usize = row.iter().sum();
                (n > 0).then(|| row[i] as f64 / n as f64)
            })
            .collect();
        let frac = |x: f64| if images > 0 { x / images as f64 } else { 0.0 };
        EvalReport {
            images,
            loss: frac(self.loss_sum),
            accuracy: frac(correct as f64),
            per_class,
            confusion: self.confusion,
        }
    }
}

/// Checks `ds` can be fed to `net`: at least one image, the same image `[C, H, W]` and as many
/// classes as logits.
pub fn check_compatible(net: &dyn Model, ds: &Dataset) -> CliResult<()> {
    if ds.is_empty() {
        return Err(CliError(format!(
            "{} ({}) has no images: there is nothing to evaluate",
            ds.name, ds.source
        )));
    }
    let input = net.input_shape();
    if ds.shape[1..] != input {
        return Err(CliError(format!(
            "{} ({}) has images [C, H, W] = {:?} but {} takes {:?}; evaluate on a dataset of \
             that shape (--dataset) or train a model for this one",
            ds.name,
            ds.source,
            &ds.shape[1..],
            net.name(),
            input
        )));
    }
    if ds.classes.len() != net.num_classes() {
        return Err(CliError(format!(
            "{} has {} classes but {} has {} outputs (num_classes); they must agree",
            ds.name,
            ds.classes.len(),
            net.name(),
            net.num_classes()
        )));
    }
    Ok(())
}

/// Evaluates `net` on every image of `ds` (normalised by `norm`), `batch_size` images per
/// forward pass, in eval mode without a tape ([`infer`]): loss, accuracy, per-class accuracy and
/// the confusion matrix. The result does not depend on `batch_size` or the thread count.
/// Errors: `ds` does not fit `net` ([`check_compatible`]), `norm` has the wrong channel count,
/// batch size 0, or the model fails.
pub fn evaluate(
    net: &dyn Model,
    ds: &Dataset,
    norm: &Normalization,
    batch_size: usize,
) -> CliResult<EvalReport> {
    check_compatible(net, ds)?;
    let k = net.num_classes();
    let batches = ds
        .batches(batch_size, None, norm)
        .map_err(|e| CliError(e.to_string()))?;
    let mut tally = Tally::new(k);
    for (x, labels) in batches {
        let logits = infer(net, &x)?;
        if logits.shape() != [labels.len(), k] {
            return Err(CliError(format!(
                "{} returned logits of shape {:?}, expected [{}, {k}]",
                net.name(),
                logits.shape(),
                labels.len()
            )));
        }
        tally.add(&logits.to_vec(), &labels);
    }
    Ok(tally.report())
}

/// The dataset to evaluate on: `flag`, else the checkpoint's `dataset` metadata, else
/// Fashion-MNIST.
pub fn choose_dataset(
    flag: Option<&DatasetSpec>,
    meta: Option<&TrainedMeta>,
    weights: &std::path::Path,
) -> CliResult<DatasetSpec> {
    match (flag, meta) {
        (Some(d), _) => Ok(d.clone()),
        (None, Some(m)) => m.dataset.parse().map_err(|e| {
            CliError(format!(
                "{}: metadata `dataset` is `{}`, which eval cannot load ({e}); pass --dataset",
                weights.display(),
                m.dataset
            ))
        }),
        (None, None) => Ok(DatasetSpec::FashionMnist),
    }
}

/// An error when the checkpoint's class names (by label) are not the dataset's: its outputs
/// would be scored against other classes (an image folder with a class renamed or missing, a
/// model of another dataset).
pub fn check_same_classes(
    classes: &[String],
    ds: &Dataset,
    weights: &std::path::Path,
) -> CliResult<()> {
    if classes == ds.classes {
        return Ok(());
    }
    let first = (0..classes.len().max(ds.classes.len()))
        .find(|&i| classes.get(i) != ds.classes.get(i))
        .unwrap_or(0);
    let show = |v: &[String]| {
        v.get(first)
            .map_or("nothing".to_string(), |c| format!("`{c}`"))
    };
    Err(CliError(format!(
        "{}: the checkpoint's classes are not {}'s: label {first} is {} in the checkpoint and {} \
         in the dataset ({} and {} classes); evaluate on the data it was trained on",
        weights.display(),
        ds.name,
        show(classes),
        show(&ds.classes),
        classes.len(),
        ds.classes.len()
    )))
}

/// `eval`: loads the checkpoint and the test split, evaluates, and returns the report as text
/// (and draws the confusion matrix with `--plot`).
pub fn run(args: &EvalArgs) -> CliResult<String> {
    super::set_threads(args.threads)?;
    if let Some(p) = &args.plot {
        check_png_path(p)?;
    }
    if args.batch_size == 0 {
        return Err(CliError("--batch-size must be at least 1".into()));
    }
    let LoadedModel { name, net, meta } =
        load_model(&args.weights, args.model.as_deref(), &Default::default())?;
    let spec = choose_dataset(args.dataset.as_ref(), meta.as_ref(), &args.weights)?;
    let (norm, norm_from) = match &meta {
        Some(m) => (m.normalization.clone(), "the checkpoint"),
        None => (spec.normalization(), "the dataset's default"),
    };
    let ds = spec
        .load(Split::Test, args.data.as_deref(), net.input_shape())
        .map_err(|e| CliError(e.to_string()))?;
    check_compatible(&*net, &ds)?;
    if let Some(m) = &meta {
        check_same_classes(&m.classes, &ds, &args.weights)?;
    }
    if norm.mean.len() != ds.shape[1] {
        return Err(CliError(format!(
            "{}: the normalization has {} channel(s), {} has {}",
            args.weights.display(),
            norm.mean.len(),
            ds.name,
            ds.shape[1]
        )));
    }
    let report = evaluate(&*net, &ds, &norm, args.batch_size)?;

    let mut out = format!(
        "{name} ({}{}) on {}: {} images from {}\n",
        args.weights.display(),
        meta.as_ref()
            .map_or(String::new(), |m| format!(", epoch {}", m.epoch)),
        ds.name,
        thousands(report.images as u64),
        ds.source
    );
    out += &format!(
        "normalization from {norm_from}: mean {:?}, std {:?}\n",
        norm.mean, norm.std
    );
    out += &format!(
        "\naccuracy {:.2}%  loss {:.4}\n\n",
        report.accuracy * 100.0,
        report.loss
    );
    out += &format_report_tables(&report, &ds.classes);
    if let Some(p) = &args.plot {
        let title = format!(
            "{name} on {} ({} images): accuracy {:.2}%",
            ds.name,
            thousands(report.images as u64),
            report.accuracy * 100.0
        );
        plot_confusion(p, &title, &ds.classes, &report.confusion)?;
        out += &format!("\nwrote the confusion matrix to {}\n", p.display());
    }
    Ok(out)
}

/// The per-class table and the confusion matrix (or, above [`MAX_TEXT_CLASSES`] classes, the
/// most frequent confusions) as text.
pub fn format_report_tables(report: &EvalReport, classes: &[String]) -> String {
    let label = |i: usize| format!("{i} {}", classes.get(i).map_or("", String::as_str));
    let rows: Vec<Vec<String>> = report
        .confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let n: usize = row.iter().sum();
            vec![
                label(i),
                n.to_string(),
                row[i].to_string(),
                report.per_class[i].map_or("-".into(), |a| format!("{:.2}%", a * 100.0)),
            ]
        })
        .collect();
    let mut out = String::from("per-class accuracy:\n");
    out += &format_table(
        &["class", "images", "correct", "accuracy"],
        &rows,
        &[false, true, true, true],
    );
    let k = report.confusion.len();
    if k <= MAX_TEXT_CLASSES {
        out += "\nconfusion matrix (rows: true class, columns: predicted class):\n";
        let cols: Vec<String> = (0..k).map(|j| j.to_string()).collect();
        let mut header = vec!["true \\ predicted"];
        header.extend(cols.iter().map(String::as_str));
        let rows: Vec<Vec<String>> = report
            .confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let mut r = vec![label(i)];
                r.extend(row.iter().map(|n| n.to_string()));
                r
            })
            .collect();
        let mut right = vec![false];
        right.extend(std::iter::repeat_n(true, k));
        out += &format_table(&header, &rows, &right);
    } else {
        let mut pairs: Vec<(usize, usize, usize)> = (0..k)
            .flat_map(|t| (0..k).map(move |p| (t, p)))
            .filter(|&(t, p)| t != p)
            .map(|(t, p)| (report.confusion[t][p], t, p))
            .filter(|&(n, _, _)| n > 0)
            .collect();
        pairs.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        out += &format!(
            "\n{k} classes: the confusion matrix is drawn by --plot; most frequent confusions:\n"
        );
        let rows: Vec<Vec<String>> = pairs
            .iter()
            .take(20)
            .map(|&(n, t, p)| vec![label(t), label(p), n.to_string()])
            .collect();
        out += &format_table(
            &["true", "predicted", "images"],
            &rows,
            &[false, false, true],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class names must agree label by label; the error names the first label that differs,
    /// both names and both counts.
    #[test]
    fn class_names_must_agree_label_by_label() {
        let ds = |classes: &[&str]| Dataset {
            images: Vec::new(),
            shape: [0, 1, 2, 2],
            labels: Vec::new(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            name: "folder:x/test".into(),
            source: String::new(),
        };
        let names = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let w = std::path::Path::new("w.safetensors");
        assert!(check_same_classes(&names(&["a", "b"]), &ds(&["a", "b"]), w).is_ok());
        let e = check_same_classes(&names(&["a", "b"]), &ds(&["a", "c"]), w)
            .unwrap_err()
            .0;
        assert!(
            e.contains("w.safetensors")
                && e.contains("label 1 is `b` in the checkpoint and `c` in the dataset")
                && e.contains("folder:x/test"),
            "{e}"
        );
        let e = check_same_classes(&names(&["a"]), &ds(&["a", "b"]), w)
            .unwrap_err()
            .0;
        assert!(
            e.contains("label 1 is nothing in the checkpoint and `b`") && e.contains("1 and 2"),
            "{e}"
        );
    }

    #[test]
    fn tally_matches_a_naive_computation() {
        // Three classes, four images; logits chosen by hand.
        let logits = [
            2.0, 0.0, -1.0, // label 0, predicted 0
            0.5, 0.5, 0.0, // label 1, tie 0/1 → predicted 0
            -1.0, 3.0, 1.0, // label 2, predicted 1
            0.0, 0.0, 4.0, // label 2, predicted 2
        ];
        let labels = [0, 1, 2, 2];
        let mut t = Tally::new(3);
        t.add(&logits[..6], &labels[..2]);
        t.add(&logits[6..], &labels[2..]);
        let r = t.report();
        let mut loss = 0.0;
        for (row, &l) in logits.chunks(3).zip(&labels) {
            let s: f64 = row.iter().map(|&z| f64::from(z).exp()).sum();
            loss += -(f64::from(row[l]).exp() / s).ln();
        }
        assert!(
            (r.loss - loss / 4.0).abs() < 1e-12,
            "{} vs {}",
            r.loss,
            loss / 4.0
        );
        assert_eq!(
            r.confusion,
            vec![vec![1, 0, 0], vec![1, 0, 0], vec![0, 1, 1]]
        );
        assert_eq!(r.accuracy, 0.5);
        assert_eq!(r.per_class, vec![Some(1.0), Some(0.0), Some(0.5)]);
        assert_eq!(r.images, 4);
        let empty = Tally::new(2).report();
        assert_eq!((empty.accuracy, empty.per_class), (0.0, vec![None, None]));
    }

    #[test]
    fn large_class_counts_list_the_top_confusions() {
        let k = 25;
        let mut confusion = vec![vec![0; k]; k];
        confusion[3][7] = 9;
        confusion[1][1] = 4;
        let r = EvalReport {
            images: 13,
            loss: 1.0,
            accuracy: 4.0 / 13.0,
            per_class: (0..k).map(|_| None).collect(),
            confusion,
        };
        let classes: Vec<String> = (0..k).map(|i| format!("c{i}")).collect();
        let text = format_report_tables(&r, &classes);
        assert!(text.contains("most frequent confusions"), "{text}");
        let (_, top) = text.split_once("most frequent confusions").unwrap();
        let line = top.lines().find(|l| l.starts_with("3 c3")).unwrap();
        assert!(line.contains("7 c7") && line.ends_with('9'), "{line}");
    }
}
