//! Per-epoch training metrics and `metrics.csv`.
//!
//! ```
//! use allmlp::metrics::{EpochMetrics, parse_csv, to_csv};
//! let rows = vec![EpochMetrics { epoch: 1, train_loss: 0.9, train_acc: 0.7, test_loss: 0.6,
//!     test_acc: 0.8, lr: 1e-3, seconds: 12.5 }];
//! assert_eq!(parse_csv(&to_csv(&rows), "metrics.csv")?, rows);
//! # Ok::<(), allmlp::commands::CliError>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::commands::{CliError, CliResult};

/// The header of `metrics.csv`.
pub const CSV_HEADER: &str = "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds";

/// One epoch's figures (accuracies as fractions).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Training accuracy over the epoch (against the un-mixed labels).
    pub train_acc: f64,
    /// Test loss (plain cross-entropy, no smoothing).
    pub test_loss: f64,
    /// Test accuracy.
    pub test_acc: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Wall-clock seconds since training started (cumulative across resumes).
    pub seconds: f64,
}

impl EpochMetrics {
    /// The row as JSON (checkpoint metadata): the serde form, as in the resume state.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Losses to 6 decimals; accuracies exactly (shortest round-trip form: a count over the
    /// number of images, e.g. `0.8897`).
    fn csv_line(&self) -> String {
        format!(
            "{},{:.6},{},{:.6},{},{:.6e},{:.1}",
            self.epoch,
            self.train_loss,
            self.train_acc,
            self.test_loss,
            self.test_acc,
            self.lr,
            self.seconds
        )
    }
}

/// `metrics.csv` text: the header and one line per row.
pub fn to_csv(rows: &[EpochMetrics]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in rows {
        s.push_str(&r.csv_line());
        s.push('\n');
    }
    s
}

/// Parses `metrics.csv` text (`file` names it in errors).
pub fn parse_csv(text: &str, file: &str) -> CliResult<Vec<EpochMetrics>> {
    let mut lines = text.lines();
    if lines.next() != Some(CSV_HEADER) {
        return Err(CliError(format!(
            "{file}: the first line must be `{CSV_HEADER}`"
        )));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let bad = || CliError(format!("{file}: line {} is not 7 numbers: `{l}`", i + 2));
            let f: Vec<f64> = l
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            if f.len() != 7 || f[0] < 0.0 || f[0].fract() != 0.0 {
                return Err(bad());
            }
            Ok(EpochMetrics {
                epoch: f[0] as usize,
                train_loss: f[1],
                train_acc: f[2],
                test_loss: f[3],
                test_acc: f[4],
                lr: f[5],
                seconds: f[6],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_csv_names_the_line() {
        assert!(
            parse_csv("a,b\n", "m.csv")
                .unwrap_err()
                .0
                .contains("first line")
        );
        let e = parse_csv(&format!("{CSV_HEADER}\n1,2,3\n"), "m.csv").unwrap_err();
        assert!(e.0.contains("m.csv: line 2"), "{e}");
        let e = parse_csv(&format!("{CSV_HEADER}\n1,x,3,4,5,6,7\n"), "m.csv").unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
        assert_eq!(
            parse_csv(&format!("{CSV_HEADER}\n"), "m.csv").unwrap(),
            vec![]
        );
    }
}
