//! GGUF reader (versions 2 and 3) that works on a byte prefix.
//!
//! Layout (little-endian; see ggml's docs/gguf.md):
//! ```text
//! magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
//! n_kv x { key: string, type: u32, value }          string = u64 length + UTF-8 bytes
//! n_tensors x { name: string, n_dims: u32, ne[n_dims]: u64, type: u32, offset: u64 }
//! padding to `general.alignment` (default 32) | tensor data (offsets are relative to here)
//! ```
//! [`parse`] takes whatever prefix of the file is at hand and either returns the parsed header or
//! says how many bytes it needs at least ([`Parsed::NeedMore`]), so the browser can parse a header
//! from a partial download. Everything read from the file is distrusted: counts, lengths and depths
//! are capped, nothing is preallocated from a count, sizes use checked arithmetic, and tensor
//! ranges are checked for alignment, overlap and (when the file length is known) the end of file.

use crate::hash::{seeded, HashMap};
use std::ops::Range;

use crate::error::{Error, Result};
use crate::quant::GgmlType;

mod value;
pub mod write;
pub use value::{Array, Strings, Value, ValueType};

/// The file's first four bytes, `"GGUF"`.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Caps on what a header may claim. Real models stay far below them (a 256k vocabulary is 2^18
/// strings; big MoE models have a few thousand tensors); they bound memory and time on hostile input.
pub const MAX_TENSORS: u64 = 1 << 20;
pub const MAX_KV: u64 = 1 << 20;
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
pub const MAX_STRING_LEN: u64 = 1 << 24;
pub const MAX_ARRAY_DEPTH: u32 = 8;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;

/// One tensor's description. `dims` are in ggml order: `dims[0]` is the row length (contiguous).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the first byte, relative to [`Gguf::data_offset`].
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row length (elements), `dims[0]`; `usize::MAX` if it does not fit (wasm32), so size checks
    /// fail instead of seeing a truncated value.
    pub fn n_cols(&self) -> usize {
        usize::try_from(self.dims[0]).unwrap_or(usize::MAX)
    }
    /// Number of rows: the product of all dims but the first (parsing checked that the element
    /// count fits in a u64); `usize::MAX` if it does not fit in a usize.
    pub fn n_rows(&self) -> usize {
        usize::try_from(self.dims[1..].iter().product::<u64>()).unwrap_or(usize::MAX)
    }
    /// The tensor's byte range within the whole file. Parsing checked that the end fits in a u64
    /// for the header's own `data_offset`.
    pub fn file_range(&self, data_offset: u64) -> Range<u64> {
        let start = data_offset + self.offset;
        start..start + self.n_bytes
    }
}

/// A parsed GGUF header.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute file offset where tensor data begins.
    pub data_offset: u64,
}

/// Result of parsing a prefix.
#[derive(Debug)]
pub enum Parsed {
    Complete(Gguf),
    /// The prefix ends inside the header: at least `total` bytes from the start of the file are
    /// needed (more may be needed after that). `total` counts the remaining array elements,
    /// metadata entries and tensor infos at their smallest encoding, so a caller that fetches what
    /// is asked for converges in a few rounds (about 20 for a 262k-token vocabulary).
    NeedMore { total: u64 },
}

/// Parse a GGUF header from a prefix of the file. `file_len` is the whole file's length when known;
/// then truncation and tensor data past the end are errors instead of [`Parsed::NeedMore`].
pub fn parse(prefix: &[u8], file_len: Option<u64>) -> Result<Parsed> {
    let mut r = Reader { buf: prefix, pos: 0 };
    match parse_inner(&mut r, file_len) {
        Ok(g) => Ok(Parsed::Complete(g)),
        Err(Fail::NeedMore(total)) => match file_len {
            Some(len) if total > len || prefix.len() as u64 >= len => Err(Error::bad_gguf(format!(
                "file is truncated: its header needs at least {total} bytes but the file has {len}"
            ))),
            _ => Ok(Parsed::NeedMore { total }),
        },
        Err(Fail::Error(e)) => Err(e),
    }
}

/// What a prefix of a GGUF file says about its metadata when the header goes on past it: the
/// entries it holds whole, in file order, and the array it ends inside, if any, by key and length
/// (from the array's own header: a vocabulary's size is known without its tokens). For a look at
/// a remote model that reads only its first bytes ([`crate::preflight`]).
#[derive(Debug, Default)]
pub struct MetadataPrefix {
    pub n_tensors: u64,
    pub metadata: Vec<(String, Value)>,
    /// `(key, element count)` of the array the prefix ends inside.
    pub cut_array: Option<(String, u64)>,
    /// Every metadata entry is in the prefix.
    pub complete: bool,
}

impl MetadataPrefix {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Read the metadata entries a prefix holds (see [`MetadataPrefix`]); a prefix that is not a
/// GGUF file at all is `BAD_GGUF` as [`parse`] says.
pub fn scan_metadata(prefix: &[u8]) -> Result<MetadataPrefix> {
    let mut r = Reader { buf: prefix, pos: 0 };
    let head = (|| -> PResult<(u64, u64)> {
        let magic: [u8; 4] = r.array()?;
        if magic != GGUF_MAGIC {
            return bad("not a GGUF file");
        }
        let version = r.u32()?;
        if version != 2 && version != 3 {
            return bad(format!("unsupported GGUF version {version}"));
        }
        Ok((r.u64()?, r.u64()?))
    })();
    let (n_tensors, n_kv) = match head {
        Ok(h) => h,
        Err(Fail::Error(e)) => return Err(e),
        Err(Fail::NeedMore(_)) => return Err(Error::bad_gguf("the file is too short for a GGUF header")),
    };
    if n_tensors > MAX_TENSORS || n_kv > MAX_KV {
        return Err(Error::bad_gguf(format!("header claims {n_tensors} tensors and {n_kv} metadata entries")));
    }
    let mut out = MetadataPrefix { n_tensors, ..Default::default() };
    for i in 0..n_kv {
        let entry = (|| -> PResult<(String, Value)> {
            let key = r.string(&|| format!("metadata key #{i}"))?;
            let ty = value_type(r.u32()?, &key)?;
            if ty == ValueType::Array {
                // The array's element type and length, before its elements.
                let at = r.pos;
                let (_, len) = (r.u32()?, r.u64()?);
                r.pos = at;
                return match r.value(ty, &key, 0) {
                    Err(Fail::NeedMore(_)) => {
                        out.cut_array = Some((key, len));
                        Err(Fail::NeedMore(0))
                    }
                    v => Ok((key, v?)),
                };
            }
            Ok((key.clone(), r.value(ty, &key, 0)?))
        })();
        match entry {
            Ok(kv) => out.metadata.push(kv),
            Err(Fail::NeedMore(_)) => return Ok(out),
            Err(Fail::Error(e)) => return Err(e),
        }
    }
    out.complete = true;
    Ok(out)
}

/// First prefix length tried by [`read_header`]; most headers fit (Gemma 3's 262k-token vocabulary
/// needs about 6 MiB, found in a few rounds).
pub const HEADER_PREFIX: u64 = 1 << 20;

/// Parse the header of a file of `size` bytes, reading growing prefixes with `read_prefix(len)`
/// until the header is complete: the file is never read whole for its header.
pub async fn read_header<F, Fut>(size: u64, mut read_prefix: F) -> Result<Gguf>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>>>,
{
    let mut want = HEADER_PREFIX.min(size);
    loop {
        let prefix = read_prefix(want).await?;
        match parse(&prefix, Some(size))? {
            Parsed::Complete(g) => return Ok(g),
            Parsed::NeedMore { total } => {
                let next = total.max(want.saturating_mul(2)).min(size);
                if next <= want {
                    return Err(Error::bad_gguf(format!("the GGUF header does not fit in the file's {size} bytes")));
                }
                want = next;
            }
        }
    }
}

impl Gguf {
    /// Parse a complete file held in memory.
    pub fn from_bytes(file: &[u8]) -> Result<Gguf> {
        match parse(file, Some(file.len() as u64))? {
            Parsed::Complete(g) => Ok(g),
            Parsed::NeedMore { total } => Err(Error::bad_gguf(format!(
                "file is truncated: header needs at least {total} bytes, file has {}",
                file.len()
            ))),
        }
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }
    /// `general.architecture`, e.g. `"gemma3"`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    /// An integer value of any integer type, if it fits in u64.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(Value::as_f32)
    }
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn get_array(&self, key: &str) -> Option<&Array> {
        match self.get(key) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
    /// Total bytes of tensor data (end of the last tensor, relative to `data_offset`).
    pub fn data_len(&self) -> u64 {
        self.tensors.iter().map(|t| t.offset + t.n_bytes).max().unwrap_or(0)
    }
    /// The bytes of tensor `t` within a complete file held in memory.
    pub fn tensor_data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> Result<&'a [u8]> {
        let r = t.file_range(self.data_offset);
        // `as usize` would truncate on wasm32; a range that does not fit is past the end anyway.
        let range = usize::try_from(r.start).ok().zip(usize::try_from(r.end).ok());
        range.and_then(|(s, e)| file.get(s..e)).ok_or_else(|| {
            Error::bad_gguf(format!(
                "tensor '{}' (bytes {}..{}) lies past the end of the file ({} bytes)",
                t.name,
                r.start,
                r.end,
                file.len()
            ))
        })
    }
}

/// Metadata keys of a split GGUF (llama.cpp's `gguf-split`): every part has them; the model's
/// own metadata is in the first part.
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

impl Gguf {
    /// Number of parts of the split model this file belongs to (1 for a plain GGUF).
    pub fn split_count(&self) -> u64 {
        self.get_u64(SPLIT_COUNT).unwrap_or(1).max(1)
    }

    /// The parts of a split GGUF, stored one after the other in one byte stream, as one model:
    /// each part is `(offset of its first byte in the stream, its size, its parsed header)`, in
    /// order. The result has the first part's metadata (without the `split.*` keys) and every
    /// part's tensors, with offsets relative to the start of the stream (`data_offset` 0), so
    /// tensor ranges index the concatenated bytes directly. A single file comes back as is (if it
    /// is one part of a split model, loading it says so).
    pub fn merge_split(parts: Vec<(u64, u64, Gguf)>) -> Result<Gguf> {
        let n = parts.len();
        if n == 0 {
            return Err(Error::invalid_argument("a model needs at least one GGUF file"));
        }
        if n == 1 {
            return Ok(parts.into_iter().next().map(|p| p.2).expect("one part"));
        }
        let mut tensors = Vec::new();
        for (i, (base, size, g)) in parts.iter().enumerate() {
            let (count, no) = (g.get_u64(SPLIT_COUNT), g.get_u64(SPLIT_NO));
            if count != Some(n as u64) || no != Some(i as u64) {
                return Err(Error::bad_gguf(format!(
                    "part {} of {n} is not part {} of a {n}-part split GGUF (its split.no is {}, split.count {}); \
                     give every part of the model, in order",
                    i + 1,
                    i + 1,
                    no.map_or("missing".into(), |v| v.to_string()),
                    count.map_or("missing".into(), |v| v.to_string()),
                )));
            }
            for t in &g.tensors {
                let r = t.file_range(g.data_offset);
                if r.end > *size {
                    return Err(Error::bad_gguf(format!(
                        "tensor '{}' of part {} ends at byte {} past the end of the part ({size} bytes)",
                        t.name,
                        i + 1,
                        r.end
                    )));
                }
                tensors.push(TensorInfo { offset: base + r.start, ..t.clone() });
            }
        }
        if let Some(want) = parts[0].2.get_u64(SPLIT_TENSORS_COUNT) {
            if want != tensors.len() as u64 {
                return Err(Error::bad_gguf(format!("the split model should have {want} tensors, its {n} parts have {}", tensors.len())));
            }
        }
        let first = parts.into_iter().next().map(|p| p.2).expect("parts");
        let metadata: Vec<(String, Value)> = first.metadata.into_iter().filter(|(k, _)| !k.starts_with("split.")).collect();
        let index = metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect();
        let mut tensor_index = HashMap::with_hasher(seeded());
        for (i, t) in tensors.iter().enumerate() {
            if tensor_index.insert(t.name.clone(), i).is_some() {
                return Err(Error::bad_gguf(format!("tensor '{}' appears in more than one part", t.name)));
            }
        }
        Ok(Gguf { version: first.version, metadata, index, tensors, tensor_index, alignment: first.alignment, data_offset: 0 })
    }

    /// A split GGUF held in memory as its parts' bytes one after the other, `part_sizes` long each.
    pub fn from_split(file: &[u8], part_sizes: &[u64]) -> Result<Gguf> {
        let total = part_sizes.iter().try_fold(0u64, |a, &s| a.checked_add(s));
        if total != Some(file.len() as u64) {
            return Err(Error::invalid_argument(format!(
                "the part sizes add up to {} bytes, the model has {}",
                total.map_or("more than 2^64".into(), |t| t.to_string()),
                file.len()
            )));
        }
        let mut parts = Vec::new();
        let mut at = 0u64;
        for &size in part_sizes {
            let part = &file[at as usize..(at + size) as usize];
            parts.push((at, size, Gguf::from_bytes(part)?));
            at += size;
        }
        Gguf::merge_split(parts)
    }
}

enum Fail {
    NeedMore(u64),
    Error(Error),
}

impl Fail {
    /// Add `count` items of at least `min` bytes each to a [`Fail::NeedMore`] lower bound.
    fn plus(self, count: u64, min: u64) -> Fail {
        match self {
            Fail::NeedMore(t) => Fail::NeedMore(t.saturating_add(count.saturating_mul(min))),
            e => e,
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Error(e)
    }
}

type PResult<T> = std::result::Result<T, Fail>;

fn bad<T>(msg: impl Into<String>) -> PResult<T> {
    Err(Fail::Error(Error::bad_gguf(msg)))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> PResult<&'a [u8]> {
        let end = (self.pos as u64).checked_add(n).ok_or(Fail::NeedMore(u64::MAX))?;
        if end > self.buf.len() as u64 {
            return Err(Fail::NeedMore(end));
        }
        let s = &self.buf[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> PResult<[u8; N]> {
        Ok(self.take(N as u64)?.try_into().unwrap())
    }
    fn u32(&mut self) -> PResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> PResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self, what: &dyn Fn() -> String) -> PResult<String> {
        self.str(what).map(str::to_owned)
    }

    fn str(&mut self, what: &dyn Fn() -> String) -> PResult<&'a str> {
        let len = self.u64()?;
        if len > MAX_STRING_LEN {
            return bad(format!("{}: string length {len} exceeds the limit of {MAX_STRING_LEN}", what()));
        }
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => bad(format!("{}: string is not valid UTF-8", what())),
        }
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: u32) -> PResult<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>()?[0]),
            ValueType::I8 => Value::I8(self.array::<1>()?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Bool => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return bad(format!("metadata '{key}': bool byte is {b}, expected 0 or 1")),
            },
            ValueType::String => Value::String(self.string(&|| format!("metadata '{key}'"))?),
            ValueType::Array => Value::Array(self.array_value(key, depth + 1)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> PResult<Array> {
        if depth > MAX_ARRAY_DEPTH {
            return bad(format!("metadata '{key}': arrays nested deeper than {MAX_ARRAY_DEPTH}"));
        }
        let elem = value_type(self.u32()?, key)?;
        let len = self.u64()?;
        if len > MAX_ARRAY_LEN {
            return bad(format!("metadata '{key}': array length {len} exceeds the limit of {MAX_ARRAY_LEN}"));
        }
        // Never reserve from the claimed length: a hostile count must not allocate. Fixed-size
        // elements are taken as one slice, which must be present before anything is allocated;
        // strings and arrays are read one by one (each takes at least 8 bytes, so the loop is
        // bounded by the input) and a prefix that ends early reports what the rest needs at least.
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                const N: usize = std::mem::size_of::<$t>();
                let bytes = self.take(len * N as u64)?;
                Array::$variant(bytes.chunks_exact(N).map(|c| <$t>::from_le_bytes(c.try_into().unwrap())).collect())
            }};
        }
        Ok(match elem {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let bytes = self.take(len)?;
                match bytes.iter().position(|&b| b > 1) {
                    Some(i) => {
                        return bad(format!(
                            "metadata '{key}': bool byte is {} at array index {i}, expected 0 or 1",
                            bytes[i]
                        ))
                    }
                    None => Array::Bool(bytes.iter().map(|&b| b == 1).collect()),
                }
            }
            ValueType::String => {
                let mut v = Strings::new();
                for i in 0..len {
                    let s = self.str(&|| format!("metadata '{key}'")).map_err(|e| e.plus(len - i - 1, MIN_STRING))?;
                    v.push(s);
                }
                v.shrink_to_fit();
                Array::String(v)
            }
            ValueType::Array => Array::Array(self.each(len, MIN_ARRAY, |r| r.array_value(key, depth + 1))?),
        })
    }

    /// Read `len` variable-size items; if the prefix ends at item `i`, the remaining `len - i - 1`
    /// items need at least `min` bytes each.
    fn each<T>(&mut self, len: u64, min: u64, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut v = Vec::new();
        for i in 0..len {
            v.push(item(self).map_err(|e| e.plus(len - i - 1, min))?);
        }
        Ok(v)
    }
}

/// Smallest encodings, for the lower bound in [`Parsed::NeedMore`]: a string is its u64 length;
/// an array its u32 type and u64 length; a metadata entry a key, a u32 type and a 1-byte value;
/// a tensor info a name, n_dims, one dim, a type and an offset.
const MIN_STRING: u64 = 8;
const MIN_ARRAY: u64 = 12;
const MIN_KV: u64 = MIN_STRING + 4 + 1;
const MIN_TENSOR_INFO: u64 = MIN_STRING + 4 + 8 + 4 + 8;

fn value_type(id: u32, key: &str) -> PResult<ValueType> {
    match ValueType::from_id(id) {
        Some(t) => Ok(t),
        None => bad(format!("metadata '{key}': unknown value type {id}")),
    }
}

fn parse_inner(r: &mut Reader, file_len: Option<u64>) -> PResult<Gguf> {
    let magic: [u8; 4] = r.array()?;
    if magic != GGUF_MAGIC {
        return bad(format!(
            "not a GGUF file: it starts with {:?} ({}), expected \"GGUF\"",
            String::from_utf8_lossy(&magic),
            magic.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
        ));
    }
    let version = r.u32()?;
    match version {
        2 | 3 => {}
        1 => return bad("GGUF version 1 is obsolete and not supported; convert the model again"),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return bad("this is a big-endian GGUF file; only little-endian files are supported")
        }
        v => return bad(format!("unknown GGUF version {v} (supported: 2 and 3)")),
    }
    let n_tensors = r.u64().map_err(|e| e.plus(1, 8))?;
    if n_tensors > MAX_TENSORS {
        return bad(format!("header claims {n_tensors} tensors (limit {MAX_TENSORS})"));
    }
    let n_kv = r.u64()?;
    if n_kv > MAX_KV {
        return bad(format!("header claims {n_kv} metadata entries (limit {MAX_KV})"));
    }

    let mut metadata = Vec::new();
    let mut index = HashMap::with_hasher(seeded());
    // A prefix that ends inside the metadata still needs the remaining entries and tensor infos.
    let rest_after_kv = |i: u64| (n_kv - i - 1).saturating_mul(MIN_KV).saturating_add(n_tensors * MIN_TENSOR_INFO);
    for i in 0..n_kv {
        let need_rest = |e: Fail| e.plus(1, rest_after_kv(i));
        let key = r.string(&|| format!("metadata key #{i}")).map_err(|e| need_rest(e.plus(1, 4 + 1)))?;
        let ty = value_type(r.u32().map_err(|e| need_rest(e.plus(1, 1)))?, &key)?;
        let value = r.value(ty, &key, 0).map_err(need_rest)?;
        if index.insert(key.clone(), metadata.len()).is_some() {
            return bad(format!("metadata key '{key}' appears twice"));
        }
        metadata.push((key, value));
    }

    let alignment = match index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
        Some(v) => {
            return bad(format!(
                "general.alignment must be a power-of-two u32, got {} {}",
                v.type_name(),
                v.summary(4)
            ))
        }
    };

    let mut tensors = Vec::new();
    let mut tensor_index = HashMap::with_hasher(seeded());
    for i in 0..n_tensors {
        let need_rest = |e: Fail| e.plus(n_tensors - i - 1, MIN_TENSOR_INFO);
        let name = r.string(&|| format!("tensor #{i} name")).map_err(|e| need_rest(e.plus(1, 4 + 8 + 4 + 8)))?;
        let n_dims = r.u32().map_err(|e| need_rest(e.plus(1, 8 + 4 + 8)))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return bad(format!("tensor '{name}': {n_dims} dimensions (expected 1..={MAX_DIMS})"));
        }
        // n_dims dims, a u32 type and a u64 offset, all fixed size.
        let info = r.take(n_dims as u64 * 8 + 4 + 8).map_err(need_rest)?;
        let dims: Vec<u64> = (0..n_dims as usize)
            .map(|d| u64::from_le_bytes(info[d * 8..d * 8 + 8].try_into().unwrap()))
            .collect();
        let tail = &info[n_dims as usize * 8..];
        let ty_id = u32::from_le_bytes(tail[..4].try_into().unwrap());
        let offset = u64::from_le_bytes(tail[4..].try_into().unwrap());
        let ty = GgmlType::from_id(ty_id).map_err(|e| {
            Fail::Error(Error::new(e.code, format!("tensor '{name}': {}", e.message)))
        })?;
        let n_bytes = tensor_bytes(&name, &dims, ty)?;
        if offset % alignment != 0 {
            return bad(format!("tensor '{name}': offset {offset} is not a multiple of the alignment {alignment}"));
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return bad(format!("tensor '{name}' appears twice"));
        }
        tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
    }

    let data_offset = (r.pos as u64).div_ceil(alignment) * alignment;
    check_layout(&tensors, data_offset, file_len)?;
    Ok(Gguf { version, metadata, index, tensors, tensor_index, alignment, data_offset })
}

/// Bytes of a tensor, with every product checked. ggml keeps element counts in int64.
fn tensor_bytes(name: &str, dims: &[u64], ty: GgmlType) -> PResult<u64> {
    let mut n: u64 = 1;
    for &d in dims {
        // ggml stores dims as int64; a larger one is negative there (and could hide behind a 0).
        if d > i64::MAX as u64 {
            return bad(format!("tensor '{name}': dimension {d} in {dims:?} is out of range"));
        }
        n = match n.checked_mul(d) {
            Some(n) if n <= i64::MAX as u64 => n,
            _ => return bad(format!("tensor '{name}': dimensions {dims:?} overflow the element count")),
        };
    }
    let bs = ty.block_size() as u64;
    if dims[0] % bs != 0 {
        return bad(format!(
            "tensor '{name}': row length {} is not a multiple of the {ty} block size {bs}",
            dims[0]
        ));
    }
    match (n / bs).checked_mul(ty.type_size() as u64) {
        Some(b) if b <= i64::MAX as u64 => Ok(b),
        _ => bad(format!("tensor '{name}': byte size overflows")),
    }
}

/// Tensors must end within u64 range, must not overlap and, when the file length is known, must
/// end inside the file.
fn check_layout(tensors: &[TensorInfo], data_offset: u64, file_len: Option<u64>) -> PResult<()> {
    for t in tensors {
        // Checked even without a file length, so `file_range` and `data_len` cannot overflow.
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
        if end.map_or(true, |e| e > i64::MAX as u64) {
            return bad(format!(
                "tensor '{}': data range (at {} + {} + {} bytes) overflows the file offset range",
                t.name, data_offset, t.offset, t.n_bytes
            ));
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    // Empty tensors first at a shared offset, so they never count as overlapping their neighbour.
    order.sort_by_key(|t| (t.offset, t.n_bytes));
    for w in order.windows(2) {
        let end = w[0].offset.checked_add(w[0].n_bytes);
        if end.map_or(true, |e| e > w[1].offset) {
            return bad(format!(
                "tensors '{}' and '{}' overlap (offsets {} + {} bytes and {})",
                w[0].name, w[1].name, w[0].offset, w[0].n_bytes, w[1].offset
            ));
        }
    }
    if let Some(len) = file_len {
        for t in &order {
            let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
            if end.map_or(true, |e| e > len) {
                return bad(format!(
                    "tensor '{}' ends past the end of the file (data at {} + {} + {} bytes, file is {len} bytes); \
                     the file may be truncated",
                    t.name, data_offset, t.offset, t.n_bytes
                ));
            }
        }
    }
    Ok(())
}
