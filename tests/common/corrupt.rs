//! Corrupted copies of real model files (no file system: shared with the wasm32 tests).

/// `file` (a GGUF) with the f16 scale of the first block of `blk.{middle}.{tensor}.weight` set to
/// NaN: corrupt weights in one middle layer, which reach the logits as NaN only if no step on the
/// way turns NaN into a finite value (an activation quantizer that drops it, a `max` that skips it).
pub fn with_nan_block_scale(file: &[u8], tensor: &str) -> Vec<u8> {
    use browser_llm::gguf::Gguf;
    use browser_llm::quant::GgmlType;
    let g = Gguf::from_bytes(file).unwrap();
    let n_layer = g.get_u64(&format!("{}.block_count", g.architecture().unwrap())).unwrap();
    let name = format!("blk.{}.{tensor}.weight", n_layer / 2);
    let t = g.tensor(&name).unwrap_or_else(|| panic!("no tensor {name}"));
    // Where the block's f16 scale `d` lies in its bytes.
    let at = match t.ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q5_K => 0,
        GgmlType::Q6_K => t.ty.type_size() - 2,
        ty => panic!("{name}: no scale position known for {ty:?}"),
    };
    let start = (g.data_offset + t.offset) as usize + at;
    let mut out = file.to_vec();
    out[start..start + 2].copy_from_slice(&0x7e00u16.to_le_bytes()); // an f16 quiet NaN
    out
}
