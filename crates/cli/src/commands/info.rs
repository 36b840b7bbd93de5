//! `allmlp info`: a per-layer table (output shape, parameters, MACs) and totals.
//!
//! The `Module` trait exposes parameters by name (`visit`) and a whole-model `forward`, but no
//! per-child forward hooks, and a registry model comes back as `Box<dyn Model>`, which cannot be
//! turned back into its concrete type. So:
//!
//! - **Parameters** are grouped generically by module prefix: the first name component plus the
//!   list indices after it (`stem`, `blocks.3`, `stages.1.0`, `head`).
//! - **Output shapes and MACs** per row come from the public children of each family, run in
//!   the order the model's own `forward` runs them: MLP-Mixer and ResMLP (`stem` → `blocks.i`
//!   → `norm` → token mean → `head`), RepMLPNet (`conv_embedding` → `stages.i.j` / `embeds.i`
//!   → `head_norm` → pool → `head`), the RepMLP (v1) ResNets (`stage0.0` stem → max pool →
//!   `stage{1..4}.i`, each block with its shortcut run as one unit → pool → `linear`) and the
//!   pure RepMLP nets (`stem` → `stages.i.j` units, a max pool between stages → pool →
//!   `linear`). The CLI builds the concrete model (once) from the registered configuration
//!   (`commands::known`; the same parameters as the registry's) and runs that sequence once at
//!   batch 1 in eval mode without a tape; the parameter groups come from the same model. The
//!   MACs of each row are counted from the configuration (Mixer, ResMLP, RepMLPNet) or from
//!   the built layers' weight shapes and output sizes (RepMLP v1; `commands::cost`); the total
//!   is the model's own count.
//! - A registered name the CLI does not know (`known.rs`) gets parameter-only rows, the logits'
//!   shape from one whole forward.

use std::collections::BTreeMap;

use allmlp_layers::autograd::ops::{PoolParams, adaptive_avg_pool2d, max_pool2d};
use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::autograd::tensor_core::error::fmt_shape;
use allmlp_layers::autograd::{Var, no_grad};
use allmlp_layers::{Ctx, Module, named_parameters};
use allmlp_models::{
    IsotropicConfig, IsotropicNet, Mixer, Model, ModelOptions, RepMlpNet, RepMlpNetConfig,
    RepMlpPure, RepMlpResNet, ResMlp, create_model, entry,
};

use super::cost::{self, conv_bn_macs, cost, resnet_block_macs};
use super::known::{Known, lookup, pure_config, resnet_config};
use super::models::family_name;
use super::{CliResult, ModelArgs, check_registered, format_table, thousands};

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
    step_by(rows, name, x, f, |_, _| macs)
}

/// [`step`] with the row's MACs computed from the input and output `(H, W)` (dims 2 and 3 of
/// an image batch; `(1, 1)` for a `[N, C]` output).
fn step_by(
    rows: &mut Vec<Row>,
    name: impl Into<String>,
    x: Var,
    f: impl FnOnce(&Var) -> allmlp_layers::autograd::Result<Var>,
    macs: impl FnOnce((usize, usize), (usize, usize)) -> u64,
) -> CliResult<Var> {
    let hw = |s: &[usize]| match s {
        [_, _, h, w] => (*h, *w),
        _ => (1, 1),
    };
    let y = f(&x)?;
    let shape = y.shape();
    rows.push(Row {
        name: name.into(),
        macs: Some(macs(hw(&x.shape()), hw(&shape))),
        shape: Some(shape),
    });
    Ok(y)
}

/// Global average pool to `[N, C]`.
fn pool_flat(x: &Var) -> allmlp_layers::autograd::Result<Var> {
    let p = adaptive_avg_pool2d(x, (1, 1))?;
    p.reshape(&[p.shape()[0], p.shape()[1]])
}

/// Rows of a RepMLP (v1) ResNet, as its `forward` runs: stem, max pool, each block with its
/// shortcut, global pool, `linear` (the dropout before it is the identity in eval mode).
/// Returns the rows and the logits.
fn repmlp_resnet_rows(m: &RepMlpResNet, x: Var) -> CliResult<(Vec<Row>, Var)> {
    m.check_input(&x.shape())?;
    let ctx = Ctx::eval();
    let mut rows = Vec::new();
    let mut h = step_by(
        &mut rows,
        "stage0.0",
        x,
        |x| m.stem.forward(x, &ctx),
        |_, out| conv_bn_macs(&m.stem, out),
    )?;
    let pool = PoolParams {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
    };
    h = step(&mut rows, "(max pool 3×3/2)", 0, h, |x| {
        max_pool2d(x, pool)
    })?;
    for (s, stage) in m.stages.iter().enumerate() {
        for (i, block) in stage.iter().enumerate() {
            h = step_by(
                &mut rows,
                format!("stage{}.{i}", s + 1),
                h,
                |x| block.forward(x, &ctx),
                |i, o| resnet_block_macs(block, i, o),
            )?;
        }
    }
    h = step(&mut rows, "(global average pool)", 0, h, pool_flat)?;
    let head = m.linear.weight.value().numel() as u64;
    let y = step(&mut rows, "linear", head, h, |x| m.linear.forward(x, &ctx))?;
    Ok((rows, y))
}

/// Rows of a pure-MLP RepMLP net, as its `forward` runs: stem, each RepMLP + FC unit (a 2×2
/// max pool before every stage but the first), global pool, `linear`. Returns the rows and the
/// logits.
fn repmlp_pure_rows(m: &RepMlpPure, x: Var) -> CliResult<(Vec<Row>, Var)> {
    m.check_input(&x.shape())?;
    let ctx = Ctx::eval();
    let mut rows = Vec::new();
    let mut h = step_by(
        &mut rows,
        "stem",
        x,
        |x| m.stem.forward(x, &ctx),
        |_, out| conv_bn_macs(&m.stem, out),
    )?;
    let pool = PoolParams {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    for (i, stage) in m.stages.iter().enumerate() {
        if i > 0 {
            h = step(&mut rows, "(max pool 2×2)", 0, h, |x| max_pool2d(x, pool))?;
        }
        for (j, u) in stage.iter().enumerate() {
            h = step_by(
                &mut rows,
                format!("stages.{i}.{j}"),
                h,
                |x| u.fc.forward(&u.repmlp.forward(x, &ctx)?.relu(), &ctx),
                |_, out| u.repmlp.config.macs() + conv_bn_macs(&u.fc, out),
            )?;
        }
    }
    h = step(&mut rows, "(global average pool)", 0, h, pool_flat)?;
    let head = m.linear.weight.value().numel() as u64;
    let y = step(&mut rows, "linear", head, h, |x| m.linear.forward(x, &ctx))?;
    Ok((rows, y))
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

fn repmlpnet_rows(m: &RepMlpNet, cfg: &RepMlpNetConfig, x: Var) -> CliResult<Vec<Row>> {
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
    h = step(&mut rows, "(global average pool)", 0, h, pool_flat)?;
    let head = (cfg.channels[cfg.num_stages() - 1] * cfg.num_classes) as u64;
    step(&mut rows, "head", head, h, |x| m.head.forward(x, &ctx))?;
    Ok(rows)
}

/// A batch of one zero image of `m`'s input shape.
fn input_of(m: &dyn Model) -> CliResult<Var> {
    let [c, h, w] = m.input_shape();
    Ok(Var::constant(Tensor::zeros(&[1, c, h, w])?))
}

/// The text `allmlp info` prints for `name` with `args` applied.
pub fn run(name: &str, args: &ModelArgs) -> CliResult<String> {
    check_registered(name)?;
    let opts = args.apply(ModelOptions::default());
    let family = entry(name)?.family;

    // The model is built once (a full-size one is hundreds of MB): as its concrete type when
    // the CLI knows the name, whose children then run one by one for the rows, else through
    // the registry, with parameter-only rows.
    let (model, rows): (Box<dyn Model>, Option<Vec<Row>>) = match lookup(name) {
        Some(Known::Mixer(f)) => {
            let cfg = f().with_options(&opts);
            let m = Mixer::new(name, &cfg, opts.seed)?;
            let rows = no_grad(|| isotropic_rows(&m, cost::mixer_macs(&cfg), input_of(&m)?))?;
            (Box::new(m), Some(rows))
        }
        Some(Known::ResMlp(f)) => {
            let cfg = f().with_options(&opts);
            let m = ResMlp::new(name, &cfg, opts.seed)?;
            let rows = no_grad(|| isotropic_rows(&m, cost::resmlp_macs(&cfg), input_of(&m)?))?;
            (Box::new(m), Some(rows))
        }
        Some(Known::RepMlpNet(f)) => {
            let cfg = f().with_options(&opts)?;
            let m = RepMlpNet::new(&cfg)?;
            let rows = no_grad(|| repmlpnet_rows(&m, &cfg, input_of(&m)?))?;
            (Box::new(m), Some(rows))
        }
        Some(Known::RepMlpResNet(f)) => {
            let m = RepMlpResNet::new(name, resnet_config(f, &opts), opts.seed)?;
            let rows = no_grad(|| repmlp_resnet_rows(&m, input_of(&m)?))?.0;
            (Box::new(m), Some(rows))
        }
        Some(Known::RepMlpPure(f)) => {
            let m = RepMlpPure::new(name, pure_config(f, &opts), opts.seed)?;
            let rows = no_grad(|| repmlp_pure_rows(&m, input_of(&m)?))?.0;
            (Box::new(m), Some(rows))
        }
        None => (create_model(name, &opts)?, None),
    };
    let [c, h, w] = model.input_shape();

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

    let mut rows = rows.unwrap_or_else(|| {
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
    // The logits' shape, without a second forward pass (for the largest models each pass also
    // packs a copy of every weight: `mixer_h14_224`'s is 1.7 GB).
    let logits_shape = [1, model.num_classes()];
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
        fmt_shape(&logits_shape),
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
            "(parameter-only rows: the CLI cannot rebuild this model's layers to run them one \
             by one; see commands/known.rs)\n",
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
    use allmlp_layers::{infer, num_parameters};
    use allmlp_models::repmlp::ResNetBlockKind;
    use allmlp_models::{RepMlpPureConfig, RepMlpResNetConfig};

    /// A reduced RepMLP-ResNet (the fixture script's `small_*` nets): 64×64 input, stem 16,
    /// channels 32/64/128/256, blocks 1/2/3/1, partitions 4×2.
    fn small_resnet(block: ResNetBlockKind) -> RepMlpResNetConfig {
        RepMlpResNetConfig {
            block,
            layers: [1, 2, 3, 1],
            stem_channels: 16,
            channels: [32, 64, 128, 256],
            img_size: 64,
            in_chans: 3,
            num_classes: 10,
            partition: (4, 2),
            fc3_groups: if block == ResNetBlockKind::Light {
                4
            } else {
                8
            },
            ..RepMlpResNetConfig::res50_224(block)
        }
    }

    fn shapes(rows: &[Row]) -> Vec<(&str, Vec<usize>)> {
        rows.iter()
            .map(|r| (r.name.as_str(), r.shape.clone().unwrap()))
            .collect()
    }

    fn total_macs(rows: &[Row]) -> u64 {
        rows.iter().map(|r| r.macs.unwrap()).sum()
    }

    /// The row-by-row run ends in the model's own logits.
    fn assert_same_logits(y: &Var, m: &dyn Module, x: &Tensor) {
        let (got, want) = (y.value().to_vec(), infer(m, x).unwrap().to_vec());
        assert_eq!(got.len(), want.len());
        let d = got
            .iter()
            .zip(&want)
            .fold(0f32, |d, (a, b)| d.max((a - b).abs()));
        assert!(d <= 1e-5, "max |row-by-row − forward| = {d}");
    }

    #[test]
    fn resnet_rows_have_hand_checked_shapes_and_the_models_macs() {
        for kind in [ResNetBlockKind::Light, ResNetBlockKind::Bottleneck] {
            let m = RepMlpResNet::new("small", small_resnet(kind), 3).unwrap();
            let x = Tensor::randn(&[2, 3, 64, 64], 0.0, 1.0, 5).unwrap();
            let (rows, y) = no_grad(|| repmlp_resnet_rows(&m, Var::constant(x.clone()))).unwrap();
            let s = |c: usize, hw: usize| vec![2, c, hw, hw];
            assert_eq!(
                shapes(&rows),
                [
                    ("stage0.0", s(16, 32)),
                    ("(max pool 3×3/2)", s(16, 16)),
                    ("stage1.0", s(32, 16)),
                    ("stage2.0", s(64, 8)),
                    ("stage2.1", s(64, 8)),
                    ("stage3.0", s(128, 4)),
                    ("stage3.1", s(128, 4)),
                    ("stage3.2", s(128, 4)),
                    ("stage4.0", s(256, 2)),
                    ("(global average pool)", vec![2, 256]),
                    ("linear", vec![2, 10]),
                ]
            );
            // By hand: the 7×7/2 stem, 3 → 16 channels on a 32×32 output.
            assert_eq!(rows[0].macs, Some(32 * 32 * 16 * 3 * 49));
            // stage1.0, a plain bottleneck 16 → 8 → 8 → 32 on 16×16 with a 1×1 shortcut:
            // shortcut 16·32, conv1 16·8, conv2 8·8·9, conv3 8·32 per position.
            let per_pos = 16 * 32 + 16 * 8 + 8 * 8 * 9 + 8 * 32;
            assert_eq!(rows[2].macs, Some(16 * 16 * per_pos));
            assert_eq!(total_macs(&rows), m.macs(), "{kind:?}");
            assert_same_logits(&y, &m, &x);
            // The deploy form: the same shapes, its own (smaller) count.
            let d = m.to_deploy().unwrap();
            let (rows, y) = no_grad(|| repmlp_resnet_rows(&d, Var::constant(x.clone()))).unwrap();
            assert_eq!(total_macs(&rows), d.macs());
            assert!(d.macs() < m.macs());
            assert_same_logits(&y, &d, &x);
        }
    }

    #[test]
    fn pure_rows_have_hand_checked_shapes_and_the_models_macs() {
        let m = RepMlpPure::new("repmlp_tiny", RepMlpPureConfig::tiny_fmnist(), 1).unwrap();
        let x = Tensor::randn(&[1, 1, 28, 28], 0.0, 1.0, 2).unwrap();
        let (rows, y) = no_grad(|| repmlp_pure_rows(&m, Var::constant(x.clone()))).unwrap();
        let s = |c: usize, hw: usize| vec![1, c, hw, hw];
        assert_eq!(
            shapes(&rows),
            [
                ("stem", s(16, 28)),
                ("stages.0.0", s(32, 28)),
                ("(max pool 2×2)", s(32, 14)),
                ("stages.1.0", s(64, 14)),
                ("(max pool 2×2)", s(64, 7)),
                ("stages.2.0", s(64, 7)),
                ("(global average pool)", vec![1, 64]),
                ("linear", vec![1, 10]),
            ]
        );
        // By hand: the 3×3 stem, 1 → 16 channels on 28×28; the head 64 → 10.
        assert_eq!(rows[0].macs, Some(28 * 28 * 16 * 9));
        assert_eq!(rows[7].macs, Some(640));
        assert_eq!(total_macs(&rows), m.macs());
        assert_same_logits(&y, &m, &x);
        let d = m.to_deploy().unwrap();
        let (rows, _) = no_grad(|| repmlp_pure_rows(&d, Var::constant(x.clone()))).unwrap();
        assert_eq!(total_macs(&rows), d.macs());
    }

    /// `allmlp info` on the small registered names, at their default and another size: a shape
    /// on every row, and totals (parameters, MACs, classes, input) equal to the registry
    /// model's, which the table's model is built apart from.
    #[test]
    fn info_of_small_models_has_shapes_and_the_registry_models_totals() {
        let sized = |img: usize| ModelArgs {
            img_size: Some(img),
            in_chans: Some(3),
            num_classes: Some(7),
        };
        // Each with a size its partitions (or patches) divide.
        for (name, img) in [
            ("repmlp_tiny", 56),
            ("repmlp_pure", 64),
            ("mixer_tiny", 32),
            ("resmlp_tiny", 32),
        ] {
            for args in [ModelArgs::default(), sized(img)] {
                let opts = args.apply(ModelOptions::default());
                let out = run(name, &args).unwrap();
                assert!(!out.contains("parameter-only"), "{out}");
                let m = create_model(name, &opts).unwrap();
                let n = num_parameters(m.as_ref());
                assert!(out.contains(&format!("\nparams: {n} (")), "{out}");
                let macs = cost(name, &opts).unwrap().macs.unwrap();
                assert!(out.contains(&format!("MACs per image: {macs} (")), "{out}");
                assert!(out.contains(&format!("[1, {}]", m.num_classes())), "{out}");
                let [c, h, w] = m.input_shape();
                assert!(out.contains(&format!("input [1, {c}, {h}, {w}]")), "{out}");
            }
        }
    }

    #[test]
    fn groups_keep_list_indices() {
        assert_eq!(group_of("blocks.3.mlp_tokens.fc1.weight"), "blocks.3");
        assert_eq!(group_of("stages.1.0.repmlp_block.fc3.weight"), "stages.1.0");
        assert_eq!(group_of("stem.proj.weight"), "stem");
        assert_eq!(group_of("head.bias"), "head");
    }
}
