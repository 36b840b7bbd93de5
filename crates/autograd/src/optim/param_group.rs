//! [`ParamGroup`]: named parameters that share a learning-rate scale and a weight decay, and
//! [`param_groups_weight_decay`], timm's split into decayed and non-decayed groups.

use crate::Var;

/// Named parameters optimized with the same settings (torch's `param_groups` entry).
///
/// The group's learning rate is the optimizer's learning rate times [`ParamGroup::lr_scale`], so
/// a schedule that calls [`Optimizer::set_lr`](super::Optimizer::set_lr) moves every group
/// together. The weight decay is the optimizer's unless the group sets its own.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// The parameters, each with a unique name (state-dict keys are built from it).
    pub params: Vec<(String, Var)>,
    /// Weight decay for this group; `None` uses the optimizer's configured weight decay.
    pub weight_decay: Option<f64>,
    /// Multiplies the optimizer's learning rate for this group (1.0 by default).
    pub lr_scale: f64,
}

impl ParamGroup {
    /// A group with the optimizer's weight decay and learning rate.
    pub fn new(params: Vec<(String, Var)>) -> ParamGroup {
        ParamGroup {
            params,
            weight_decay: None,
            lr_scale: 1.0,
        }
    }

    /// Sets this group's own weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> ParamGroup {
        self.weight_decay = Some(weight_decay);
        self
    }

    /// Sets this group's learning-rate scale.
    pub fn with_lr_scale(mut self, lr_scale: f64) -> ParamGroup {
        self.lr_scale = lr_scale;
        self
    }
}

/// Splits named parameters into a no-decay group and a decay group, like timm's
/// `param_groups_weight_decay` (with `weight_decay_exclude_1d=True`).
///
/// A parameter gets weight decay 0 when it has at most one dimension (biases, norm weights,
/// layer-scale vectors), when its name ends in `.bias`, or when its name matches one of the
/// `no_weight_decay` patterns (shell globs with `*` and `?`, matched against the whole name like
/// Python's `fnmatch`; a pattern without wildcards is an exact name). Every other parameter gets
/// `weight_decay`. The no-decay group comes first; empty groups are left out, and with
/// `weight_decay == 0` everything goes into the no-decay group, as in timm.
///
/// ResMLP's `Affine` parameters have shape `[1, 1, C]`, so they are excluded by pattern
/// (e.g. `"*.alpha"`, `"*.beta"`), not by rank.
pub fn param_groups_weight_decay(
    params: Vec<(String, Var)>,
    weight_decay: f64,
    no_weight_decay: &[&str],
) -> Vec<ParamGroup> {
    let mut decay = Vec::new();
    let mut no_decay = Vec::new();
    for (name, var) in params {
        let excluded = weight_decay == 0.0
            || var.shape().len() <= 1
            || name.ends_with(".bias")
            || no_weight_decay.iter().any(|p| glob_match(p, &name));
        if excluded {
            no_decay.push((name, var));
        } else {
            decay.push((name, var));
        }
    }
    let mut groups = Vec::new();
    if !no_decay.is_empty() {
        groups.push(ParamGroup::new(no_decay).with_weight_decay(0.0));
    }
    if !decay.is_empty() {
        groups.push(ParamGroup::new(decay).with_weight_decay(weight_decay));
    }
    groups
}

/// Shell-style match of the whole `name`: `*` is any run of characters, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    // Iterative matcher with backtracking to the last `*`: O(|p|·|s|) worst case.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use allmlp_tensor_core::Tensor;

    fn var(shape: &[usize]) -> Var {
        Var::parameter(Tensor::zeros(shape).unwrap())
    }

    fn names(g: &ParamGroup) -> Vec<&str> {
        g.params.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn glob_matches_like_fnmatch() {
        assert!(glob_match("*.alpha", "blocks.0.norm1.alpha"));
        assert!(!glob_match("*.alpha", "blocks.0.norm1.alpha_x"));
        assert!(glob_match("pos_embed", "pos_embed"));
        assert!(!glob_match("pos_embed", "x.pos_embed"));
        assert!(glob_match("blocks.?.ls*", "blocks.3.ls1"));
        assert!(!glob_match("blocks.?.ls*", "blocks.12.ls1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYb"));
    }

    #[test]
    fn splits_like_timm() {
        let params = vec![
            ("stem.weight".to_string(), var(&[8, 3, 4, 4])),
            ("stem.bias".to_string(), var(&[8])),
            ("blocks.0.norm1.alpha".to_string(), var(&[1, 1, 8])),
            ("blocks.0.ls1".to_string(), var(&[8])),
            ("blocks.0.mlp.fc1.weight".to_string(), var(&[16, 8])),
            ("weird.bias".to_string(), var(&[2, 2])),
            ("pos_embed".to_string(), var(&[1, 4, 8])),
        ];
        let groups = param_groups_weight_decay(params.clone(), 0.05, &["*.alpha", "pos_embed"]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].weight_decay, Some(0.0));
        assert_eq!(
            names(&groups[0]),
            [
                "stem.bias",
                "blocks.0.norm1.alpha",
                "blocks.0.ls1",
                "weird.bias",
                "pos_embed"
            ]
        );
        assert_eq!(groups[1].weight_decay, Some(0.05));
        assert_eq!(
            names(&groups[1]),
            ["stem.weight", "blocks.0.mlp.fc1.weight"]
        );
        // No weight decay at all: one group, nothing decayed.
        let groups = param_groups_weight_decay(params, 0.0, &[]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].params.len(), 7);
        assert_eq!(groups[0].weight_decay, Some(0.0));
        assert!(param_groups_weight_decay(vec![], 0.1, &[]).is_empty());
    }
}
