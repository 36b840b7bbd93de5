//! Train-time form vs deploy form (structural re-parameterization) of the RepMLP family:
//! eval forward under `no_grad` of the same model before and after `allmlp_models::to_deploy`,
//! and the conversion time of the largest model.
//!
//! Ids: `deploy/train-form/<model>`, `deploy/deploy-form/<model>` (batch 8 for `repmlp_tiny`
//! 28×28 and `repmlp_pure` 32×32, batch 1 for `repmlp_res50_light_224` and `repmlpnet_t224`),
//! `deploy/convert/repmlpnet_l256`. The multiply-accumulates per image of both forms are
//! printed once (stderr) beside the timings.

use allmlp_layers::{Module, infer};
use allmlp_models::repmlp::ResNetBlockKind;
use allmlp_models::repmlpnet::{
    RepMlpNet, RepMlpNetConfig, repmlpnet_b224, repmlpnet_b256, repmlpnet_d256, repmlpnet_l256,
    repmlpnet_t224, repmlpnet_t256,
};
use allmlp_models::{
    Model, RepMlpBlock, RepMlpBlockConfig, RepMlpPure, RepMlpPureConfig, RepMlpResNet,
    RepMlpResNetConfig,
};
use allmlp_tensor_core::Tensor;
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

/// Multiply-accumulates per image of a RepMLPNet (every conv/FC/GEMM; BN, pooling, GELU and
/// additions not counted), in the form `cfg.deploy` says.
fn repmlpnet_macs(cfg: &RepMlpNetConfig) -> u64 {
    let p = cfg.patch_size;
    let sizes = cfg.feature_sizes();
    let mut m = (sizes[0] * sizes[0] * cfg.channels[0] * cfg.in_chans * p * p) as u64;
    for i in 0..cfg.num_stages() {
        let (c, f) = (cfg.channels[i], sizes[i]);
        let hw = cfg.hs[i] * cfg.ws[i];
        let r = c / cfg.globalperceptron_reduce;
        let mut unit = 2 * c * r; // Global Perceptron
        unit += c * f * f * hw; // FC3: each pixel of each channel = a row of h·w
        if !cfg.deploy {
            unit += cfg.reparam_conv_k.iter().map(|k| k * k).sum::<usize>() * c * f * f;
        }
        unit += 2 * c * c * cfg.ffn_expand * f * f; // FFN
        m += (cfg.num_blocks[i] * unit) as u64;
        if i + 1 < cfg.num_stages() {
            let f2 = sizes[i + 1];
            m += (f2 * f2 * c * cfg.channels[i + 1] * 4) as u64;
        }
    }
    m + (cfg.channels[cfg.num_stages() - 1] * cfg.num_classes) as u64
}

/// `(name, batch, train model, deploy model, train MACs/img, deploy MACs/img)`.
type Case = (
    &'static str,
    usize,
    Box<dyn Model>,
    Box<dyn Model>,
    u64,
    u64,
);

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    for (name, cfg) in [
        ("repmlp_tiny", RepMlpPureConfig::tiny_fmnist()),
        ("repmlp_pure", RepMlpPureConfig::pure_cifar()),
    ] {
        let t = RepMlpPure::new(name, cfg, 0).unwrap();
        let d = t.to_deploy().unwrap();
        let (mt, md) = (t.macs(), d.macs());
        v.push((name, 8, Box::new(t), Box::new(d), mt, md));
    }
    for (name, kind) in [
        ("repmlp_res50_light_224", ResNetBlockKind::Light),
        ("repmlp_res50_bottleneck_224", ResNetBlockKind::Bottleneck),
    ] {
        let t = RepMlpResNet::new(name, RepMlpResNetConfig::res50_224(kind), 0).unwrap();
        let d = t.to_deploy().unwrap();
        let (mt, md) = (t.macs(), d.macs());
        v.push((name, 1, Box::new(t), Box::new(d), mt, md));
    }
    for (name, cfg) in [
        ("repmlpnet_t224", repmlpnet_t224()),
        ("repmlpnet_b224", repmlpnet_b224()),
        ("repmlpnet_t256", repmlpnet_t256()),
        ("repmlpnet_b256", repmlpnet_b256()),
        ("repmlpnet_d256", repmlpnet_d256()),
        ("repmlpnet_l256", repmlpnet_l256()),
    ] {
        let t = RepMlpNet::new(&cfg).unwrap();
        let d = t.to_deploy().unwrap();
        let (mt, md) = (repmlpnet_macs(&t.config), repmlpnet_macs(&d.config));
        v.push((name, 1, Box::new(t), Box::new(d), mt, md));
    }
    v
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("deploy");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, batch, train, dep, mt, md) in cases() {
        eprintln!(
            "{name}: MACs/img train {:.2}M, deploy {:.2}M",
            mt as f64 / 1e6,
            md as f64 / 1e6
        );
        let [ch, h, w] = train.input_shape();
        let x = Tensor::randn(&[batch, ch, h, w], 0.0, 1.0, 1).unwrap();
        for (form, m) in [("train-form", &train), ("deploy-form", &dep)] {
            let m: &dyn Module = m.as_ref();
            g.bench_function(format!("{form}/{name}"), |b| {
                b.iter(|| infer(m, &x).unwrap())
            });
        }
    }
    g.finish();
}

/// One RepMLP v1 block as in RepMLP-Res50's stage 2 light blocks (C = O = 64 on 28×28,
/// 7×7 partitions, k = 1, 3, 5, g = 4), batch 8.
fn block(c: &mut Criterion) {
    let cfg = RepMlpBlockConfig::new(64, 64, (28, 28), (7, 7), &[1, 3, 5], 1, 4);
    let train = RepMlpBlock::new(cfg, 0).unwrap();
    let dep = train.to_deploy().unwrap();
    let x = Tensor::randn(&[8, 64, 28, 28], 0.0, 1.0, 1).unwrap();
    let mut g = c.benchmark_group("deploy");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (form, m) in [("train-form", &train), ("deploy-form", &dep)] {
        let m: &dyn Module = m;
        g.bench_function(format!("{form}/repmlp_block_c64_28_g4"), |b| {
            b.iter(|| infer(m, &x).unwrap())
        });
    }
    g.finish();
}

fn convert(c: &mut Criterion) {
    let cfg = repmlpnet_l256();
    let train = RepMlpNet::new(&cfg).unwrap();
    let mut g = c.benchmark_group("deploy");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("convert/repmlpnet_l256", |b| {
        b.iter(|| train.to_deploy().unwrap())
    });
    g.finish();
}

criterion_group!(benches, block, forward, convert);
criterion_main!(benches);
