//! Colour maps: a diverging one for signed weights, a sequential one for counts.

/// ColorBrewer RdBu anchors from −1 (dark blue) through 0 (near white) to +1 (dark red).
const DIVERGING: [[u8; 3]; 5] = [
    [5, 48, 97],
    [67, 147, 195],
    [247, 247, 247],
    [214, 96, 77],
    [103, 0, 31],
];

/// ColorBrewer Blues anchors from 0 (near white) to 1 (dark blue).
const SEQUENTIAL: [[u8; 3]; 4] = [
    [247, 251, 255],
    [158, 202, 225],
    [49, 130, 189],
    [8, 48, 107],
];

/// The colour of `v` on a diverging map: −1 → [`NEGATIVE_EXTREME`], 0 → [`NEUTRAL`],
/// +1 → [`POSITIVE_EXTREME`] (clamped outside; NaN is neutral).
pub fn diverging(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) };
    interpolate(&DIVERGING, (v + 1.0) / 2.0)
}

/// The colour of `v` ∈ [0, 1] on a white-to-blue sequential map (clamped; NaN is white).
pub fn sequential(v: f32) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    interpolate(&SEQUENTIAL, v)
}

/// The colour [`diverging`] gives −1.
pub const NEGATIVE_EXTREME: [u8; 3] = DIVERGING[0];
/// The colour [`diverging`] gives 0.
pub const NEUTRAL: [u8; 3] = DIVERGING[2];
/// The colour [`diverging`] gives +1.
pub const POSITIVE_EXTREME: [u8; 3] = DIVERGING[4];

/// Piecewise-linear interpolation through evenly spaced `anchors` at `t` ∈ [0, 1].
fn interpolate(anchors: &[[u8; 3]], t: f32) -> [u8; 3] {
    let segments = (anchors.len() - 1) as f32;
    let pos = t * segments;
    let i = (pos.floor() as usize).min(anchors.len() - 2);
    let f = pos - i as f32;
    let (a, b) = (anchors[i], anchors[i + 1]);
    std::array::from_fn(|k| {
        (f32::from(a[k]) + (f32::from(b[k]) - f32::from(a[k])) * f).round() as u8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_middle_are_the_anchors() {
        assert_eq!(diverging(-1.0), NEGATIVE_EXTREME);
        assert_eq!(diverging(-7.0), NEGATIVE_EXTREME);
        assert_eq!(diverging(0.0), NEUTRAL);
        assert_eq!(diverging(f32::NAN), NEUTRAL);
        assert_eq!(diverging(1.0), POSITIVE_EXTREME);
        // Halfway between 0 and the +0.5 anchor, per channel.
        assert_eq!(diverging(0.25), [231, 172, 162]);
        assert_eq!(sequential(0.0), [247, 251, 255]);
        assert_eq!(sequential(1.0), [8, 48, 107]);
        // Monotone darkening of the sequential map.
        let lum = |c: [u8; 3]| c.iter().map(|&x| u32::from(x)).sum::<u32>();
        for i in 0..10 {
            assert!(lum(sequential(i as f32 / 10.0)) > lum(sequential((i + 1) as f32 / 10.0)));
        }
    }
}
