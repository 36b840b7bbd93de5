//! MLP-Mixer and ResMLP against timm: parameter counts of every named configuration
//! (the spec's tables), state_dict names and order, strict loading of timm's files,
//! outputs of small random-weight models (fixtures from tools/fixtures/models_mlp.py),
//! the authors' ResMLP names, and the full-size check (`#[ignore]`, see below).

use std::path::{Path, PathBuf};

use allmlp_models::layers::autograd::tensor_core::Tensor;
use allmlp_models::layers::checkpoint::load_state_dict;
use allmlp_models::layers::state_dict::{StateDict, Strictness};
use allmlp_models::layers::{Module, infer, named_parameters, num_parameters};
use allmlp_models::{
    Mixer, MixerConfig, Model, ModelError, ModelOptions, ResMlp, ResMlpConfig, create_model,
    load_resmlp_checkpoint, mixer, model_names, resmlp,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(format!("{name}.safetensors"))
}

/// max |got − want| / max |want| (the project's parity metric).
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let (g, w) = (got.to_vec(), want.to_vec());
    let max_ref = w.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let max_diff = g
        .iter()
        .zip(&w)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    max_diff / max_ref
}

/// Parameter counts in millions from the spec's tables, and the exact count of
/// `timm.create_model(name)` (timm 1.0.31, summed over `parameters()`).
const TABLE: &[(&str, f64, usize)] = &[
    ("mixer_s32_224", 19.10, 19_104_624),
    ("mixer_s16_224", 18.53, 18_528_264),
    ("mixer_b32_224", 60.29, 60_293_428),
    ("mixer_b16_224", 59.88, 59_880_472),
    ("mixer_l32_224", 206.94, 206_939_264),
    ("mixer_l16_224", 208.20, 208_196_168),
    ("resmlp_12_224", 15.35, 15_350_872),
    ("resmlp_24_224", 30.02, 30_020_680),
    ("resmlp_36_224", 44.69, 44_690_488),
    ("resmlp_big_24_224", 129.14, 129_138_280),
];

fn named_count(name: &str) -> usize {
    match name {
        "mixer_s32_224" => mixer::mixer_s32_224().num_parameters(),
        "mixer_s16_224" => mixer::mixer_s16_224().num_parameters(),
        "mixer_b32_224" => mixer::mixer_b32_224().num_parameters(),
        "mixer_b16_224" => mixer::mixer_b16_224().num_parameters(),
        "mixer_l32_224" => mixer::mixer_l32_224().num_parameters(),
        "mixer_l16_224" => mixer::mixer_l16_224().num_parameters(),
        "mixer_h14_224" => mixer::mixer_h14_224().num_parameters(),
        "resmlp_12_224" => resmlp::resmlp_12_224().num_parameters(),
        "resmlp_24_224" => resmlp::resmlp_24_224().num_parameters(),
        "resmlp_36_224" => resmlp::resmlp_36_224().num_parameters(),
        "resmlp_big_24_224" => resmlp::resmlp_big_24_224().num_parameters(),
        "mixer_tiny" => mixer::mixer_tiny().num_parameters(),
        "resmlp_tiny" => resmlp::resmlp_tiny().num_parameters(),
        other => panic!("no count for {other}"),
    }
}

#[test]
fn parameter_counts_match_the_spec_tables() {
    for &(name, millions, timm) in TABLE {
        assert_eq!(named_count(name), timm, "{name}: timm's exact count");
        let n = named_count(name) as f64 / 1e6;
        // The tables round to 0.01M: the count must round to the same figure.
        assert!(
            (n - millions).abs() <= 0.005 + 1e-9,
            "{name}: {n:.4}M vs {millions}M"
        );
    }
    // The paper's Table 1 counts exclude the head (B/16 "59M", L/16 "207M": timm's figures
    // less 0.77M and 1.02M); H/14's ≈431M is its body, 432.35M with a 1000-class head.
    let h14 = mixer::mixer_h14_224();
    let body = (h14.num_parameters() - (1280 * 1000 + 1000)) as f64 / 1e6;
    assert!(
        (430.5..431.5).contains(&body),
        "H/14 without head: {body:.2}M, paper ≈431M"
    );
    assert_eq!(h14.num_parameters(), 432_350_952);
    // Every registered Mixer/ResMLP name has a count (and no name is forgotten here).
    for name in model_names() {
        if name.starts_with("mixer_") || name.starts_with("resmlp_") {
            assert!(named_count(name) > 0);
        }
    }
}

/// The analytic count equals the built model's `num_parameters` (tiny models, the two
/// smallest 224 models and option overrides), so the table check above covers the models.
#[test]
fn analytic_counts_equal_built_models() {
    let opts = ModelOptions {
        img_size: Some(32),
        in_chans: Some(3),
        num_classes: Some(100),
        ..ModelOptions::default()
    };
    for (name, o) in [
        ("mixer_tiny", ModelOptions::default()),
        ("resmlp_tiny", ModelOptions::default()),
        ("mixer_tiny", opts.clone()),
        ("resmlp_tiny", opts),
        ("mixer_s32_224", ModelOptions::default()),
        ("resmlp_12_224", ModelOptions::default()),
    ] {
        let m = create_model(name, &o).unwrap();
        let want = match m.config()["arch"].as_str().unwrap() {
            "mixer" => MixerConfig::from_json(name, &m.config())
                .unwrap()
                .num_parameters(),
            _ => ResMlpConfig::from_json(name, &m.config())
                .unwrap()
                .num_parameters(),
        };
        assert_eq!(num_parameters(m.as_ref()), want, "{name} {o:?}");
    }
    assert_eq!(named_count("mixer_tiny"), 1_112_594);
    assert_eq!(named_count("resmlp_tiny"), 1_083_162);
}

#[test]
fn registry_names_options_config_and_input_errors() {
    let names = model_names();
    for n in [
        "mixer_s32_224",
        "mixer_s16_224",
        "mixer_b32_224",
        "mixer_b16_224",
        "mixer_l32_224",
        "mixer_l16_224",
        "mixer_h14_224",
        "mixer_tiny",
        "resmlp_12_224",
        "resmlp_24_224",
        "resmlp_36_224",
        "resmlp_big_24_224",
        "resmlp_tiny",
    ] {
        assert!(names.contains(&n), "{n} not registered");
    }
    let m = create_model("mixer_tiny", &ModelOptions::default()).unwrap();
    assert_eq!(
        (m.name(), m.input_shape(), m.num_classes()),
        ("mixer_tiny", [1, 28, 28], 10)
    );
    let c = m.config();
    for (k, v) in [
        ("patch_size", 4),
        ("embed_dim", 128),
        ("depth", 8),
        ("tokens_hidden", 64),
        ("channels_hidden", 512),
        ("num_patches", 49),
    ] {
        assert_eq!(c[k], v, "{k}");
    }
    let opts = ModelOptions {
        img_size: Some(32),
        in_chans: Some(3),
        num_classes: Some(100),
        patch_size: Some(8),
        gelu_tanh: true,
        drop_rate: 0.1,
        drop_path_rate: 0.2,
        zero_init_residual: true,
        seed: 5,
    };
    let r = create_model("resmlp_tiny", &opts).unwrap();
    assert_eq!((r.input_shape(), r.num_classes()), ([3, 32, 32], 100));
    let c = r.config();
    assert_eq!(
        (c["num_patches"].as_u64(), c["gelu_tanh"].as_bool()),
        (Some(16), Some(true))
    );
    assert_eq!(c["init_values"].as_f64().map(|v| v as f32), Some(0.1));
    let y = infer(r.as_ref(), &Tensor::zeros(&[2, 3, 32, 32]).unwrap()).unwrap();
    assert_eq!(y.shape(), [2, 100]);
    let e = infer(r.as_ref(), &Tensor::zeros(&[2, 3, 28, 28]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("resmlp_tiny: expected input an image batch [B, 3, 32, 32]")
            && e.contains("token-mixing weights fix the input size")
            && e.contains("got [2, 3, 28, 28]"),
        "{e}"
    );
    let mixer = Mixer::new("mixer_tiny", &mixer::mixer_tiny(), 0).unwrap();
    match mixer.check_input(&[1, 3, 28, 28]) {
        Err(ModelError::BadInput {
            model,
            expected,
            got,
        }) => {
            assert_eq!(model, "mixer_tiny");
            assert!(expected.contains("[B, 1, 28, 28]"), "{expected}");
            assert_eq!(got, "[1, 3, 28, 28]");
        }
        other => panic!("{other:?}"),
    }
    let bad = ModelOptions {
        img_size: Some(30),
        ..ModelOptions::default()
    };
    let e = create_model("mixer_tiny", &bad).err().unwrap().to_string();
    assert!(
        e.contains("mixer_tiny: invalid configuration") && e.contains("multiple of patch_size 4"),
        "{e}"
    );
}

/// Our configuration for each small fixture (the script's `SMALL` table).
fn small_model(name: &str) -> Box<dyn Model> {
    let m: Box<dyn Model> = match name {
        "mixer_small" => Box::new(
            Mixer::new(
                name,
                &MixerConfig {
                    num_classes: 7,
                    tokens_hidden: 16,
                    channels_hidden: 128,
                    ..MixerConfig::isotropic(32, 8, 32, 2)
                },
                0,
            )
            .unwrap(),
        ),
        "mixer_small_tanh" => Box::new(
            Mixer::new(
                name,
                &MixerConfig {
                    in_chans: 1,
                    num_classes: 7,
                    tokens_hidden: 8,
                    channels_hidden: 48,
                    gelu_tanh: true,
                    ..MixerConfig::isotropic(28, 7, 16, 3)
                },
                0,
            )
            .unwrap(),
        ),
        "resmlp_small" => Box::new(
            ResMlp::new(
                name,
                &ResMlpConfig {
                    num_classes: 7,
                    ..ResMlpConfig::isotropic(32, 8, 32, 2, 0.1)
                },
                0,
            )
            .unwrap(),
        ),
        other => panic!("no fixture {other}"),
    };
    m
}

fn keys_in_metadata(sd: &StateDict) -> Vec<String> {
    let meta: serde_json::Value =
        serde_json::from_str(sd.metadata_value("fixture").expect("fixture metadata")).unwrap();
    meta["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// Loads `dir/{name}.safetensors` strictly into `m` and returns the relative error of its
/// eval output on `dir/{name}_io.safetensors`, after checking timm's key order.
fn check_against_timm(m: &dyn Model, dir: &Path, name: &str) -> f64 {
    let sd = StateDict::load(dir.join(format!("{name}.safetensors"))).unwrap();
    let ours: Vec<String> = named_parameters(m).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        ours,
        keys_in_metadata(&sd),
        "{name}: state_dict names/order"
    );
    let report = load_state_dict(m, sd, Strictness::Strict).unwrap();
    assert!(report.is_clean(), "{name}: {report:?}");
    let io = StateDict::load(dir.join(format!("{name}_io.safetensors"))).unwrap();
    let y = infer(m, io.get("input").unwrap()).unwrap();
    rel_err(&y, io.get("output").unwrap())
}

/// Outputs equal timm's (float64 reference) in eval mode to ≤ 1e-4 relative: the models
/// are a few dozen f32 GEMMs, LayerNorms and GELUs deep, each with error ~1e-7 relative.
#[test]
fn small_models_match_timm() {
    let dir = fixtures_dir();
    for name in ["mixer_small", "mixer_small_tanh", "resmlp_small"] {
        let m = small_model(name);
        let e = check_against_timm(m.as_ref(), &dir, name);
        println!("{name}: max relative error {e:.2e}");
        assert!(e <= 1e-4, "{name}: relative error {e:.3e}");
    }
}

/// A checkpoint under the ResMLP authors' names and `[C]` Affine shapes loads through
/// `load_resmlp_checkpoint` and gives exactly the model the timm-named file gives.
#[test]
fn resmlp_loads_the_authors_names() {
    let timm = small_model("resmlp_small");
    check_against_timm(timm.as_ref(), &fixtures_dir(), "resmlp_small");
    let ours = match ResMlp::new(
        "resmlp_small",
        &ResMlpConfig {
            num_classes: 7,
            ..ResMlpConfig::isotropic(32, 8, 32, 2, 0.1)
        },
        9,
    ) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let raw = StateDict::load(fixture("resmlp_small_authors")).unwrap();
    assert!(raw.contains_key("blocks.1.attn.weight") && raw.contains_key("blocks.0.gamma_2"));
    assert_eq!(raw.get("norm.alpha").unwrap().shape(), [32]);
    // A plain strict load of the authors' file fails, naming the unexpected keys.
    let e = load_state_dict(&ours, raw, Strictness::Strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("patch_embed.proj.weight"), "{e}");
    let report =
        load_resmlp_checkpoint(&ours, fixture("resmlp_small_authors"), Strictness::Strict).unwrap();
    assert!(report.is_clean(), "{report:?}");
    for ((n, a), (_, b)) in named_parameters(&ours)
        .into_iter()
        .zip(named_parameters(timm.as_ref()))
    {
        assert_eq!(a.value(), b.value(), "{n}");
    }
    // And the timm-named file loads through the same function.
    load_resmlp_checkpoint(&ours, fixture("resmlp_small"), Strictness::Strict).unwrap();
    // A wrong-size model is a strict-load error listing the mismatched shapes.
    let other = ResMlp::new("r", &resmlp::resmlp_tiny(), 0).unwrap();
    let e = load_resmlp_checkpoint(&other, fixture("resmlp_small_authors"), Strictness::Strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stem.proj.weight"), "{e}");
}

/// Full-size parity with timm (random weights, batch 1). Needs the files of
/// `python tools/fixtures/models_mlp.py --full DIR` (60–800 MB, not committed); run with
/// `ALLMLP_PARITY_DIR=DIR cargo test -p allmlp-models --test mixer_resmlp -- --ignored`.
/// Every registered Mixer/ResMLP name with a file in DIR is checked.
#[test]
#[ignore = "needs ALLMLP_PARITY_DIR with files from tools/fixtures/models_mlp.py --full"]
fn full_size_models_match_timm() {
    let dir = PathBuf::from(
        std::env::var_os("ALLMLP_PARITY_DIR").expect("set ALLMLP_PARITY_DIR (see the doc comment)"),
    );
    let mut checked = 0;
    for name in model_names() {
        if !(name.starts_with("mixer_") || name.starts_with("resmlp_"))
            || !dir.join(format!("{name}.safetensors")).exists()
        {
            continue;
        }
        let m = create_model(name, &ModelOptions::default()).unwrap();
        let e = check_against_timm(m.as_ref(), &dir, name);
        println!("{name}: max relative error {e:.2e}");
        assert!(e <= 1e-4, "{name}: relative error {e:.3e}");
        checked += 1;
    }
    assert!(checked > 0, "no {{name}}.safetensors in {}", dir.display());
}

/// Training mode runs (dropout, drop-path) and differs from eval only through them.
#[test]
fn train_mode_without_dropout_equals_eval() {
    use allmlp_models::layers::Ctx;
    use allmlp_models::layers::autograd::Var;
    let m = small_model("mixer_small");
    check_against_timm(m.as_ref(), &fixtures_dir(), "mixer_small");
    let x = Tensor::randn(&[2, 3, 32, 32], 0.0, 1.0, 1).unwrap();
    let a = m
        .forward(&Var::constant(x.clone()), &Ctx::train(1))
        .unwrap();
    let b = infer(m.as_ref(), &x).unwrap();
    assert_eq!(a.value(), b);
}
