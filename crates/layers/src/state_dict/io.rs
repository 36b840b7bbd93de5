//! Reading and writing safetensors files: memory-mapped loading with conversion to f32, atomic
//! saving (temporary sibling file, fsync, rename).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use allmlp_tensor_core::Tensor;
use indexmap::IndexMap;
use rayon::prelude::*;
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use super::error::{Result, StateDictError};
use super::remap::Remap;
use super::report::{Loaded, Strictness};
use super::{StateDict, dtype, header_keys};

/// The name errors give an in-memory buffer.
const BYTES: &str = "<bytes>";

/// The length prefix of a safetensors file: a little-endian u64 giving the header's size.
const N_LEN: usize = 8;

/// How [`StateDict::load_matching`] treats the file: which remap rules to apply and how
/// strictly to match the model's parameters.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Rules applied to every key (and shape) before matching; empty by default.
    pub remap: Remap,
    /// [`Strictness::Strict`] (the default) or [`Strictness::NonStrict`].
    pub strictness: Strictness,
}

impl StateDict {
    /// Loads every tensor of the safetensors file at `path` as f32, with its metadata.
    ///
    /// The file is memory-mapped and each tensor is copied (and converted, for F16, BF16, F64
    /// and integer dtypes) into its own f32 buffer, in parallel over tensors and over 1 MiB
    /// chunks of large tensors; the map is released before returning. Tensors keep the file's
    /// order (by data offset). A missing, empty, truncated or otherwise invalid file is an
    /// error naming the file and the problem.
    pub fn load(path: impl AsRef<Path>) -> Result<StateDict> {
        StateDict::load_remapped(path, &Remap::new())
    }

    /// Like [`StateDict::load`], applying `remap` to each key and shape as it is read (dropped
    /// keys are never converted).
    pub fn load_remapped(path: impl AsRef<Path>, remap: &Remap) -> Result<StateDict> {
        let path = path.as_ref();
        // Looked at before opening: opening a FIFO for reading would block.
        let meta =
            std::fs::metadata(path).map_err(|e| StateDictError::io(path, "open for reading", e))?;
        if meta.is_dir() {
            return Err(StateDictError::corrupt(
                path,
                "it is a directory; pass a .safetensors file in it (e.g. best.safetensors)",
            ));
        }
        if !meta.is_file() {
            // A FIFO or device would block or never end; a checkpoint is a regular file.
            return Err(StateDictError::corrupt(path, "it is not a regular file"));
        }
        let file = File::open(path).map_err(|e| StateDictError::io(path, "open for reading", e))?;
        let len = file
            .metadata()
            .map_err(|e| StateDictError::io(path, "read the metadata of", e))?
            .len();
        if len == 0 {
            // mmap refuses empty files; say what is wrong instead.
            return Err(StateDictError::corrupt(path, "the file is empty (0 bytes)"));
        }
        if len < N_LEN as u64 {
            return Err(StateDictError::corrupt(path, too_short(len as usize)));
        }
        // SAFETY: the map is only read, and only inside this function (every tensor is copied
        // out before it returns). Like every mmap-based loader (safetensors, candle) this
        // relies on no other process truncating or rewriting the file meanwhile; our own
        // `save` never rewrites a file in place (it renames a new file over it), so a
        // concurrent save cannot change what we read.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .map_err(|e| StateDictError::io(path, "memory-map", e))?;
        let mut sd = parse(path, &map, remap)?;
        sd.source = Some(path.to_path_buf());
        Ok(sd)
    }

    /// Loads the file at `path`, applies `options.remap`, and matches the result against the
    /// model's expected `(name, shape)` list (see [`StateDict::match_expected`]). In strict
    /// mode the error names the file and lists every missing key, unexpected key and shape
    /// mismatch.
    pub fn load_matching<I, N, S>(
        path: impl AsRef<Path>,
        expected: I,
        options: &LoadOptions,
    ) -> Result<Loaded>
    where
        I: IntoIterator<Item = (N, S)>,
        N: Into<String>,
        S: AsRef<[usize]>,
    {
        StateDict::load_remapped(path, &options.remap)?.match_expected(expected, options.strictness)
    }

    /// Parses a safetensors file held in memory (errors name it `<bytes>`).
    pub fn from_bytes(bytes: &[u8]) -> Result<StateDict> {
        parse(Path::new(BYTES), bytes, &Remap::new())
    }

    /// Saves to `path` as safetensors, atomically: the bytes go to a temporary file in the
    /// same directory, which is flushed to disk and then renamed over `path`. If anything
    /// fails (or the process is killed) before the rename, an existing file at `path` is left
    /// intact and the temporary file is removed (or, after a kill, left as `.NAME.*.tmp`).
    ///
    /// Tensors are written as F32, except keys whose last component is `num_batches_tracked`,
    /// which are written as I64 as PyTorch stores them. The metadata goes into the header's
    /// `__metadata__` (omitted when empty). Data is ordered as safetensors orders it (8-byte
    /// dtypes first), each dtype group in this state dict's order.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (header, entries) = self
            .header()
            .map_err(|e| StateDictError::corrupt(path, e))?;
        write_atomic(path, |w| write_body(w, &header, &entries))
    }

    /// The bytes [`StateDict::save`] would write.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (header, entries) = self
            .header()
            .map_err(|problem| StateDictError::CannotSave {
                path: BYTES.into(),
                problem,
            })?;
        let mut out = Vec::new();
        write_body(&mut out, &header, &entries)
            .map_err(|e| StateDictError::io(Path::new(BYTES), "serialize", e))?;
        Ok(out)
    }

    /// The serialized header (length prefix excluded, padded to 8 bytes) and the tensors in
    /// the order their data is written, with the dtype each is written as.
    fn header(&self) -> std::result::Result<(Vec<u8>, Vec<Entry<'_>>), String> {
        let mut entries: Vec<Entry<'_>> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.as_str(), t.contiguous(), save_dtype(k)))
            .collect();
        // Stable: keeps our order inside each dtype, larger alignment first like safetensors.
        entries.sort_by_key(|e| std::cmp::Reverse(e.2));
        let mut offset = 0usize;
        let mut infos = Vec::with_capacity(entries.len());
        for (k, t, dt) in &entries {
            let size = dtype::byte_size(*dt).expect("we only write F32 and I64");
            let n = t
                .numel()
                .checked_mul(size)
                .ok_or_else(|| format!("tensor `{k}` is too large"))?;
            let end = offset.checked_add(n).ok_or("the tensors are too large")?;
            infos.push((
                k.to_string(),
                TensorInfo {
                    dtype: *dt,
                    shape: t.shape().to_vec(),
                    data_offsets: (offset, end),
                },
            ));
            offset = end;
        }
        // Written by hand (not through safetensors' `Metadata`, whose metadata is a HashMap)
        // so that the same state dict always gives the same bytes: metadata sorted by key,
        // tensors in data order. serde_json does the escaping.
        let mut header = Vec::from(&b"{"[..]);
        if !self.metadata.is_empty() {
            header.extend_from_slice(b"\"__metadata__\":");
            header.extend(json(&self.metadata)?);
        }
        for (k, info) in &infos {
            if k == "__metadata__" {
                return Err(
                    "a tensor may not be named `__metadata__` (the header's metadata key)".into(),
                );
            }
            // JSON has no trailing commas: one before every entry but the header's first.
            if header.len() > 1 {
                header.push(b',');
            }
            header.extend(json(k)?);
            header.push(b':');
            header.extend(json(info)?);
        }
        header.push(b'}');
        // safetensors pads the header with spaces so the data starts 8-byte aligned.
        header.resize(header.len().next_multiple_of(N_LEN), b' ');
        Ok((header, entries))
    }
}

/// serde_json's encoding of `v` (strings escaped, maps in their iteration order).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> std::result::Result<Vec<u8>, String> {
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

/// A tensor to write: its name, contiguous data, and the dtype it is written as.
type Entry<'a> = (&'a str, Tensor, Dtype);

/// The dtype a key is saved as: I64 for BatchNorm's step counter (PyTorch's dtype for it, so
/// `load_state_dict` in PyTorch sees what it saved), F32 for everything else.
fn save_dtype(key: &str) -> Dtype {
    if key.rsplit('.').next() == Some("num_batches_tracked") {
        Dtype::I64
    } else {
        Dtype::F32
    }
}

/// Writes the length prefix, header and tensor data.
fn write_body<W: Write>(w: &mut W, header: &[u8], entries: &[Entry<'_>]) -> io::Result<()> {
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(header)?;
    // Encode through a fixed buffer: no second full copy of a tensor in memory.
    let mut buf = Vec::with_capacity(1 << 16);
    for (_, t, dt) in entries {
        let data = t.as_slice().expect("made contiguous in header()");
        for chunk in data.chunks(1 << 13) {
            buf.clear();
            match dt {
                Dtype::I64 => {
                    for &v in chunk {
                        buf.extend_from_slice(&(v as i64).to_le_bytes());
                    }
                }
                _ => {
                    for &v in chunk {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            w.write_all(&buf)?;
        }
    }
    Ok(())
}

/// Writes `path` through a temporary sibling file (`.NAME.*.tmp`) that is synced and renamed
/// into place: a crash or kill at any moment leaves either the old file or the new one. On an
/// error the temporary file is removed and an existing `path` is untouched.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<()> {
    let name = path.file_name().ok_or_else(|| {
        StateDictError::io(
            path,
            "save to",
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{}.", name.to_string_lossy());
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        // tempfile creates files 0600; ask for 0666 so the umask decides, as File::create.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|e| StateDictError::io(path, "create a temporary file next to", e))?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        write(&mut w)
            .and_then(|()| w.flush())
            .map_err(|e| StateDictError::io(tmp.path(), "write", e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| StateDictError::io(tmp.path(), "sync to disk", e))?;
    tmp.persist(path).map_err(|e| {
        StateDictError::io(path, "rename the temporary file into place at", e.error)
    })?;
    // Make the rename itself durable; failing to sync a directory is not worth an error.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn too_short(len: usize) -> String {
    format!("the file is only {len} bytes; a safetensors file starts with an 8-byte header length")
}

/// Checks the framing before handing the bytes to safetensors, for messages that say what is
/// wrong in terms of the file (header length against file size, not JSON at all).
fn precheck(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let Some(prefix) = bytes.first_chunk::<N_LEN>() else {
        return Err(too_short(bytes.len()));
    };
    let n = u64::from_le_bytes(*prefix);
    let rest = (bytes.len() - N_LEN) as u64;
    if n > rest {
        return Err(format!(
            "the first 8 bytes give a header length of {n} bytes, but only {rest} bytes follow \
             (truncated, or not a safetensors file)"
        ));
    }
    // JSON may start with whitespace (safetensors accepts it); anything else must be `{`.
    let header = &bytes[N_LEN..N_LEN + n as usize];
    if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(format!(
            "the header (bytes 8..{}) is not a JSON object: not a safetensors file",
            N_LEN as u64 + n
        ));
    }
    match header_keys::first_duplicate(header) {
        Some(d) => Err(d.to_string()),
        None => Ok(()),
    }
}

/// Explains a safetensors error, looking into the header for the tensor at fault when
/// safetensors does not name it.
fn explain(e: &SafeTensorError, bytes: &[u8]) -> String {
    let n = bytes
        .first_chunk::<N_LEN>()
        .map_or(0, |p| u64::from_le_bytes(*p) as usize);
    let data_len = bytes.len().saturating_sub(N_LEN).saturating_sub(n);
    let header = || -> Option<serde_json::Map<String, serde_json::Value>> {
        let h = bytes.get(N_LEN..N_LEN.checked_add(n)?)?;
        serde_json::from_slice(h).ok()
    };
    match e {
        SafeTensorError::InvalidHeader(u) => format!("the header is not valid UTF-8: {u}"),
        SafeTensorError::InvalidHeaderDeserialization(j) => {
            format!("the header is not a valid safetensors JSON header: {j}")
        }
        SafeTensorError::HeaderTooLarge => {
            format!("the header length {n} exceeds safetensors' limit of 100 MB")
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            let end = header().map(|h| {
                h.iter()
                    .filter(|(k, _)| *k != "__metadata__")
                    .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
                    .max()
                    .unwrap_or(0)
            });
            match end {
                Some(end) => format!(
                    "the header's data offsets end at byte {end} of the data section, which \
                     holds {data_len} bytes (truncated, or extra bytes at the end)"
                ),
                None => format!(
                    "the header's data offsets do not cover the {data_len}-byte data section"
                ),
            }
        }
        SafeTensorError::TensorInvalidInfo => {
            let culprit = header().and_then(|h| {
                h.iter()
                    .filter(|(k, _)| *k != "__metadata__")
                    .find_map(|(k, v)| {
                        let info: TensorInfo = serde_json::from_value(v.clone()).ok()?;
                        let numel = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                        let want = numel.and_then(|c| c.checked_mul(info.dtype.bitsize() / 8));
                        let (s, e) = info.data_offsets;
                        (want != e.checked_sub(s)).then(|| {
                            format!(
                                "tensor `{k}` ({:?}, shape {:?}) spans bytes {s}..{e}, which does \
                                 not match its dtype and shape",
                                info.dtype, info.shape
                            )
                        })
                    })
            });
            culprit
                .unwrap_or_else(|| "a tensor's byte size does not match its dtype and shape".into())
        }
        SafeTensorError::InvalidOffset(name) => format!(
            "the data offsets of tensor `{name}` do not follow the previous tensor's \
             (gap, overlap, or end before start)"
        ),
        other => other.to_string(),
    }
}

/// One tensor to convert: its final name and shape, its dtype and bytes.
struct Pending<'a> {
    name: String,
    shape: Vec<usize>,
    source: String,
    dtype: Dtype,
    bytes: &'a [u8],
}

/// Parses a whole safetensors buffer into f32 tensors, applying `remap`.
fn parse(path: &Path, bytes: &[u8], remap: &Remap) -> Result<StateDict> {
    precheck(bytes).map_err(|p| StateDictError::corrupt(path, p))?;
    let (n, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| StateDictError::corrupt(path, explain(&e, bytes)))?;
    // read_metadata checked that the header and every tensor lie inside the buffer.
    let data = &bytes[N_LEN + n..];
    let mut pending = Vec::new();
    let mut origin: IndexMap<String, String> = IndexMap::new();
    for key in meta.offset_keys() {
        let info = meta.info(&key).expect("offset_keys come from the header");
        let (s, e) = info.data_offsets;
        let raw = data.get(s..e).ok_or_else(|| {
            StateDictError::corrupt(path, format!("tensor `{key}` lies outside the file"))
        })?;
        let Some((name, shape)) = remap.plan(&key, &info.shape)? else {
            continue;
        };
        if dtype::byte_size(info.dtype).is_none() {
            return Err(StateDictError::UnsupportedDtype {
                path: path.to_path_buf(),
                key,
                dtype: format!("{:?}", info.dtype),
            });
        }
        if let Some(first) = origin.get(&name) {
            return Err(StateDictError::DuplicateKey {
                key: name,
                first: first.clone(),
                second: key,
            });
        }
        origin.insert(name.clone(), key.clone());
        pending.push(Pending {
            name,
            shape,
            source: key,
            dtype: info.dtype,
            bytes: raw,
        });
    }
    let tensors = allmlp_tensor_core::threads::install(|| {
        pending
            .into_par_iter()
            .map(|p| {
                let v = dtype::to_f32(p.dtype, p.bytes).ok_or_else(|| {
                    StateDictError::corrupt(
                        path,
                        format!("tensor `{}` has a byte size that is not a whole number of {:?} elements", p.source, p.dtype),
                    )
                })?;
                let t = Tensor::from_vec(v, &p.shape).map_err(|source| StateDictError::Tensor {
                    key: p.name.clone(),
                    source,
                })?;
                Ok((p.name, t))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let metadata = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(StateDict {
        tensors: tensors.into_iter().collect(),
        metadata,
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precheck_names_the_framing_problem() {
        assert!(precheck(&[]).unwrap_err().contains("empty"));
        assert!(precheck(&[1, 2, 3]).unwrap_err().contains("only 3 bytes"));
        let mut b = 100u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        let e = precheck(&b).unwrap_err();
        assert!(
            e.contains("header length of 100") && e.contains("only 2 bytes"),
            "{e}"
        );
        let mut b = 2u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"PK");
        assert!(precheck(&b).unwrap_err().contains("not a safetensors file"));
        // Leading whitespace is valid JSON and accepted, as safetensors accepts it.
        let mut b = 4u64.to_le_bytes().to_vec();
        b.extend_from_slice(b" \n{}");
        assert!(precheck(&b).is_ok());
        assert!(StateDict::from_bytes(&b).unwrap().is_empty());
        let b = 0u64.to_le_bytes();
        assert!(precheck(&b).unwrap_err().contains("not a JSON object"));
    }

    /// A failing writer leaves the previous file untouched and no temporary file behind.
    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"old contents").unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(&[0u8; 3 << 20])?; // more than the BufWriter holds: reaches the file
            Err(io::Error::other("disk full (simulated)"))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cannot write") && msg.contains("disk full"),
            "{msg}"
        );
        assert!(
            msg.contains(".model.safetensors."),
            "names the temporary file: {msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old contents");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
    }
}
