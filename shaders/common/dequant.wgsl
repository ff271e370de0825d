// Decode helpers for one weight type: `dq4(row_byte, e)` gives elements e..e+3 (e a multiple of
// 4) of the row starting at byte `row_byte`, `dq1` one element. The type's own helper (one file
// per format, the `wgsl` column of the format table in src/quant/types.rs) is included through
// the helper define that `ops::weight_defines` sets; `W_QUANT` marks the block formats.
// Every format reads raw GGUF bytes from `wq: array<u32>`.
#include "common/bytes.wgsl"
#include W_HELPER
#ifdef W_QUANT
// Block sizes are multiples of 4, so a group of 4 never straddles blocks.
fn dq1(rowb: u32, e: u32) -> f32 {
    return dq4(rowb, e & ~3u)[e & 3u];
}
#endif
