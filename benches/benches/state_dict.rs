//! State-dict loading against the cost of reading the file's bytes.
//!
//! A ~60M-parameter f32 checkpoint with mixer_b16_224's parameter shapes (59.9M parameters,
//! ~240 MB) is written once to a temporary directory; then `state_dict/read_bytes/60M`
//! (`std::fs::read` of the file) and `state_dict/load/60M` (`StateDict::load`: mmap, header
//! parse, copy into f32 tensors) are timed on the same, page-cache-hot file. The target is
//! load ≤ 2× read_bytes.
use std::hint::black_box;

use allmlp_layers::autograd::tensor_core::Tensor;
use allmlp_layers::state_dict::StateDict;
use criterion::{Criterion, criterion_group, criterion_main};

/// mixer_b16_224's `(name, shape)` list: C = 768, S = 196, D_S = 384, D_C = 3072, depth 12.
fn mixer_b16_shapes() -> Vec<(String, Vec<usize>)> {
    let (c, s, ds, dc) = (768, 196, 384, 3072);
    let mut v = vec![
        ("stem.proj.weight".to_string(), vec![c, 3, 16, 16]),
        ("stem.proj.bias".to_string(), vec![c]),
    ];
    for i in 0..12 {
        for (k, shape) in [
            ("norm1.weight", vec![c]),
            ("norm1.bias", vec![c]),
            ("mlp_tokens.fc1.weight", vec![ds, s]),
            ("mlp_tokens.fc1.bias", vec![ds]),
            ("mlp_tokens.fc2.weight", vec![s, ds]),
            ("mlp_tokens.fc2.bias", vec![s]),
            ("norm2.weight", vec![c]),
            ("norm2.bias", vec![c]),
            ("mlp_channels.fc1.weight", vec![dc, c]),
            ("mlp_channels.fc1.bias", vec![dc]),
            ("mlp_channels.fc2.weight", vec![c, dc]),
            ("mlp_channels.fc2.bias", vec![c]),
        ] {
            v.push((format!("blocks.{i}.{k}"), shape));
        }
    }
    v.extend([
        ("norm.weight".to_string(), vec![c]),
        ("norm.bias".to_string(), vec![c]),
        ("head.weight".to_string(), vec![1000, c]),
        ("head.bias".to_string(), vec![1000]),
    ]);
    v
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("mixer_b16_224.safetensors");
    let mut sd = StateDict::new();
    for (i, (name, shape)) in mixer_b16_shapes().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        // Cheap, non-constant contents: the values do not affect the cost being measured.
        let data = (0..n)
            .map(|j| ((i * 7919 + j) % 1021) as f32 * 1e-3)
            .collect();
        sd.insert(name, Tensor::from_vec(data, &shape).expect("shape matches"));
    }
    let params = sd.num_elements();
    assert!(
        (59_000_000..61_000_000).contains(&params),
        "{params} parameters"
    );
    sd.save(&path).expect("save the checkpoint");
    drop(sd);

    let mut g = c.benchmark_group("state_dict");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Bytes(
        std::fs::metadata(&path).expect("written").len(),
    ));
    g.bench_function("read_bytes/60M", |b| {
        b.iter(|| black_box(std::fs::read(&path).expect("read")))
    });
    g.bench_function("load/60M", |b| {
        b.iter(|| black_box(StateDict::load(&path).expect("load")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
