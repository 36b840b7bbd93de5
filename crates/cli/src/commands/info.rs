//! `allmlp info`: a per-layer table (output shape, parameters, MACs) and totals.
//!
//! The `Module` trait exposes parameters by name (`visit`) and a whole-model `forward`, but no
//! per-child forward hooks, and a registry model comes back as `Box<dyn Model>`, which cannot be
//! turned back into its concrete type. So:
//!
//! - **Parameters** are grouped generically by module prefix: the first name component plus the
//!   list indices after it (`stem`, `blocks.3`, `stages.1.0`, `head`).
//! - **Output shapes and MACs** per row come from the families whose top-level structure is a
//!   plain sequence of public children: MLP-Mixer and ResMLP (`stem` → `blocks.i` → `norm` →
//!   token mean → `head`) and RepMLPNet (`conv_embedding` → `stages.i.j` / `embeds.i` →
//!   `head_norm` → pool → `head`). The CLI rebuilds the concrete model from the registered
//!   configuration (`commands::known`) and runs that sequence once at batch 1 in eval mode
//!   without a tape; the MACs of each row are counted from the configuration (`commands::cost`).
//! - **RepMLP (v1)** nets (ResNet stages with shortcuts, pure nets with pooling between
//!   stages) get parameter-only rows, the logits' shape from one whole forward, and the total
//!   MACs their `macs()` computes.

use std::collections::BTreeMap;

use allmlp_layers::autograd::ops::adaptive_avg_pool2d;
use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::{Var, no_grad};
use allmlp_layers::{Ctx, Module, infer, named_parameters};
use allmlp_models::{
    IsotropicConfig, IsotropicNet, Mixer, ModelOptions, RepMlpNet, RepMlpNetConfig, ResMlp,
    create_model, entries,
};

use super::cost::{self, cost};
use super::known::{Known, lookup};
use super::models::family_name;
use super::{CliError, CliResult, ModelArgs, check_registered, format_table, thousands};

/// One table row.
struct Row {
    name: String,
    shape: Option<Vec<usize>>,
    macs: Option<u64>,
}

/// The prefix a parameter is grouped under: the first component and the list indices after it.
pub fn group_of(param: &str) -> String {
    let mut parts = param.split('.');
    let mut g = parts.next().unwrap_or_default().to_string();
    for p in parts {
        if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) {
            g.push('.');
            g.push_str(p);
        } else {
            break;
        }
    }
    g
}

/// Runs `f` on `x` without a tape, records the row, and returns the output.
fn step(
    rows: &mut Vec<Row>,
    name: impl Into<String>,
    macs: u64,
    x: Var,
    f: impl FnOnce(&Var) -> allmlp_layers::autograd::Result<Var>,
) -> CliResult<Var> {
    let y = f(&x)?;
    rows.push(Row {
        name: name.into(),
        shape: Some(y.shape()),
        macs: Some(macs),
    });
    Ok(y)
}

/// Rows of an isotropic model (Mixer, ResMLP): stem, each block, norm, pooling, head.
fn isotropic_rows<C: IsotropicConfig>(
    m: &IsotropicNet<C>,
    (stem, block, head): (u64, u64, u64),
    x: Var,
) -> CliResult<Vec<Row>> {
    let ctx = Ctx::eval();
    let mut rows = Vec::new();
    let mut h = step(&mut rows, "stem", stem, x, |x| m.stem.forward(x, &ctx))?;
    for (i, b) in m.blocks.iter().enumerate() {
        h = step(&mut rows, format!("blocks.{i}"), block, h, |x| {
            b.forward(x, &ctx)
        })?;
    }
    h = step(&mut rows, "norm", 0, h, |x| m.norm.forward(x, &ctx))?;
    h = step(&mut rows, "(mean over tokens)", 0, h, |x| {
        x.mean(&[1], false)
    })?;
    step(&mut rows, "head", head, h, |x| m.head.forward(x, &ctx))?;
    Ok(rows)
}

fn repmlpnet_rows(cfg: &RepMlpNetConfig, x: Var) -> CliResult<Vec<Row>> {
    let m = RepMlpNet::new(cfg)?;
    m.check_input(&x.shape())?;
    let ctx = Ctx::eval();
    let mut rows = Vec::new();
    let mut h = step(
        &mut rows,
        "conv_embedding",
        cost::repmlpnet_embedding_macs(cfg),
        x,
        |x| m.conv_embedding.forward(x, &ctx),
    )?;
    for (i, stage) in m.stages.iter().enumerate() {
        let unit = cost::repmlpnet_unit_macs(cfg, i);
        for (j, u) in stage.iter().enumerate() {
            h = step(&mut rows, format!("stages.{i}.{j}"), unit, h, |x| {
                u.forward(x, &ctx)
            })?;
        }
        if let Some(e) = m.embeds.get(i) {
            let macs = cost::repmlpnet_embed_macs(cfg, i);
            h = step(&mut rows, format!("embeds.{i}"), macs, h, |x| {
                e.forward(x, &ctx)
            })?;
        }
    }
    h = step(&mut rows, "head_norm", 0, h, |x| {
        m.head_norm.forward(x, &ctx)
    })?;
    h = step(&mut rows, "(global average pool)", 0, h, |x| {
        let p = adaptive_avg_pool2d(x, (1, 1))?;
        p.reshape(&[p.shape()[0], p.shape()[1]])
    })?;
    let head = (cfg.channels[cfg.num_stages() - 1] * cfg.num_classes) as u64;
    step(&mut rows, "head", head, h, |x| m.head.forward(x, &ctx))?;
    Ok(rows)
}

/// The text `allmlp info` prints for `name` with `args` applied.
pub fn run(name: &str, args: &ModelArgs) -> CliResult<String> {
    check_registered(name)?;
    let opts = args.apply(ModelOptions::default());
    let model = create_model(name, &opts)?;
    let family = entries()
        .into_iter()
        .find(|e| e.name == name)
        .map(|e| e.family)
        .ok_or_else(|| CliError(format!("unknown model `{name}`")))?;
    let [c, h, w] = model.input_shape();
    let x = Tensor::zeros(&[1, c, h, w])?;

    // Parameters by group, in visiting order.
    let mut order: Vec<String> = Vec::new();
    let mut params: BTreeMap<String, usize> = BTreeMap::new();
    for (n, p) in named_parameters(&*model) {
        let g = group_of(&n);
        if !params.contains_key(&g) {
            order.push(g.clone());
        }
        *params.entry(g).or_default() += p.value().numel();
    }
    let total_params: usize = params.values().sum();

    let known = lookup(name);
    let mut rows = no_grad(|| match known {
        Some(Known::Mixer(f)) => {
            let cfg = f().with_options(&opts);
            let m = Mixer::new(name, &cfg, opts.seed)?;
            isotropic_rows(&m, cost::mixer_macs(&cfg), Var::constant(x.clone())).map(Some)
        }
        Some(Known::ResMlp(f)) => {
            let cfg = f().with_options(&opts);
            let m = ResMlp::new(name, &cfg, opts.seed)?;
            isotropic_rows(&m, cost::resmlp_macs(&cfg), Var::constant(x.clone())).map(Some)
        }
        Some(Known::RepMlpNet(f)) => {
            repmlpnet_rows(&f().with_options(&opts)?, Var::constant(x.clone())).map(Some)
        }
        _ => Ok(None),
    })?
    .unwrap_or_else(|| {
        order
            .iter()
            .map(|g| Row {
                name: g.clone(),
                shape: None,
                macs: None,
            })
            .collect()
    });
    // Every parameter group must appear as a row (a check on the per-family sequences).
    for g in &order {
        if !rows.iter().any(|r| &r.name == g) {
            rows.push(Row {
                name: g.clone(),
                shape: None,
                macs: None,
            });
        }
    }
    let logits = infer(&*model, &x)?;
    let total_macs = cost(name, &opts)?.macs;

    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.shape.as_deref().map_or("-".into(), fmt_shape),
                thousands(params.get(&r.name).copied().unwrap_or(0) as u64),
                r.macs.map_or("-".into(), thousands),
            ]
        })
        .collect();
    table.push(vec![
        "total".into(),
        fmt_shape(logits.shape()),
        thousands(total_params as u64),
        total_macs.map_or("-".into(), thousands),
    ]);
    let mut out = format!(
        "{name} ({}): input {} (batch 1), {} classes{}\n\n",
        family_name(family),
        fmt_shape(&[1, c, h, w]),
        model.num_classes(),
        if model.is_deploy() {
            ", deploy structure"
        } else {
            ", training structure"
        },
    );
    out.push_str(&format_table(
        &["layer", "output shape", "params", "MACs"],
        &table,
        &[false, false, true, true],
    ));
    out.push_str(&format!(
        "\nparams: {total_params} ({:.2}M)\n",
        total_params as f64 / 1e6
    ));
    if let Some(m) = total_macs {
        out.push_str(&format!(
            "MACs per image: {m} ({:.3}G; ≈ {:.3} GFLOPs at 2 FLOPs per MAC)\n",
            m as f64 / 1e9,
            2.0 * m as f64 / 1e9
        ));
    }
    if rows.iter().any(|r| r.shape.is_none()) {
        out.push_str(
            "(parameter-only rows: per-layer shapes and MACs are shown for MLP-Mixer, ResMLP \
             and RepMLPNet)\n",
        );
    }
    out.push_str(
        "MACs count Linear/Conv multiply-accumulates; norms, activations, pooling and \
         residual additions are not counted.\n",
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_list_indices() {
        assert_eq!(group_of("blocks.3.mlp_tokens.fc1.weight"), "blocks.3");
        assert_eq!(group_of("stages.1.0.repmlp_block.fc3.weight"), "stages.1.0");
        assert_eq!(group_of("stem.proj.weight"), "stem");
        assert_eq!(group_of("head.bias"), "head");
    }
}
