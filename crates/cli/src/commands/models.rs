//! `allmlp models`: every registered model with its family, parameters and MACs per image.

use allmlp_models::{Family, ModelOptions, entries};

use super::cost::cost;
use super::{CliResult, format_table};

/// The family's display name.
pub fn family_name(f: Family) -> &'static str {
    match f {
        Family::Mixer => "MLP-Mixer",
        Family::ResMlp => "ResMLP",
        Family::RepMlp => "RepMLP",
        Family::RepMlpNet => "RepMLPNet",
    }
}

/// The table `allmlp models` prints (default options, training structure).
pub fn run() -> CliResult<String> {
    let opts = ModelOptions::default();
    let mut rows = Vec::new();
    for e in entries() {
        let c = cost(e.name, &opts)?;
        rows.push(vec![
            e.name.to_string(),
            family_name(e.family).to_string(),
            format!("{:.2}", c.params as f64 / 1e6),
            c.macs
                .map_or("-".to_string(), |m| format!("{:.3}", m as f64 / 1e9)),
            c.macs
                .map_or("-".to_string(), |m| format!("{:.3}", 2.0 * m as f64 / 1e9)),
            e.description.to_string(),
        ]);
    }
    let mut out = format_table(
        &[
            "model",
            "family",
            "params (M)",
            "GMACs",
            "GFLOPs",
            "description",
        ],
        &rows,
        &[false, false, true, true, true, false],
    );
    out.push_str(
        "\nDefault sizes, training structure. GMACs: multiply-accumulates per image of every \
         Linear/Conv\n(what the papers and timm's model cards call FLOPs); GFLOPs: floating-point \
         operations, 2 per MAC\n(what torch's FlopCounterMode counts).\n",
    );
    Ok(out)
}
