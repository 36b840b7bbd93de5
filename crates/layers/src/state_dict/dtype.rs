//! Converting stored tensor bytes (little-endian, any safetensors dtype we support) to `f32`.
//!
//! F32 is copied; F16 and BF16 widen exactly; F64 rounds to the nearest f32; integers convert
//! with `as f32` (exact below 2^24, e.g. BatchNorm's `num_batches_tracked`); BOOL becomes 0 or 1.

use rayon::prelude::*;
use safetensors::Dtype;

/// Elements converted per parallel task. A fixed size (not derived from the thread count)
/// keeps the split, and hence nothing observable, dependent on the pool size; 256 Ki elements
/// (1 MiB of f32) amortise task overhead and still spread a 2–10 MB tensor over the cores.
const CHUNK: usize = 1 << 18;

/// Bytes per element of the dtypes [`to_f32`] converts; `None` for the others.
pub(crate) fn byte_size(dtype: Dtype) -> Option<usize> {
    Some(match dtype {
        Dtype::BOOL | Dtype::U8 | Dtype::I8 => 1,
        Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
        Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
        Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        _ => return None,
    })
}

/// Converts `n` elements of `dtype` from `bytes` (little-endian, `bytes.len() == n * size`) to
/// f32, in parallel over fixed-size chunks. `None` if the dtype is not supported or the length
/// is not a multiple of the element size.
pub(crate) fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    let size = byte_size(dtype)?;
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    let n = bytes.len() / size;
    // `vec![0.0; n]` is a calloc: the pages are mapped lazily and touched once, by the
    // conversion below, so this costs no extra pass over memory.
    let mut out = vec![0f32; n];
    let convert: fn(&[u8], &mut [f32]) = match dtype {
        Dtype::F32 => |b, o| conv(b, o, |c: [u8; 4]| f32::from_le_bytes(c)),
        Dtype::F16 => |b, o| {
            conv(b, o, |c: [u8; 2]| {
                half::f16::from_bits(u16::from_le_bytes(c)).to_f32()
            })
        },
        // bf16 is the top half of an f32: widening is a shift, exact for every value.
        Dtype::BF16 => |b, o| {
            conv(b, o, |c: [u8; 2]| {
                f32::from_bits((u16::from_le_bytes(c) as u32) << 16)
            })
        },
        Dtype::F64 => |b, o| conv(b, o, |c: [u8; 8]| f64::from_le_bytes(c) as f32),
        Dtype::I64 => |b, o| conv(b, o, |c: [u8; 8]| i64::from_le_bytes(c) as f32),
        Dtype::U64 => |b, o| conv(b, o, |c: [u8; 8]| u64::from_le_bytes(c) as f32),
        Dtype::I32 => |b, o| conv(b, o, |c: [u8; 4]| i32::from_le_bytes(c) as f32),
        Dtype::U32 => |b, o| conv(b, o, |c: [u8; 4]| u32::from_le_bytes(c) as f32),
        Dtype::I16 => |b, o| conv(b, o, |c: [u8; 2]| i16::from_le_bytes(c) as f32),
        Dtype::U16 => |b, o| conv(b, o, |c: [u8; 2]| u16::from_le_bytes(c) as f32),
        Dtype::I8 => |b, o| conv(b, o, |c: [u8; 1]| c[0] as i8 as f32),
        Dtype::U8 => |b, o| conv(b, o, |c: [u8; 1]| c[0] as f32),
        Dtype::BOOL => |b, o| conv(b, o, |c: [u8; 1]| if c[0] != 0 { 1.0 } else { 0.0 }),
        _ => return None,
    };
    if n <= CHUNK {
        convert(bytes, &mut out);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(bytes.par_chunks(CHUNK * size))
            .for_each(|(o, b)| convert(b, o));
    }
    Some(out)
}

/// Decodes each `N`-byte element of `bytes` into `out` with `f`. For F32 on a little-endian
/// machine `f32::from_le_bytes` is the identity and the loop compiles to a vectorised copy.
#[inline(always)]
fn conv<const N: usize>(bytes: &[u8], out: &mut [f32], f: impl Fn([u8; N]) -> f32) {
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(N)) {
        // chunks_exact(N) yields slices of length exactly N.
        *o = f(c.try_into().expect("chunk of N bytes"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every conversion against values whose f32 image is known exactly.
    #[test]
    fn conversions_are_exact_where_representable() {
        let f32s = [0.0f32, -1.5, 3.25e-3, f32::MAX, f32::MIN_POSITIVE, -0.0];
        let b: Vec<u8> = f32s.iter().flat_map(|v| v.to_le_bytes()).collect();
        let got = to_f32(Dtype::F32, &b).unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            f32s.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );

        // f16: 1.0 = 0x3C00, -2.0 = 0xC000, 65504 = 0x7BFF (max), 2^-24 = 0x0001 (subnormal).
        let h = [0x3C00u16, 0xC000, 0x7BFF, 0x0001];
        let b: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            to_f32(Dtype::F16, &b).unwrap(),
            vec![1.0, -2.0, 65504.0, 2f32.powi(-24)]
        );

        // bf16: 1.0 = 0x3F80, -3.0 = 0xC040, 0x4049 = 3.140625.
        let h = [0x3F80u16, 0xC040, 0x4049];
        let b: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(to_f32(Dtype::BF16, &b).unwrap(), vec![1.0, -3.0, 3.140625]);

        let d = [0.1f64, -2.5, 1e300];
        let b: Vec<u8> = d.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            to_f32(Dtype::F64, &b).unwrap(),
            vec![0.1f32, -2.5, f32::INFINITY]
        );

        let i = [0i64, 7, -3, 1 << 24];
        let b: Vec<u8> = i.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            to_f32(Dtype::I64, &b).unwrap(),
            vec![0.0, 7.0, -3.0, 16777216.0]
        );
        assert_eq!(to_f32(Dtype::I8, &[0xFF, 5]).unwrap(), vec![-1.0, 5.0]);
        assert_eq!(to_f32(Dtype::U8, &[0xFF]).unwrap(), vec![255.0]);
        assert_eq!(
            to_f32(Dtype::BOOL, &[0, 1, 2]).unwrap(),
            vec![0.0, 1.0, 1.0]
        );
        assert_eq!(
            to_f32(Dtype::I32, &(-9i32).to_le_bytes()).unwrap(),
            vec![-9.0]
        );
        assert_eq!(
            to_f32(Dtype::U16, &60000u16.to_le_bytes()).unwrap(),
            vec![60000.0]
        );
    }

    #[test]
    fn unsupported_dtypes_and_ragged_lengths_are_refused() {
        assert!(to_f32(Dtype::F8_E4M3, &[0]).is_none());
        assert!(to_f32(Dtype::F32, &[0, 0, 0]).is_none());
        assert_eq!(to_f32(Dtype::F32, &[]).unwrap(), Vec::<f32>::new());
    }

    /// The parallel path (more than one chunk, with a ragged last chunk) equals a serial
    /// element-by-element decode, for a 2-byte and a 4-byte dtype.
    #[test]
    fn parallel_chunks_match_serial_decode() {
        let n = 2 * CHUNK + 12345;
        let mut rng = allmlp_tensor_core::Rng::new(7);
        let vals: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(to_f32(Dtype::F32, &b).unwrap(), vals);
        let bf: Vec<u8> = vals
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let want: Vec<f32> = vals
            .iter()
            .map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000))
            .collect();
        assert_eq!(to_f32(Dtype::BF16, &bf).unwrap(), want);
    }
}
