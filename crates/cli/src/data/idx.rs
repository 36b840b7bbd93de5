//! IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.
//!
//! Layout: magic `[0, 0, type, ndim]` (type `0x08` = u8), then `ndim` big-endian `u32`
//! dimensions, then the data. Images: magic `0x00000803`, dims `N × rows × cols`.
//! Labels: magic `0x00000801`, dims `N`.

use super::{DataError, Result};
use std::borrow::Cow;
use std::io::Read;

/// Largest decompressed size accepted (guards against gzip bombs): 1 GiB.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// Magic number of an IDX file of `u8` images `N × rows × cols`.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels `N`.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Returns `bytes` decompressed when they start with the gzip magic `1f 8b`, else unchanged.
/// Every gzip member is read and zero padding after the last one is ignored, as `zcat` does
/// (`bgzip` and concatenated files have several members; tape and block devices pad with
/// zeros); other bytes after a member that are not another member are an error. `file` names
/// the source in errors.
pub fn decode<'a>(file: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.iter().any(|&b| b != 0) {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        (&mut member)
            .take(MAX_DECOMPRESSED + 1 - out.len() as u64)
            .read_to_end(&mut out)
            .map_err(|e| DataError::new(file, format!("corrupt or truncated gzip data: {e}")))?;
        if out.len() as u64 > MAX_DECOMPRESSED {
            return Err(DataError::new(
                file,
                format!("decompresses to more than {MAX_DECOMPRESSED} bytes"),
            ));
        }
        rest = member.into_inner();
    }
    Ok(Cow::Owned(out))
}

/// Parses an IDX header with the expected `magic` and returns (dims, data) after checking that
/// the data is exactly the product of the dims.
fn parse_idx<'a>(
    file: &str,
    bytes: &'a [u8],
    magic: u32,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8])> {
    let err = |p: String| Err(DataError::new(file, p));
    let Some(head) = bytes.get(..4) else {
        return err(format!(
            "truncated: {} bytes, an IDX file starts with a 4-byte magic",
            bytes.len()
        ));
    };
    let got = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if got != magic {
        return err(format!(
            "wrong magic 0x{got:08x}: expected 0x{magic:08x} (IDX {what})"
        ));
    }
    let ndim = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndim;
    let Some(dim_bytes) = bytes.get(4..header_len) else {
        return err(format!(
            "truncated header: {} bytes, expected {header_len}",
            bytes.len()
        ));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let data = &bytes[header_len..];
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(need) if need == data.len() => Ok((dims, data)),
        Some(need) if need > data.len() => err(format!(
            "truncated: dims {dims:?} need {need} data bytes, got {}",
            data.len()
        )),
        Some(need) => err(format!(
            "dims {dims:?} need {need} data bytes, got {} ({} trailing bytes)",
            data.len(),
            data.len() - need
        )),
        None => err(format!("dims {dims:?} overflow usize")),
    }
}

/// Images read from an IDX file: `[N, rows, cols]` `u8`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images `N`.
    pub count: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// `N·rows·cols` pixels.
    pub pixels: Vec<u8>,
}

/// Parses an IDX image file (raw or gzip, detected by magic). `file` names it in errors.
/// Errors: wrong magic, truncated header, data size ≠ `N·rows·cols`, corrupt gzip.
pub fn parse_idx_images(file: &str, bytes: &[u8]) -> Result<IdxImages> {
    let raw = decode(file, bytes)?;
    let (dims, data) = parse_idx(file, &raw, IMAGES_MAGIC, "u8 images N×rows×cols")?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels: data.to_vec(),
    })
}

/// Parses an IDX label file (raw or gzip, detected by magic) into labels `[N]`.
/// `num_classes`: every label must be below it. `file` names the file in errors.
pub fn parse_idx_labels(file: &str, bytes: &[u8], num_classes: usize) -> Result<Vec<usize>> {
    let raw = decode(file, bytes)?;
    let (_, data) = parse_idx(file, &raw, LABELS_MAGIC, "u8 labels N")?;
    if let Some((i, &l)) = data
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= num_classes)
    {
        return Err(DataError::new(
            file,
            format!("label {l} at index {i} is out of range for {num_classes} classes"),
        ));
    }
    Ok(data.iter().map(|&l| usize::from(l)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A file of two gzip members (`cat a.gz b.gz`, bgzip) decodes to both; zero padding after
    /// the last member is ignored, anything else that is not gzip is refused, naming the file.
    #[test]
    fn every_gzip_member_is_read_and_trailing_garbage_refused() {
        let (a, b) = (vec![1u8, 2, 3], vec![4u8, 5]);
        let mut two = gzip(&a);
        two.extend(gzip(&b));
        assert_eq!(decode("f.gz", &two).unwrap().as_ref(), [1, 2, 3, 4, 5]);
        let mut junk = gzip(&a);
        junk.extend_from_slice(b"junk");
        let e = decode("f.gz", &junk).unwrap_err().to_string();
        assert!(
            e.contains("f.gz") && e.contains("corrupt or truncated gzip"),
            "{e}"
        );
        assert_eq!(decode("raw", &a).unwrap().as_ref(), a.as_slice());
        // Zero padding after the members is ignored, as zcat does; a truncated member is not.
        let mut padded = two.clone();
        padded.extend_from_slice(&[0; 512]);
        assert_eq!(decode("f.gz", &padded).unwrap().as_ref(), [1, 2, 3, 4, 5]);
        let cut = &two[..two.len() - 3];
        let e = decode("f.gz", cut).unwrap_err().to_string();
        assert!(e.contains("corrupt or truncated gzip"), "{e}");
    }
}
