//! GGUF reader tests: a small GGUF writer (below) builds valid and hostile files; the real model
//! checks the reader against a file written by llama.cpp's tooling.
//!
//! Oracles: round trips compare against the values the writer was given; hostile files must fail
//! with the right code and a message naming the problem; mutated files must never panic, hang or
//! allocate from a claimed size (a counting allocator records the largest request per thread).

mod common;

use std::time::{Duration, Instant};

use browser_llm::gguf::{self, Array, Gguf, Parsed, Value, MAX_ARRAY_DEPTH};
use browser_llm::quant::GgmlType;
use browser_llm::ErrorCode;
use browser_llm::budget::largest_alloc;
use browser_llm::gguf::write::{put_str, put_value, type_id};

// ---------------------------------------------------------------------------------------------
// A GGUF builder for hostile headers (value encoding: the crate's `gguf::write`).

#[derive(Clone)]
struct TensorSpec {
    name: Vec<u8>,
    dims: Vec<u64>,
    ty: u32,
    /// `None`: placed after the previous tensor, aligned.
    offset: Option<u64>,
}

/// Builds a GGUF file. Everything is overridable so hostile files are one call away.
#[derive(Clone)]
struct Builder {
    magic: [u8; 4],
    version: [u8; 4],
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    /// (key bytes, type id, encoded value)
    kvs: Vec<(Vec<u8>, u32, Vec<u8>)>,
    tensors: Vec<TensorSpec>,
    /// Used for padding and automatic offsets; `alignment()` also writes `general.alignment`.
    align: u64,
}

/// A built file with the layout the writer used.
struct Built {
    bytes: Vec<u8>,
    /// End of the tensor infos (where padding starts).
    header_end: usize,
    data_offset: u64,
    offsets: Vec<u64>,
    sizes: Vec<u64>,
}

fn tensor_size(dims: &[u64], ty: u32) -> u64 {
    let Ok(t) = GgmlType::from_id(ty) else { return 0 };
    let n = dims.iter().fold(1u64, |n, &d| n.saturating_mul(d));
    let bs = t.block_size() as u64;
    if dims.first().map_or(true, |d| d % bs != 0) {
        return 0;
    }
    (n / bs).saturating_mul(t.type_size() as u64)
}

impl Builder {
    fn new() -> Self {
        Builder {
            magic: *b"GGUF",
            version: 3u32.to_le_bytes(),
            n_tensors: None,
            n_kv: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
            align: 32,
        }
    }
    fn version(mut self, v: u32) -> Self {
        self.version = v.to_le_bytes();
        self
    }
    fn kv(mut self, key: &str, v: Value) -> Self {
        let mut b = Vec::new();
        put_value(&mut b, &v);
        self.kvs.push((key.as_bytes().to_vec(), type_id(&v), b));
        self
    }
    fn raw_kv(mut self, key: &[u8], ty: u32, value: Vec<u8>) -> Self {
        self.kvs.push((key.to_vec(), ty, value));
        self
    }
    fn alignment(mut self, a: u32) -> Self {
        self.align = a as u64;
        self.kv("general.alignment", Value::U32(a))
    }
    fn tensor(self, name: &str, dims: &[u64], ty: GgmlType) -> Self {
        self.raw_tensor(name.as_bytes(), dims, ty.id(), None)
    }
    fn raw_tensor(mut self, name: &[u8], dims: &[u64], ty: u32, offset: Option<u64>) -> Self {
        self.tensors.push(TensorSpec { name: name.to_vec(), dims: dims.to_vec(), ty, offset });
        self
    }

    fn build(&self) -> Built {
        let mut out = Vec::new();
        out.extend(self.magic);
        out.extend(self.version);
        out.extend(self.n_tensors.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kvs {
            put_str(&mut out, k);
            out.extend(ty.to_le_bytes());
            out.extend(v);
        }
        let align = self.align.max(1);
        let (mut offsets, mut sizes, mut next) = (Vec::new(), Vec::new(), 0u64);
        for t in &self.tensors {
            let size = tensor_size(&t.dims, t.ty);
            let off = t.offset.unwrap_or(next.div_ceil(align) * align);
            next = next.max(off.saturating_add(size));
            put_str(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            t.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(t.ty.to_le_bytes());
            out.extend(off.to_le_bytes());
            offsets.push(off);
            sizes.push(size);
        }
        let header_end = out.len();
        let data_offset = (header_end as u64).div_ceil(align) * align;
        if !self.tensors.is_empty() {
            out.resize(data_offset as usize, 0);
            // Data small enough to write; hostile offsets are tested without their data.
            let data_len = next.min(1 << 20) as usize;
            out.extend((0..data_len).map(|i| (i * 31 + 7) as u8));
        }
        Built { bytes: out, header_end, data_offset, offsets, sizes }
    }
    fn bytes(&self) -> Vec<u8> {
        self.build().bytes
    }
}

/// One value of every scalar type, arrays of every element type, nested and empty arrays.
fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(-1.5e-3)),
        ("t.bool.true", Value::Bool(true)),
        ("t.bool.false", Value::Bool(false)),
        ("t.string", Value::String("héllo ▁wörld 🦀".into())),
        ("t.string.empty", Value::String(String::new())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
        ("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-128, 0, 127]))),
        ("a.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("a.i16", Value::Array(Array::I16(vec![-32768, 32767]))),
        ("a.u32", Value::Array(Array::U32(vec![7, u32::MAX]))),
        ("a.i32", Value::Array(Array::I32(vec![i32::MIN, -1, 0, 3]))),
        ("a.f32", Value::Array(Array::F32(vec![0.0, -0.5, f32::INFINITY, 1e30]))),
        ("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        ("a.string", Value::Array(Array::String(["<s>", "", "▁the"].into_iter().collect()))),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("a.i64", Value::Array(Array::I64(vec![i64::MIN, i64::MAX]))),
        ("a.f64", Value::Array(Array::F64(vec![-2.25, 1e-300]))),
        ("a.empty", Value::Array(Array::F32(vec![]))),
        (
            "a.nested",
            Value::Array(Array::Array(vec![
                Array::U32(vec![1, 2, 3]),
                Array::String(["x"].into_iter().collect()),
                Array::Array(vec![Array::Bool(vec![false]), Array::Array(vec![Array::I8(vec![-1])])]),
                Array::U8(vec![]),
            ])),
        ),
        ("a.nested.empty", Value::Array(Array::Array(vec![]))),
    ]
}

/// A small valid file: every value type, three tensors of different block geometry.
fn small_file(version: u32) -> Builder {
    let mut b = Builder::new().version(version).kv("general.architecture", Value::String("test".into()));
    for (k, v) in every_value() {
        b = b.kv(k, v);
    }
    b.tensor("tok.weight", &[64, 3], GgmlType::Q8_0)
        .tensor("norm.weight", &[5], GgmlType::F32)
        .tensor("blk.0.ffn.weight", &[256, 2], GgmlType::Q4_K)
}

fn err_of(bytes: &[u8]) -> browser_llm::Error {
    match Gguf::from_bytes(bytes) {
        Ok(g) => panic!("expected an error, parsed {} tensors / {} keys", g.tensors.len(), g.metadata().len()),
        Err(e) => e,
    }
}

/// The file fails with `code` and a message containing every one of `needles`.
#[track_caller]
fn expect_err(bytes: &[u8], code: ErrorCode, needles: &[&str]) {
    let e = err_of(bytes);
    assert_eq!(e.code, code, "wrong code; message: {}", e.message);
    for n in needles {
        assert!(e.message.contains(n), "message {:?} does not mention {n:?}", e.message);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips.

#[test]
fn every_value_type_round_trips_in_v2_and_v3() {
    for version in [2, 3] {
        let built = small_file(version).build();
        let g = Gguf::from_bytes(&built.bytes).unwrap();
        assert_eq!(g.version, version);
        let mut want = vec![("general.architecture".to_string(), Value::String("test".into()))];
        want.extend(every_value().into_iter().map(|(k, v)| (k.to_string(), v)));
        assert_eq!(g.metadata().len(), want.len());
        for ((k, v), (wk, wv)) in g.metadata().iter().zip(&want) {
            assert_eq!((k, v), (wk, wv), "metadata in file order");
            assert_eq!(g.get(k), Some(wv));
        }
        assert_eq!(g.architecture(), Some("test"));
        assert_eq!(g.get_u64("t.u8"), Some(200));
        assert_eq!(g.get_u64("t.u64"), Some(u64::MAX));
        assert_eq!(g.get_u64("t.i8"), None, "negative integers are not u64");
        assert_eq!(g.get_f32("t.f32"), Some(-1.5e-3));
        assert_eq!(g.get_f32("t.u16"), Some(60000.0));
        assert_eq!(g.get_bool("t.bool.true"), Some(true));
        assert_eq!(g.get_bool("t.u8"), None);
        assert_eq!(g.get_str("t.string"), Some("héllo ▁wörld 🦀"));
        assert_eq!(g.get_array("a.string").and_then(Array::as_strings).map(|s| s.len()), Some(3));
        assert_eq!(g.get_array("a.i32").and_then(Array::to_i64s), Some(vec![i32::MIN as i64, -1, 0, 3]));
        assert_eq!(g.get("missing"), None);
    }
}

#[test]
fn value_summaries_are_short() {
    let long: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    assert_eq!(Value::Array(Array::String(long.into())).summary(3), r#"[string; 1000] ["t0", "t1", "t2", …]"#);
    let nested = Array::Array(vec![Array::U8(vec![1, 2]), Array::Bool(vec![]), Array::U8(vec![])]);
    assert_eq!(nested.summary(2), "[array; 3] [[u8; 2] [1, 2], [bool; 0] [], …]");
    assert_eq!(Value::String("x".repeat(500)).summary(8).chars().count(), 120 + 3);
    assert_eq!((Value::F32(0.5).summary(8), Value::Bool(true).summary(8)), ("0.5".into(), "true".into()));
    assert_eq!((Value::I64(-3).type_name(), Value::Array(Array::F64(vec![])).type_name()), ("i64", "array"));
}

#[test]
fn deepest_allowed_nesting_round_trips() {
    // A top-level array is depth 1; MAX_ARRAY_DEPTH levels are allowed.
    let mut a = Array::U8(vec![42]);
    for _ in 1..MAX_ARRAY_DEPTH {
        a = Array::Array(vec![a]);
    }
    let bytes = Builder::new().kv("deep", Value::Array(a.clone())).bytes();
    let g = Gguf::from_bytes(&bytes).unwrap();
    assert_eq!(g.get("deep"), Some(&Value::Array(a)));
}

#[test]
fn tensor_layout_default_alignment() {
    let built = small_file(3).build();
    let g = Gguf::from_bytes(&built.bytes).unwrap();
    assert_eq!(g.alignment, 32);
    assert_eq!(g.data_offset, built.data_offset);
    assert_eq!(g.data_offset % 32, 0);
    assert!(g.data_offset >= built.header_end as u64 && g.data_offset < built.header_end as u64 + 32);
    let want = [
        ("tok.weight", GgmlType::Q8_0, vec![64, 3], 2 * 34 * 3),
        ("norm.weight", GgmlType::F32, vec![5], 20),
        ("blk.0.ffn.weight", GgmlType::Q4_K, vec![256, 2], 144 * 2),
    ];
    assert_eq!(g.tensors.len(), want.len());
    for (i, (name, ty, dims, n_bytes)) in want.into_iter().enumerate() {
        let t = g.tensor(name).unwrap();
        assert_eq!(t, &g.tensors[i], "tensors in file order");
        assert_eq!((t.ty, &t.dims, t.n_bytes), (ty, &dims, n_bytes), "{name}");
        assert_eq!(t.offset, built.offsets[i], "{name}");
        assert_eq!(t.n_bytes, built.sizes[i], "{name}");
        assert_eq!(t.offset % 32, 0, "{name}");
        assert_eq!(t.n_elements(), dims.iter().product::<u64>());
        assert_eq!(t.n_cols(), dims[0] as usize);
        assert_eq!(t.n_rows(), dims[1..].iter().product::<u64>() as usize);
        let r = t.file_range(g.data_offset);
        assert_eq!(r.start, g.data_offset + t.offset);
        assert_eq!(r.end - r.start, n_bytes);
        let data = g.tensor_data(&built.bytes, t).unwrap();
        assert_eq!(data, &built.bytes[r.start as usize..r.end as usize]);
        // The writer fills data with (i * 31 + 7) from the start of the data section.
        assert_eq!(data[0], (t.offset as usize * 31 + 7) as u8, "{name}");
    }
    assert_eq!(g.tensors[1].offset, 224, "204 bytes rounded up to 32");
    assert_eq!(g.tensors[2].offset, 256);
    assert_eq!(g.data_len(), 256 + 288);
    assert_eq!(g.data_offset + g.data_len(), built.bytes.len() as u64);
    assert!(g.tensor("nope").is_none());
    // tensor_data on a shorter buffer is an error, not a panic.
    let short = &built.bytes[..built.bytes.len() - 1];
    let e = g.tensor_data(short, &g.tensors[2]).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadGguf);
    assert!(e.message.contains("blk.0.ffn.weight") && e.message.contains("past the end"), "{}", e.message);
}

#[test]
fn tensor_layout_custom_alignment() {
    for align in [1u32, 8, 64, 4096] {
        let built = Builder::new()
            .alignment(align)
            .tensor("a", &[3], GgmlType::F16)
            .tensor("b", &[32, 2], GgmlType::Q4_0)
            .tensor("c", &[7], GgmlType::F32)
            .build();
        let g = Gguf::from_bytes(&built.bytes).unwrap();
        let a = align as u64;
        assert_eq!(g.alignment, a);
        assert_eq!(g.get_u64("general.alignment"), Some(a));
        assert_eq!(g.data_offset, (built.header_end as u64).div_ceil(a) * a, "align {align}");
        let offsets: Vec<u64> = g.tensors.iter().map(|t| t.offset).collect();
        assert_eq!(offsets, built.offsets, "align {align}");
        let want_b = 6u64.div_ceil(a) * a;
        assert_eq!(offsets[1], want_b, "F16 [3] is 6 bytes, next tensor at the next multiple of {align}");
        assert_eq!(offsets[2], (want_b + 36).div_ceil(a) * a);
        for t in &g.tensors {
            assert_eq!(t.offset % a, 0);
            g.tensor_data(&built.bytes, t).unwrap();
        }
    }
}

#[test]
fn empty_file_and_zero_size_tensors() {
    let bytes = Builder::new().bytes();
    assert_eq!(bytes.len(), 24);
    let g = Gguf::from_bytes(&bytes).unwrap();
    assert!(g.metadata().is_empty() && g.tensors.is_empty());
    assert_eq!(g.data_offset, 32);
    assert_eq!(g.data_len(), 0);

    // An empty tensor sharing an offset with a real one does not overlap it, in either order.
    for order in [[0, 1], [1, 0]] {
        let specs = [("empty", vec![0u64, 4]), ("full", vec![4u64])];
        let mut b = Builder::new();
        for i in order {
            b = b.raw_tensor(specs[i].0.as_bytes(), &specs[i].1, 0, Some(0));
        }
        let g = Gguf::from_bytes(&b.bytes()).unwrap();
        assert_eq!(g.tensor("empty").unwrap().n_bytes, 0);
        assert_eq!(g.tensor("full").unwrap().n_bytes, 16);
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing from a prefix.

fn same(a: &Gguf, b: &Gguf) {
    assert_eq!(a.version, b.version);
    assert_eq!(a.metadata(), b.metadata());
    assert_eq!(a.tensors, b.tensors);
    assert_eq!((a.alignment, a.data_offset), (b.alignment, b.data_offset));
}

#[test]
fn every_prefix_needs_more_or_completes() {
    for version in [2, 3] {
        let built = small_file(version).build();
        let file = &built.bytes;
        let full = Gguf::from_bytes(file).unwrap();
        for k in 0..=file.len() {
            match gguf::parse(&file[..k], None) {
                Ok(Parsed::NeedMore { total }) => {
                    assert!(total > k as u64, "prefix {k}: NeedMore {{ total: {total} }} is not more");
                    assert!(total <= built.header_end as u64, "prefix {k}: asks {total} past the header");
                }
                Ok(Parsed::Complete(g)) => {
                    assert!(k >= built.header_end, "prefix {k} completed before the header ends");
                    same(&g, &full);
                }
                Err(e) => panic!("prefix {k}: {e}"),
            }
            // Knowing the file length changes nothing while the prefix is short...
            match gguf::parse(&file[..k], Some(file.len() as u64)) {
                Ok(Parsed::NeedMore { .. }) => assert!(k < built.header_end),
                Ok(Parsed::Complete(g)) => same(&g, &full),
                Err(e) => panic!("prefix {k} of a {} byte file: {e}", file.len()),
            }
            // ...but a file that is only this long is truncated.
            if k < file.len() {
                let e = gguf::parse(&file[..k], Some(k as u64)).unwrap_err();
                assert_eq!(e.code, ErrorCode::BadGguf);
                assert!(e.message.contains("truncated"), "length {k}: {}", e.message);
                assert_eq!(err_of(&file[..k]), e, "from_bytes agrees with parse");
            }
        }
    }
}

#[test]
fn feeding_requested_bytes_converges() {
    let built = small_file(3).build();
    let file = &built.bytes;
    for start in [0, 1, 7, 24, 100, 333] {
        let (mut k, mut rounds) = (start, 0);
        let g = loop {
            rounds += 1;
            assert!(rounds < 100, "no convergence from {start}");
            match gguf::parse(&file[..k], None).unwrap() {
                Parsed::Complete(g) => break g,
                Parsed::NeedMore { total } => k = total as usize,
            }
        };
        same(&g, &Gguf::from_bytes(file).unwrap());
        assert!(k <= built.header_end);
    }
}

#[test]
fn need_more_counts_what_the_rest_needs_at_least() {
    // 1000 strings of 8 bytes: after the array header, at least 1000 more u64 lengths are needed.
    let strings: Vec<String> = (0..1000).map(|i| format!("tok{i:05}")).collect();
    let built = Builder::new().kv("v", Value::Array(Array::String(strings.into()))).build();
    let array_start = 24 + 8 + 1 + 4; // header, key, type
    let k = array_start + 12;
    let Parsed::NeedMore { total } = gguf::parse(&built.bytes[..k], None).unwrap() else { panic!() };
    assert_eq!(total, k as u64 + 1000 * 8);
    assert!(total <= built.header_end as u64);
}

// ---------------------------------------------------------------------------------------------
// Hostile files.

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend(version.to_le_bytes());
    v.extend(n_tensors.to_le_bytes());
    v.extend(n_kv.to_le_bytes());
    v
}

fn le(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn bad_magic_and_versions() {
    let mut f = small_file(3).bytes();
    f[..4].copy_from_slice(b"GGML");
    expect_err(&f, ErrorCode::BadGguf, &["not a GGUF file", "GGML"]);
    expect_err(b"\x7fELF\x02\x01\x01\0", ErrorCode::BadGguf, &["not a GGUF file", "7f 45 4c 46"]);
    expect_err(&header(4, 0, 0), ErrorCode::BadGguf, &["unknown GGUF version 4"]);
    expect_err(&header(0, 0, 0), ErrorCode::BadGguf, &["unknown GGUF version 0"]);
    expect_err(&header(1, 0, 0), ErrorCode::BadGguf, &["version 1", "obsolete"]);
    let mut be = header(3, 0, 0);
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    expect_err(&be, ErrorCode::BadGguf, &["big-endian"]);
    be[4..8].copy_from_slice(&2u32.to_be_bytes());
    expect_err(&be, ErrorCode::BadGguf, &["big-endian"]);
    // Errors are found from a prefix too, as soon as the bytes are there.
    assert!(gguf::parse(&header(4, 0, 0)[..8], None).is_err());
}

#[test]
fn truncated_files() {
    let built = small_file(3).build();
    let f = &built.bytes;
    expect_err(&[], ErrorCode::BadGguf, &["truncated"]);
    expect_err(&f[..3], ErrorCode::BadGguf, &["truncated"]);
    expect_err(&f[..20], ErrorCode::BadGguf, &["truncated"]);
    expect_err(&f[..built.header_end - 1], ErrorCode::BadGguf, &["truncated"]);
    // Header complete, tensor data cut short: the last tensor is named.
    expect_err(&f[..built.header_end], ErrorCode::BadGguf, &["tok.weight", "past the end", "truncated"]);
    expect_err(&f[..f.len() - 1], ErrorCode::BadGguf, &["blk.0.ffn.weight", "past the end"]);
}

#[test]
fn absurd_counts_and_lengths() {
    for n in [u64::MAX, 1 << 40, gguf::MAX_TENSORS + 1] {
        expect_err(&header(3, n, 0), ErrorCode::BadGguf, &[&n.to_string(), "tensors", "limit"]);
    }
    for n in [u64::MAX, gguf::MAX_KV + 1] {
        expect_err(&header(3, 0, n), ErrorCode::BadGguf, &[&n.to_string(), "metadata entries", "limit"]);
    }
    // Counts under the limit in a file too short for them: truncated, not slow, not allocating.
    let (r, big) = largest_alloc(|| err_of(&header(3, gguf::MAX_TENSORS, gguf::MAX_KV)));
    assert!(r.message.contains("truncated"), "{}", r.message);
    assert!(big < 4096, "allocated {big} bytes for claimed counts");

    // Key length, value string length, tensor name length.
    let mut f = header(3, 0, 1);
    f.extend((1u64 << 40).to_le_bytes());
    expect_err(&f, ErrorCode::BadGguf, &["metadata key #0", "string length 1099511627776", "limit"]);
    let f = le(&[&header(3, 0, 1), &2u64.to_le_bytes(), b"k1", &8u32.to_le_bytes(), &u64::MAX.to_le_bytes()]);
    expect_err(&f, ErrorCode::BadGguf, &["'k1'", "string length 18446744073709551615"]);
    let f = le(&[&header(3, 1, 0), &(gguf::MAX_STRING_LEN + 1).to_le_bytes()]);
    expect_err(&f, ErrorCode::BadGguf, &["tensor #0 name", "string length"]);

    // Array length, for a fixed-size and a variable-size element type.
    for elem in [6u32, 8] {
        let f = le(&[&header(3, 0, 1), &3u64.to_le_bytes(), b"arr", &9u32.to_le_bytes(), &elem.to_le_bytes(),
            &(1u64 << 50).to_le_bytes()]);
        expect_err(&f, ErrorCode::BadGguf, &["'arr'", "array length 1125899906842624", "limit"]);
    }
    // A length under the cap with nothing behind it: truncated, nothing allocated up front.
    for elem in [0u32, 4, 7, 8, 9, 12] {
        let f = le(&[&header(3, 0, 1), &3u64.to_le_bytes(), b"arr", &9u32.to_le_bytes(), &elem.to_le_bytes(),
            &gguf::MAX_ARRAY_LEN.to_le_bytes(), &[0u8; 64]]);
        let (e, big) = largest_alloc(|| err_of(&f));
        assert!(e.message.contains("truncated"), "{}", e.message);
        assert!(big < 4096, "element type {elem}: allocated {big} bytes for a claimed length");
        let (r, big) = largest_alloc(|| gguf::parse(&f, None).unwrap());
        assert!(matches!(r, Parsed::NeedMore { total } if total > f.len() as u64));
        assert!(big < 4096, "element type {elem}: allocated {big} bytes for a claimed length");
    }
    let (r, big) = largest_alloc(|| gguf::parse(&header(3, 0, 0)[..10], None));
    assert!(matches!(r, Ok(Parsed::NeedMore { total: 24 })), "{r:?}");
    assert!(big < 4096);
}

#[test]
fn bad_values() {
    // Nesting one level deeper than allowed.
    let mut a = Array::U8(vec![1]);
    for _ in 0..MAX_ARRAY_DEPTH {
        a = Array::Array(vec![a]);
    }
    let f = Builder::new().kv("deep", Value::Array(a)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'deep'", "nested deeper than 8"]);

    // Invalid UTF-8 in a key, a string value, a string array element and a tensor name.
    let f = Builder::new().raw_kv(b"ke\xffy", 0, vec![1]).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["metadata key #0", "UTF-8"]);
    let mut v = Vec::new();
    put_str(&mut v, b"\xc3\x28");
    let f = Builder::new().raw_kv(b"s", 8, v.clone()).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'s'", "UTF-8"]);
    let f = Builder::new().raw_kv(b"sa", 9, le(&[&8u32.to_le_bytes(), &1u64.to_le_bytes(), &v])).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'sa'", "UTF-8"]);
    let f = Builder::new().raw_tensor(b"w\xed\xa0\x80", &[4], 0, None).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["tensor #0 name", "UTF-8"]);

    // Bool bytes other than 0 and 1, alone and in an array.
    let f = Builder::new().raw_kv(b"flag", 7, vec![2]).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'flag'", "bool byte is 2"]);
    let f = Builder::new().raw_kv(b"flags", 9, le(&[&7u32.to_le_bytes(), &3u64.to_le_bytes(), &[1, 0, 0xff]])).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'flags'", "bool byte is 255", "index 2"]);

    // Unknown value types: of an entry, of array elements.
    let f = Builder::new().raw_kv(b"odd", 13, vec![0; 8]).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'odd'", "unknown value type 13"]);
    let f = Builder::new().raw_kv(b"odd.arr", 9, le(&[&99u32.to_le_bytes(), &0u64.to_le_bytes()])).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'odd.arr'", "unknown value type 99"]);

    // Duplicate keys.
    let f = Builder::new().kv("general.name", Value::U8(1)).kv("general.name", Value::U8(1)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'general.name'", "appears twice"]);
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48, 1000] {
        let f = Builder::new().alignment(a).tensor("w", &[4], GgmlType::F32).bytes();
        expect_err(&f, ErrorCode::BadGguf, &["general.alignment", "power-of-two", &a.to_string()]);
    }
    let f = Builder::new().kv("general.alignment", Value::U64(64)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["general.alignment", "u32", "got u64 64"]);
    let f = Builder::new().kv("general.alignment", Value::Array(Array::U32(vec![32; 1000]))).bytes();
    let e = err_of(&f);
    assert!(e.message.len() < 200, "the message abbreviates the value: {}", e.message);
}

#[test]
fn bad_tensor_infos() {
    let w = |dims: &[u64], ty: u32, offset: Option<u64>| Builder::new().raw_tensor(b"w", dims, ty, offset);

    expect_err(&w(&[], 0, None).bytes(), ErrorCode::BadGguf, &["'w'", "0 dimensions"]);
    expect_err(&w(&[1, 1, 1, 1, 1], 0, None).bytes(), ErrorCode::BadGguf, &["'w'", "5 dimensions"]);
    let mut f = w(&[1], 0, None).bytes();
    f[24 + 8 + 1..24 + 8 + 1 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_err(&f, ErrorCode::BadGguf, &["'w'", "4294967295 dimensions"]);

    expect_err(&w(&[1 << 32, 1 << 32], 0, None).bytes(), ErrorCode::BadGguf, &["'w'", "overflow"]);
    expect_err(&w(&[1 << 62, 4], 0, None).bytes(), ErrorCode::BadGguf, &["'w'", "overflow"]);
    // Within i64 elements but not within i64 bytes.
    expect_err(&w(&[1 << 62], 0, None).bytes(), ErrorCode::BadGguf, &["'w'", "overflow"]);
    // A dimension that is negative as ggml's int64 is out of range, even next to a 0.
    expect_err(&w(&[0, u64::MAX], 0, None).bytes(), ErrorCode::BadGguf, &["'w'", "18446744073709551615"]);

    expect_err(&w(&[33, 2], 8, None).bytes(), ErrorCode::BadGguf, &["'w'", "row length 33", "Q8_0", "32"]);
    expect_err(&w(&[128], 14, None).bytes(), ErrorCode::BadGguf, &["'w'", "row length 128", "Q6_K", "256"]);

    expect_err(&w(&[4], 0, Some(16)).bytes(), ErrorCode::BadGguf, &["'w'", "offset 16", "alignment 32"]);
    let f = Builder::new().alignment(64).raw_tensor(b"w", &[4], 0, Some(32)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'w'", "offset 32", "alignment 64"]);

    expect_err(&w(&[4], 99, None).bytes(), ErrorCode::BadGguf, &["'w'", "99"]);
    expect_err(&w(&[4], u32::MAX, None).bytes(), ErrorCode::BadGguf, &["'w'", "4294967295"]);
    expect_err(&w(&[256], 16, None).bytes(), ErrorCode::UnsupportedQuant, &["'w'", "IQ2_XXS", "16"]);
    expect_err(&w(&[32], 39, None).bytes(), ErrorCode::UnsupportedQuant, &["'w'", "MXFP4"]);
    // The error holds for a prefix parse too.
    let f = w(&[256], 16, None).bytes();
    assert_eq!(gguf::parse(&f, None).unwrap_err().code, ErrorCode::UnsupportedQuant);
}

#[test]
fn bad_tensor_layout() {
    // Data past the end of the file: offset beyond, and a size beyond.
    let f = Builder::new().tensor("a", &[8], GgmlType::F32).raw_tensor(b"b", &[8], 0, Some(1 << 30)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'b'", "past the end"]);
    let mut f = Builder::new().tensor("a", &[8], GgmlType::F32).bytes();
    f.truncate(f.len() - 4);
    expect_err(&f, ErrorCode::BadGguf, &["'a'", "past the end", &format!("{} bytes", f.len())]);

    // Offsets near u64::MAX are rejected even when the file length is unknown.
    let near_end = u64::MAX - 31;
    let f = Builder::new().raw_tensor(b"far", &[64], 0, Some(near_end)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'far'"]);
    let header_only = &f[..f.len().min(200)];
    let e = gguf::parse(header_only, None).unwrap_err();
    assert!(e.message.contains("'far'") && e.message.contains("overflows"), "{}", e.message);

    // Overlap: b starts inside a; also the same offset.
    let f = Builder::new()
        .raw_tensor(b"a", &[16], 0, Some(0))
        .raw_tensor(b"b", &[16], 0, Some(32))
        .raw_tensor(b"c", &[4], 0, Some(96))
        .bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'a'", "'b'", "overlap"]);
    let f = Builder::new().raw_tensor(b"x", &[4], 0, Some(64)).raw_tensor(b"y", &[4], 0, Some(64)).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'x'", "'y'", "overlap"]);
    // Adjacent is fine.
    let f = Builder::new().raw_tensor(b"a", &[8], 0, Some(0)).raw_tensor(b"b", &[8], 0, Some(32)).bytes();
    Gguf::from_bytes(&f).unwrap();

    // Duplicate names.
    let f = Builder::new().tensor("w", &[4], GgmlType::F32).tensor("w", &[4], GgmlType::F32).bytes();
    expect_err(&f, ErrorCode::BadGguf, &["'w'", "appears twice"]);
}

// ---------------------------------------------------------------------------------------------
// Mutations: never panic, never hang, never allocate from a claimed size.

/// splitmix64: tiny, seedable, good enough to pick bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_and_truncated_files_never_panic() {
    let base = small_file(3).bytes();
    let header_end = small_file(3).build().header_end;
    let interesting: [u64; 10] = [0, 1, 2, 13, 0xff, 1 << 24, (1 << 24) + 1, 1 << 32, i64::MAX as u64, u64::MAX];
    let mut rng = Rng(0x5eed_6767_0001);
    let (mut ok, mut errors) = (0, 0);
    let started = Instant::now();
    for case in 0..4000 {
        let mut f = base.clone();
        let n_mut = 1 + rng.below(4);
        for _ in 0..n_mut {
            // Most mutations hit the header, where the parser looks.
            let limit = if rng.below(8) == 0 { f.len() } else { header_end.min(f.len()) };
            let at = rng.below(limit);
            match rng.below(4) {
                0 => f[at] = rng.next() as u8,
                1 => f[at] ^= 1 << rng.below(8),
                2 => {
                    let v = interesting[rng.below(interesting.len())];
                    let w = [1usize, 4, 8][rng.below(3)].min(f.len() - at);
                    f[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
                }
                _ => f.truncate(at.max(1)),
            }
        }
        if rng.below(4) == 0 {
            f.truncate(rng.below(f.len() + 1));
        }
        let t0 = Instant::now();
        let ((full, prefix), big) = largest_alloc(|| {
            // Accepted files must also be safe to use: ranges, data slices, summaries.
            let full = std::panic::catch_unwind(|| {
                Gguf::from_bytes(&f).map(|g| {
                    let _ = g.data_len();
                    for t in &g.tensors {
                        let _ = (t.file_range(g.data_offset), t.n_elements(), t.n_rows());
                        assert_eq!(g.tensor_data(&f, t).unwrap().len() as u64, t.n_bytes);
                    }
                    g.metadata().iter().map(|(_, v)| v.summary(8).len()).sum::<usize>()
                })
            });
            let k = rng.below(f.len() + 1);
            let prefix = std::panic::catch_unwind(|| gguf::parse(&f[..k], None).map(|_| ()));
            (full, prefix)
        });
        let dt = t0.elapsed();
        let (Ok(full), Ok(_)) = (full, prefix) else {
            panic!("case {case}: panicked on {} bytes: {:02x?}", f.len(), f);
        };
        assert!(dt < Duration::from_secs(2), "case {case}: took {dt:?}");
        assert!(big <= 1 << 20, "case {case}: a single allocation of {big} bytes for a {} byte file", f.len());
        match full {
            Ok(_) => ok += 1,
            Err(e) => {
                errors += 1;
                assert!(
                    matches!(e.code, ErrorCode::BadGguf | ErrorCode::UnsupportedQuant),
                    "case {case}: {e}"
                );
                assert!(!e.message.is_empty() && e.message.len() < 1000, "case {case}: {e}");
            }
        }
    }
    eprintln!("mutations: {ok} parsed, {errors} rejected in {:?}", started.elapsed());
    assert!(errors > 1000 && ok > 10, "the mutations exercise both outcomes ({ok} ok, {errors} errors)");
}

// ---------------------------------------------------------------------------------------------
// The real model: Gemma 3 270M, Q4_K_M, as converted by llama.cpp.

#[test]
fn real_model_parses() {
    let file = common::model_bytes();
    let g = Gguf::from_bytes(file).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.architecture(), Some("gemma3"));
    assert_eq!(g.get_u64("gemma3.block_count"), Some(18));
    assert_eq!(g.get_u64("gemma3.embedding_length"), Some(640));
    assert_eq!(g.alignment, 32);
    let vocab = g.get_array("tokenizer.ggml.tokens").and_then(Array::as_strings).unwrap();
    assert_eq!(vocab.len(), 262144);

    // 18 blocks of 13 tensors (4 attention weights, 2 QK norms, 4 norms, 3 FFN weights),
    // plus token_embd and output_norm.
    assert_eq!(g.tensors.len(), 18 * 13 + 2);
    let emb = g.tensor("token_embd.weight").unwrap();
    assert_eq!((emb.ty, emb.dims.as_slice()), (GgmlType::Q8_0, &[640u64, 262144][..]));
    assert_eq!(emb.n_bytes, 262144 * 640 / 32 * 34);
    for i in 0..18 {
        assert!(g.tensor(&format!("blk.{i}.attn_q.weight")).is_some(), "block {i}");
    }
    // Counts and offsets as gguf-py 0.19 (GGUFReader) reports them for this file.
    let count = |ty| g.tensors.iter().filter(|t| t.ty == ty).count();
    let types = [GgmlType::F32, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];
    assert_eq!(types.map(count), [109, 81, 10, 27, 9], "tensors per type {types:?}");
    assert_eq!(g.data_offset, 6525120);
    assert_eq!(g.data_offset + emb.offset, 6527680);

    // The last tensor ends exactly at the end of the file.
    assert_eq!(g.data_offset + g.data_len(), file.len() as u64);
    for t in &g.tensors {
        assert_eq!(g.tensor_data(file, t).unwrap().len() as u64, t.n_bytes);
    }
}

#[test]
fn real_model_parses_from_a_prefix() {
    let file = common::model_bytes();
    let full = Gguf::from_bytes(file).unwrap();
    let mut k = 64 << 10;
    let Parsed::NeedMore { total } = gguf::parse(&file[..k], None).unwrap() else {
        panic!("the header is larger than 64 KiB")
    };
    assert!(total > k as u64 && total <= full.data_offset);
    // Feed exactly what is asked for: the lower bound counts the rest of the vocabulary, so this
    // takes a few rounds, not one per token.
    let mut rounds = 0;
    let g = loop {
        rounds += 1;
        assert!(rounds <= 64, "not complete after {rounds} rounds, at {k} bytes");
        match gguf::parse(&file[..k], Some(file.len() as u64)).unwrap() {
            Parsed::Complete(g) => break g,
            Parsed::NeedMore { total } => {
                assert!(total > k as u64 && total <= full.data_offset);
                k = total as usize;
            }
        }
    };
    eprintln!("real model: header complete after {rounds} rounds at {k} bytes (data at {})", full.data_offset);
    same(&g, &full);
}
