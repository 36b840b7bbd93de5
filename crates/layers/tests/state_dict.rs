//! State-dict I/O: round trips in every dtype, metadata, strict/non-strict matching, remapping
//! (ResMLP authors' names), corrupt and truncated files, atomic saving, and a file written by
//! Python's `safetensors.torch.save_file` (tools/fixtures/state_dict.py).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use allmlp_layers::autograd::tensor_core::{Rng, Tensor, set_num_threads};
use allmlp_layers::state_dict::{
    LoadOptions, Remap, StateDict, StateDictError, Strictness, resmlp_authors_to_timm,
};
use safetensors::{Dtype, SafeTensors};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/torch_state_dict.safetensors"
);

/// A raw tensor for `safetensors::serialize`: any dtype, bytes as given.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn raw(dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> Raw {
    Raw {
        dtype,
        shape: shape.to_vec(),
        bytes,
    }
}

/// A file written by the safetensors crate itself (not by our writer), with `metadata`.
fn write_raw(path: &Path, tensors: &[(&str, Raw)], metadata: Option<HashMap<String, String>>) {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, r)| (*k, r)), metadata).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

fn random_tensor(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec((0..n).map(|_| rng.normal() as f32).collect(), shape).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

/// Every supported dtype converts to the exactly expected f32 values (chosen exact in the
/// source dtype so the comparison is `==`; f64 0.1 checks round-to-nearest).
#[test]
fn loads_every_dtype_with_exact_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dtypes.safetensors");
    let f16s = [1.0f32, -0.5, 65504.0, 2f32.powi(-24), 0.0, -0.0];
    let bf16s = [1.0f32, -3.0, 3.140625, 2f32.powi(100)];
    let tensors = [
        (
            "f32",
            raw(
                Dtype::F32,
                &[2, 2],
                le(&[1.5f32, -2.25, 1e-30, f32::MAX], f32::to_le_bytes),
            ),
        ),
        (
            "f16",
            raw(
                Dtype::F16,
                &[3, 2],
                le(&f16s, |v| half::f16::from_f32(v).to_le_bytes()),
            ),
        ),
        (
            "bf16",
            raw(
                Dtype::BF16,
                &[4],
                le(&bf16s, |v| half::bf16::from_f32(v).to_le_bytes()),
            ),
        ),
        (
            "f64",
            raw(
                Dtype::F64,
                &[3],
                le(&[0.1f64, -2.5, 1e-3], f64::to_le_bytes),
            ),
        ),
        (
            "bn.num_batches_tracked",
            raw(Dtype::I64, &[], 70000i64.to_le_bytes().to_vec()),
        ),
        (
            "i32",
            raw(Dtype::I32, &[2], le(&[-7i32, 9], i32::to_le_bytes)),
        ),
        ("u8", raw(Dtype::U8, &[2], vec![0, 255])),
        ("mask", raw(Dtype::BOOL, &[3], vec![1, 0, 1])),
        ("empty", raw(Dtype::F16, &[0, 5], vec![])),
    ];
    write_raw(&path, &tensors, None);
    let sd = StateDict::load(&path).unwrap();
    let get = |k: &str| sd.get(k).unwrap();
    assert_eq!(get("f32").to_vec(), vec![1.5, -2.25, 1e-30, f32::MAX]);
    assert_eq!(get("f32").shape(), &[2, 2]);
    assert_eq!(get("f16").to_vec(), f16s.to_vec());
    assert_eq!(get("f16").get(&[1, 0]).unwrap(), 65504.0);
    assert!(
        get("f16").to_vec()[5].is_sign_negative(),
        "-0.0 keeps its sign"
    );
    assert_eq!(get("bf16").to_vec(), bf16s.to_vec());
    assert_eq!(get("f64").to_vec(), vec![0.1f32, -2.5, 1e-3f32]);
    let nbt = get("bn.num_batches_tracked");
    assert_eq!((nbt.shape(), nbt.item().unwrap()), (&[][..], 70000.0));
    assert_eq!(get("i32").to_vec(), vec![-7.0, 9.0]);
    assert_eq!(get("u8").to_vec(), vec![0.0, 255.0]);
    assert_eq!(get("mask").to_vec(), vec![1.0, 0.0, 1.0]);
    assert_eq!(get("empty").shape(), &[0, 5]);
    assert_eq!(sd.len(), 9);
    assert!(sd.metadata.is_empty());
    assert_eq!(sd.source(), Some(path.as_path()));
}

/// Our save then load gives back bit-identical tensors, shapes (incl. 0-d, zero-size and a
/// non-contiguous input), order within the f32 group, and metadata; `num_batches_tracked`
/// is written as I64 like PyTorch's.
#[test]
fn save_load_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.safetensors");
    let mut rng = Rng::new(11);
    let mut sd = StateDict::new();
    for (k, shape) in [
        ("stem.proj.weight", vec![8, 3, 4, 4]),
        ("stem.proj.bias", vec![8]),
        ("blocks.10.norm1.alpha", vec![1, 1, 8]),
        ("blocks.2.mlp_tokens.fc1.weight", vec![5, 7]),
        ("scalar", vec![]),
        ("zero", vec![3, 0]),
    ] {
        sd.insert(k, random_tensor(&mut rng, &shape));
    }
    // A transposed (non-contiguous) view is written in its logical row-major order.
    let t = random_tensor(&mut rng, &[3, 5]);
    let tt = Tensor::from_arc(t.array().clone().reversed_axes());
    assert!(!tt.is_contiguous());
    sd.insert("head.weight", tt.clone());
    sd.insert("fc3_bn.num_batches_tracked", Tensor::scalar(42.0));
    sd.insert("fc3_bn.running_var", random_tensor(&mut rng, &[6]));
    sd.set_metadata("format", "pt");
    sd.set_model("resmlp_12_224");
    sd.set_metadata("note", "ünïcode, \"quotes\" and\nnewlines");
    sd.save(&path).unwrap();

    let back = StateDict::load(&path).unwrap();
    assert_eq!(back, sd);
    for (k, t) in sd.iter() {
        let b = back.get(k).unwrap();
        assert_eq!(b.shape(), t.shape(), "{k}");
        assert_eq!(bits(b), bits(t), "{k}");
    }
    assert_eq!(back.get("head.weight").unwrap().to_vec(), tt.to_vec());
    // F32 tensors keep their relative order; the I64 counter comes first (8-byte alignment).
    let f32_order: Vec<&str> = back.keys().filter(|k| !k.ends_with("tracked")).collect();
    let want: Vec<&str> = sd.keys().filter(|k| !k.ends_with("tracked")).collect();
    assert_eq!(f32_order, want);
    assert_eq!(back.metadata, sd.metadata);

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes,
        sd.to_bytes().unwrap(),
        "save writes exactly to_bytes"
    );
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let nbt = st.tensor("fc3_bn.num_batches_tracked").unwrap();
    assert_eq!(nbt.dtype(), Dtype::I64);
    assert_eq!(nbt.data(), &42i64.to_le_bytes());
    assert_eq!(st.tensor("stem.proj.bias").unwrap().dtype(), Dtype::F32);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data starts 8-byte aligned");
    assert_eq!(StateDict::from_bytes(&bytes).unwrap(), sd);
    // Deterministic: the same state dict always serializes to the same bytes.
    assert_eq!(sd.clone().to_bytes().unwrap(), bytes);
    // A tensor may not take the header's metadata key.
    let mut bad = StateDict::new();
    bad.insert("__metadata__", Tensor::scalar(1.0));
    let e = bad
        .save(dir.path().join("bad.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("`__metadata__`"),
        "{e}"
    );
}

/// Loading is bit-identical with 1 and 2 threads, on tensors large enough to be split into
/// several parallel chunks, in F32 and BF16.
#[test]
fn load_is_thread_count_independent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.safetensors");
    let mut rng = Rng::new(5);
    let n = 700_001;
    let vals: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let tensors = [
        ("a", raw(Dtype::F32, &[n], le(&vals, f32::to_le_bytes))),
        (
            "b",
            raw(
                Dtype::BF16,
                &[n],
                le(&vals, |v| half::bf16::from_f32(v).to_le_bytes()),
            ),
        ),
    ];
    write_raw(&path, &tensors, None);
    set_num_threads(1).unwrap();
    let one = StateDict::load(&path).unwrap();
    set_num_threads(2).unwrap();
    let two = StateDict::load(&path).unwrap();
    assert_eq!(bits(one.get("a").unwrap()), bits(two.get("a").unwrap()));
    assert_eq!(bits(one.get("b").unwrap()), bits(two.get("b").unwrap()));
    assert_eq!(one.get("a").unwrap().to_vec(), vals);
    let want_b: Vec<f32> = vals
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_eq!(one.get("b").unwrap().to_vec(), want_b);
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Config {
    depth: usize,
    dim: usize,
    act: String,
}

#[test]
fn metadata_and_config_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.safetensors");
    let mut sd = StateDict::new();
    sd.insert("w", Tensor::ones(&[2]).unwrap());
    assert_eq!(sd.config::<Config>().unwrap(), None);
    let cfg = Config {
        depth: 12,
        dim: 384,
        act: "gelu".into(),
    };
    sd.set_model("resmlp_12_224");
    sd.set_config(&cfg).unwrap();
    assert_eq!(sd.set_metadata("k", "v1"), None);
    assert_eq!(sd.set_metadata("k", "v2").as_deref(), Some("v1"));
    sd.save(&path).unwrap();

    let back = StateDict::load(&path).unwrap();
    assert_eq!(back.model(), Some("resmlp_12_224"));
    assert_eq!(back.config::<Config>().unwrap(), Some(cfg));
    assert_eq!(back.metadata_value("k"), Some("v2"));
    assert_eq!(back.metadata.len(), 3);
    // The header really carries it, as other readers see it.
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let m = meta.metadata().as_ref().unwrap();
    assert_eq!(m["model"], "resmlp_12_224");
    assert_eq!(m["config"], r#"{"depth":12,"dim":384,"act":"gelu"}"#);

    // A config of the wrong type is an error naming the key.
    let mut bad = StateDict::new();
    bad.set_metadata("config", "{not json");
    let e = bad.config::<Config>().unwrap_err().to_string();
    assert!(
        e.contains("metadata `config`") && e.contains("not valid JSON"),
        "{e}"
    );
    // Read from a file, the error names the file too.
    bad.save(&path).unwrap();
    let e = StateDict::load(&path)
        .unwrap()
        .config::<Config>()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: metadata `config`", path.display())),
        "{e}"
    );
}

fn four_tensor_file(dir: &Path) -> PathBuf {
    let path = dir.join("four.safetensors");
    let mut sd = StateDict::new();
    sd.insert("fc1.weight", Tensor::zeros(&[4, 3]).unwrap());
    sd.insert("fc1.bias", Tensor::zeros(&[4]).unwrap());
    sd.insert("fc2.weight", Tensor::zeros(&[2, 4]).unwrap());
    sd.insert("extra.a", Tensor::zeros(&[1]).unwrap());
    sd.insert("extra.b", Tensor::zeros(&[2, 2]).unwrap());
    sd.save(&path).unwrap();
    path
}

/// The model expects fc1.weight [4,3] (ok), fc1.bias [5] (mismatch), fc2.weight [4,2]
/// (mismatch), fc2.bias and norm.alpha (missing); the file also has extra.a, extra.b.
fn expected() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("fc1.weight", vec![4, 3]),
        ("fc1.bias", vec![5]),
        ("fc2.weight", vec![4, 2]),
        ("fc2.bias", vec![2]),
        ("norm.alpha", vec![1, 1, 4]),
    ]
}

#[test]
fn strict_loading_lists_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = four_tensor_file(dir.path());
    let err = StateDict::load_matching(&path, expected(), &LoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    for needle in [
        path.display().to_string().as_str(),
        "2 missing key(s), 2 unexpected key(s), 2 shape mismatch(es)",
        "missing key `fc2.bias` (expected shape [2])",
        "missing key `norm.alpha` (expected shape [1, 1, 4])",
        "unexpected key `extra.a` (shape [1])",
        "unexpected key `extra.b` (shape [2, 2])",
        "shape mismatch for `fc1.bias`: expected [5], found [4]",
        "shape mismatch for `fc2.weight`: expected [4, 2], found [2, 4]",
    ] {
        assert!(msg.contains(needle), "missing `{needle}` in:\n{msg}");
    }
    let StateDictError::Incompatible { path: p, report } = err else {
        panic!("expected Incompatible, got {err:?}");
    };
    assert_eq!(p.as_deref(), Some(path.as_path()));
    assert_eq!(report.missing.len(), 2);
    assert_eq!(report.unexpected.len(), 2);
    assert_eq!(report.mismatched[0].name, "fc1.bias");
    assert_eq!(
        (
            report.mismatched[0].expected.clone(),
            report.mismatched[0].found.clone()
        ),
        (vec![5], vec![4])
    );
    // A clean match in strict mode succeeds, in the model's order.
    let sd = StateDict::load(&path).unwrap();
    let want: Vec<(String, Vec<usize>)> = sd.shapes().into_iter().rev().collect();
    let loaded = sd.match_expected(want.clone(), Strictness::Strict).unwrap();
    assert!(loaded.report.is_clean());
    assert_eq!(loaded.state_dict.shapes(), want);
}

#[test]
fn non_strict_loading_keeps_matches_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = four_tensor_file(dir.path());
    let opts = LoadOptions {
        strictness: Strictness::NonStrict,
        ..LoadOptions::default()
    };
    let loaded = StateDict::load_matching(&path, expected(), &opts).unwrap();
    assert_eq!(loaded.state_dict.keys().collect::<Vec<_>>(), ["fc1.weight"]);
    let r = &loaded.report;
    assert_eq!(
        r.missing,
        vec![
            ("fc2.bias".to_string(), vec![2]),
            ("norm.alpha".to_string(), vec![1, 1, 4])
        ]
    );
    assert_eq!(
        r.unexpected,
        vec![
            ("extra.a".to_string(), vec![1]),
            ("extra.b".to_string(), vec![2, 2])
        ]
    );
    let mm: Vec<_> = r.mismatched.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(mm, ["fc1.bias", "fc2.weight"]);
    assert!(r.to_string().contains("shape mismatch for `fc2.weight`"));
    // Listing a parameter twice is the caller's bug, reported as such.
    let e = StateDict::new()
        .match_expected([("a", [1]), ("a", [1])], Strictness::NonStrict)
        .unwrap_err();
    assert!(e.to_string().contains("names `a` more than once"), "{e}");
}

/// A synthetic ResMLP (depth 2, C = 4, S = 3, 2 classes) saved with the authors' (deit) names:
/// remapped at load time it matches timm's expected names and shapes exactly, with the same
/// values (alpha/beta reshaped from [C] to [1, 1, C]). timm-named files load unchanged.
#[test]
fn resmlp_authors_checkpoint_loads_with_timm_names() {
    let (c, s, depth, classes) = (4, 3, 2, 2);
    let mut timm: Vec<(String, Vec<usize>)> = vec![
        ("stem.proj.weight".into(), vec![c, 3, 2, 2]),
        ("stem.proj.bias".into(), vec![c]),
    ];
    let mut authors: Vec<(String, Vec<usize>)> = vec![
        ("patch_embed.proj.weight".into(), vec![c, 3, 2, 2]),
        ("patch_embed.proj.bias".into(), vec![c]),
    ];
    for i in 0..depth {
        for (t, a, sh) in [
            ("norm1.alpha", "norm1.alpha", vec![1, 1, c]),
            ("norm1.beta", "norm1.beta", vec![1, 1, c]),
            ("linear_tokens.weight", "attn.weight", vec![s, s]),
            ("linear_tokens.bias", "attn.bias", vec![s]),
            ("norm2.alpha", "norm2.alpha", vec![1, 1, c]),
            ("norm2.beta", "norm2.beta", vec![1, 1, c]),
            ("mlp_channels.fc1.weight", "mlp.fc1.weight", vec![4 * c, c]),
            ("mlp_channels.fc1.bias", "mlp.fc1.bias", vec![4 * c]),
            ("mlp_channels.fc2.weight", "mlp.fc2.weight", vec![c, 4 * c]),
            ("mlp_channels.fc2.bias", "mlp.fc2.bias", vec![c]),
            ("ls1", "gamma_1", vec![c]),
            ("ls2", "gamma_2", vec![c]),
        ] {
            timm.push((format!("blocks.{i}.{t}"), sh.clone()));
            // The authors store the affine vectors flat: [C].
            let ash = if a.ends_with("alpha") || a.ends_with("beta") {
                vec![c]
            } else {
                sh
            };
            authors.push((format!("blocks.{i}.{a}"), ash));
        }
    }
    timm.extend([
        ("norm.alpha".into(), vec![1, 1, c]),
        ("norm.beta".into(), vec![1, 1, c]),
        ("head.weight".into(), vec![classes, c]),
        ("head.bias".into(), vec![classes]),
    ]);
    authors.extend([
        ("norm.alpha".into(), vec![c]),
        ("norm.beta".into(), vec![c]),
        ("head.weight".into(), vec![classes, c]),
        ("head.bias".into(), vec![classes]),
    ]);
    assert_eq!(timm.len(), authors.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resmlp_authors.safetensors");
    let mut rng = Rng::new(3);
    let mut sd = StateDict::new();
    for (k, sh) in &authors {
        sd.insert(k.clone(), random_tensor(&mut rng, sh));
    }
    sd.save(&path).unwrap();

    // Without the rules, strict loading reports the foreign names.
    let e = StateDict::load_matching(&path, timm.clone(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected key `blocks.1.gamma_2`"), "{e}");
    assert!(
        e.contains("shape mismatch for `norm.alpha`: expected [1, 1, 4], found [4]"),
        "{e}"
    );

    let opts = LoadOptions {
        remap: resmlp_authors_to_timm(),
        ..LoadOptions::default()
    };
    let loaded = StateDict::load_matching(&path, timm.clone(), &opts).unwrap();
    assert!(loaded.report.is_clean());
    assert_eq!(loaded.state_dict.shapes(), timm);
    for ((a, _), (t, _)) in authors.iter().zip(&timm) {
        let (x, y) = (sd.get(a).unwrap(), loaded.state_dict.get(t).unwrap());
        assert_eq!(x.to_vec(), y.to_vec(), "{a} -> {t}");
    }

    // The same rules applied to an in-memory dict agree, and timm names are a fixed point.
    let remapped = resmlp_authors_to_timm().apply(sd.clone()).unwrap();
    assert_eq!(remapped, loaded.state_dict);
    let again = resmlp_authors_to_timm().apply(remapped.clone()).unwrap();
    assert_eq!(again, remapped);
}

#[test]
fn remap_rules_rename_drop_reshape_and_detect_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut sd = StateDict::new();
    sd.insert("module.layers.0.w", Tensor::arange(0.0, 6.0, 1.0).unwrap());
    sd.insert("module.layers.1.w", Tensor::ones(&[2, 3]).unwrap());
    sd.insert("module.fc.weight", Tensor::ones(&[2]).unwrap());
    sd.save(&path).unwrap();

    let r = Remap::new()
        .prefix("module.", "")
        .regex(r"^layers\.(\d+)\.w$", "blocks.${1}.weight")
        .unwrap()
        .reshape(r"^blocks\.0\.", &[3, -1])
        .unwrap()
        .drop_matching(r"^fc\.")
        .unwrap();
    let got = StateDict::load_remapped(&path, &r).unwrap();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["blocks.0.weight", "blocks.1.weight"]
    );
    let b0 = got.get("blocks.0.weight").unwrap();
    assert_eq!(
        (b0.shape(), b0.to_vec()),
        (&[3, 2][..], vec![0., 1., 2., 3., 4., 5.])
    );
    assert_eq!(got.get("blocks.1.weight").unwrap().shape(), &[2, 3]);

    // Two keys renamed onto one name: an error naming both sources.
    let clash = Remap::new().regex(r"layers\.\d+", "layer").unwrap();
    let e = StateDict::load_remapped(&path, &clash)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("duplicate key `module.layer.w`")
            && e.contains("module.layers.0.w")
            && e.contains("module.layers.1.w"),
        "{e}"
    );
    // A key of an unsupported dtype is fine when a rule drops it.
    let f8 = dir.path().join("f8.safetensors");
    std::fs::write(
        &f8,
        with_header(
            r#"{"skip.w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#,
            &[0; 2],
        ),
    )
    .unwrap();
    assert!(StateDict::load(&f8).is_err());
    let skip = Remap::new().drop_matching(r"^skip\.").unwrap();
    assert!(StateDict::load_remapped(&f8, &skip).unwrap().is_empty());
    // A reshape that cannot apply names the key, its shape and the target.
    let bad = Remap::new().reshape(r"fc\.weight$", &[3, -1]).unwrap();
    let e = StateDict::load_remapped(&path, &bad)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("module.fc.weight") && e.contains("[2]") && e.contains("[3, -1]"),
        "{e}"
    );
}

/// Builds a file whose header is `header` (padded) followed by `data`.
fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

fn load_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let e = StateDict::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()),
        "names the file: {e}"
    );
    e
}

#[test]
fn corrupt_files_are_errors_naming_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let missing = d.join("nope.safetensors");
    let e = StateDict::load(&missing).unwrap_err();
    assert!(matches!(e, StateDictError::Io { .. }));
    let e = e.to_string();
    assert!(
        e.contains("nope.safetensors") && e.contains("cannot open"),
        "{e}"
    );

    let e = StateDict::load(d).unwrap_err().to_string();
    assert!(
        e.contains(&d.display().to_string())
            && e.contains("it is a directory; pass a .safetensors"),
        "a directory: {e}"
    );
    #[cfg(unix)]
    {
        // A FIFO would block the open-for-read forever if it were read; it is refused first.
        let fifo = d.join("fifo.safetensors");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let e = StateDict::load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "a FIFO: {e}");
    }

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty"),
        ("short", vec![1, 0, 0], "only 3 bytes"),
        (
            "huge_header_len",
            {
                let mut b = u64::MAX.to_le_bytes().to_vec();
                b.extend_from_slice(b"{}");
                b
            },
            "but only 2 bytes follow",
        ),
        (
            "png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
            "not a safetensors file",
        ),
        (
            "json",
            with_header("{\"a\": [1, 2", &[]),
            "not a valid safetensors JSON header",
        ),
        (
            "not_utf8",
            {
                let mut b = 4u64.to_le_bytes().to_vec();
                b.extend_from_slice(&[b'{', 0xFF, 0xFE, b'}']);
                b
            },
            "not valid UTF-8",
        ),
        (
            "offsets_outside",
            with_header(
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                &[0; 8],
            ),
            "which holds 8 bytes",
        ),
        (
            "wrong_dtype_size",
            with_header(
                r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            "tensor `w` (F32, shape [3]) spans bytes 0..8",
        ),
        (
            "offset_gap",
            with_header(
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                &[0; 12],
            ),
            "data offsets of tensor `b`",
        ),
        (
            "trailing_garbage",
            with_header(
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 9],
            ),
            "end at byte 4 of the data section, which holds 9 bytes",
        ),
        (
            "overflowing_shape",
            with_header(
                r#"{"w":{"dtype":"F32","shape":[18446744073709551615,4],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "overflow",
        ),
        (
            "duplicate_tensor",
            with_header(
                r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "names tensor `w` twice",
        ),
        (
            "duplicate_metadata",
            with_header(
                r#"{"__metadata__":{"model":"a","model":"b"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0; 4],
            ),
            "__metadata__ names `model` twice",
        ),
        (
            "unsupported_dtype",
            with_header(
                r#"{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#,
                &[0; 2],
            ),
            "tensor `w` has dtype F8_E4M3",
        ),
    ];
    for (name, bytes, needle) in cases {
        let e = load_err(d, name, &bytes);
        assert!(e.contains(needle), "{name}: expected `{needle}` in: {e}");
        let e = StateDict::from_bytes(&bytes).unwrap_err().to_string();
        assert!(
            e.contains("<bytes>") && e.contains(needle),
            "{name} (bytes): {e}"
        );
    }
}

/// Property: every truncation and many random byte corruptions of valid files load as Ok or
/// Err, never panic; errors name the file. Truncations are always errors (the data section
/// must end exactly where the header says).
#[test]
fn truncated_and_corrupted_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut ours = StateDict::new();
    ours.insert("a.weight", Tensor::arange(0.0, 12.0, 1.0).unwrap());
    ours.insert("a.num_batches_tracked", Tensor::scalar(3.0));
    ours.set_model("m");
    let bases = [std::fs::read(FIXTURE).unwrap(), ours.to_bytes().unwrap()];
    let path = dir.path().join("fuzz.safetensors");
    let mut rng = Rng::new(2024);
    let (mut ok, mut err) = (0usize, 0usize);
    for base in &bases {
        assert!(StateDict::from_bytes(base).is_ok());
        for len in 0..base.len() {
            let cut = &base[..len];
            let r = std::panic::catch_unwind(|| StateDict::from_bytes(cut));
            let r = r.unwrap_or_else(|_| panic!("from_bytes panicked on a {len}-byte truncation"));
            assert!(r.is_err(), "a {len}-byte truncation loaded");
            // Through the file (mmap) path too, for every length.
            std::fs::write(&path, cut).unwrap();
            let e = StateDict::load(&path)
                .expect_err("truncated file loaded")
                .to_string();
            assert!(e.contains("fuzz.safetensors"), "{e}");
        }
        for round in 0..3000 {
            let mut b = base.clone();
            let flips = 1 + rng.below(4);
            for _ in 0..flips {
                let i = rng.below(b.len() as u64) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            let r = std::panic::catch_unwind(|| StateDict::from_bytes(&b));
            match r.unwrap_or_else(|_| panic!("from_bytes panicked in round {round}")) {
                Ok(sd) => {
                    ok += 1;
                    assert!(sd.len() <= 7);
                }
                Err(_) => err += 1,
            }
            if round % 10 == 0 {
                std::fs::write(&path, &b).unwrap();
                if let Err(e) = StateDict::load(&path) {
                    assert!(e.to_string().contains("fuzz.safetensors"), "{e}");
                }
            }
        }
    }
    // Both outcomes occur: flips in the data section load, flips in the header mostly fail.
    assert!(ok > 100 && err > 100, "ok {ok}, err {err}");
}

/// The rename target is a directory, so the final step fails: an error naming the path, the
/// directory untouched, no temporary file left. A save into a missing directory fails too.
#[test]
fn failed_save_leaves_the_target_intact() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("ckpt.safetensors");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), b"keep").unwrap();
    let mut sd = StateDict::new();
    sd.insert("w", Tensor::ones(&[1000]).unwrap());
    let e = sd.save(&target).unwrap_err().to_string();
    assert!(
        e.contains("ckpt.safetensors") && e.contains("rename"),
        "{e}"
    );
    assert_eq!(std::fs::read(target.join("keep.txt")).unwrap(), b"keep");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temporary file left behind");

    let e = sd
        .save(dir.path().join("no/such/dir/x.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no/such/dir/x.safetensors"), "{e}");

    // A successful save over an existing file replaces it whole.
    let file = dir.path().join("real.safetensors");
    std::fs::write(&file, b"old").unwrap();
    sd.save(&file).unwrap();
    assert_eq!(StateDict::load(&file).unwrap(), sd);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// A file written by Python's `safetensors.torch.save_file` (f32, f16, bf16, f64, a 0-d i64
/// `num_batches_tracked`, metadata): every value as the script wrote it.
#[test]
fn reads_a_file_written_by_pytorch_safetensors() {
    let sd = StateDict::load(FIXTURE).unwrap();
    assert_eq!(sd.len(), 7);
    let w = sd.get("fc.weight").unwrap();
    assert_eq!(w.shape(), &[2, 3]);
    assert_eq!(w.to_vec(), vec![-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]);
    assert_eq!(sd.get("fc.bias").unwrap().to_vec(), vec![0.25, -0.125]);
    assert_eq!(
        sd.get("half.weight").unwrap().to_vec(),
        vec![1.0, -0.5, 65504.0, 2f32.powi(-24)]
    );
    let bf = sd.get("bf.weight").unwrap();
    assert_eq!(bf.shape(), &[2, 2]);
    assert_eq!(bf.to_vec(), vec![1.0, -3.0, 3.140625, 2f32.powi(100)]);
    let d = sd.get("double.weight").unwrap();
    assert_eq!(
        (d.shape(), d.to_vec()),
        (&[2, 1][..], vec![1.5, -(2f32.powi(-20))])
    );
    let nbt = sd.get("bn.num_batches_tracked").unwrap();
    assert_eq!((nbt.shape(), nbt.item().unwrap()), (&[][..], 12345.0));
    assert_eq!(sd.get("bn.running_var").unwrap().to_vec(), vec![1.0; 3]);
    assert_eq!(sd.model(), Some("fixture_net"));
    assert_eq!(sd.metadata_value("format"), Some("pt"));
    let cfg: Config = sd.config().unwrap().unwrap();
    assert_eq!(
        cfg,
        Config {
            depth: 2,
            dim: 3,
            act: "gelu".into()
        }
    );
    // Re-saved by us and read back: same tensors and metadata (dtype widened to f32).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("resaved.safetensors");
    sd.save(&p).unwrap();
    assert_eq!(StateDict::load(&p).unwrap(), sd);
}
