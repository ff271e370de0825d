//! `browser-llm inspect --model PATH`: metadata and tensor table.
//!
//! ```text
//! GGUF v3, 253113024 bytes (241.4 MiB); 33 metadata entries, 236 tensors; alignment 32, tensor data at 6525120
//!
//! metadata
//!   KEY                     TYPE           VALUE
//!   general.architecture    string         "gemma3"
//!   tokenizer.ggml.tokens   array[string]  [string; 262144] ["<pad>", "<eos>", …]
//!
//! tensors (OFFSET is from the start of the file)
//!   NAME                 TYPE  DIMS           BYTES      OFFSET
//!   token_embd.weight    Q8_0  640 x 262144   89128960   6527680
//!
//! totals by type
//!   TYPE  TENSORS  ELEMENTS  BYTES  SIZE
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use browser_llm::gguf::{Gguf, Value};

use crate::args::ModelArg;
use crate::CliResult;

/// Array items shown per metadata value.
const MAX_ITEMS: usize = 8;

pub fn run(args: &ModelArg) -> CliResult {
    let bytes = crate::read_model(&args.model)?;
    let g = Gguf::from_bytes(&bytes)?;
    let report = render(&g, bytes.len() as u64);
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    Ok(())
}

fn render(g: &Gguf, file_len: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "GGUF v{}, {file_len} bytes ({}); {} metadata entries, {} tensors; alignment {}, tensor data at {}",
        g.version,
        human(file_len),
        g.metadata().len(),
        g.tensors.len(),
        g.alignment,
        g.data_offset
    );

    out.push_str("\nmetadata\n");
    let rows: Vec<[String; 3]> = g
        .metadata()
        .iter()
        .map(|(k, v)| [k.clone(), type_of(v), v.summary(MAX_ITEMS)])
        .collect();
    table(&mut out, ["KEY", "TYPE", "VALUE"], &rows, &[]);

    out.push_str("\ntensors (OFFSET is from the start of the file)\n");
    let rows: Vec<[String; 5]> = g
        .tensors
        .iter()
        .map(|t| {
            let dims = t.dims.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
            let offset = g.data_offset + t.offset;
            [t.name.clone(), t.ty.to_string(), dims, t.n_bytes.to_string(), offset.to_string()]
        })
        .collect();
    table(&mut out, ["NAME", "TYPE", "DIMS", "BYTES", "OFFSET"], &rows, &[3, 4]);

    out.push_str("\ntotals by type\n");
    // (tensors, elements, bytes) per type, in ggml id order.
    let mut per_type: BTreeMap<(u32, &str), (u64, u64, u64)> = BTreeMap::new();
    for t in &g.tensors {
        let e = per_type.entry((t.ty.id(), t.ty.name())).or_default();
        *e = (e.0 + 1, e.1 + t.n_elements(), e.2 + t.n_bytes);
    }
    let total = per_type.values().fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    let rows: Vec<[String; 5]> = per_type
        .iter()
        .map(|(&(_, name), c)| (name, c))
        .chain([("total", &total)])
        .map(|(name, &(n, elems, bytes))| {
            [name.to_string(), n.to_string(), elems.to_string(), bytes.to_string(), human(bytes)]
        })
        .collect();
    table(&mut out, ["TYPE", "TENSORS", "ELEMENTS", "BYTES", "SIZE"], &rows, &[1, 2, 3, 4]);
    out
}

/// `u32`, `string`, or `array[f32]` (arrays of arrays are `array[array]`).
fn type_of(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("array[{}]", a.type_name()),
        v => v.type_name().to_string(),
    }
}

/// Columns padded to their widest cell (counted in chars); `right` columns are right-aligned.
/// The last column is not padded, so long values do not drag trailing spaces.
fn table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[String; N]], right: &[usize]) {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let head = head.map(String::from);
    for r in std::iter::once(&head).chain(rows) {
        out.push_str("  ");
        for (i, c) in r.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            let last = i + 1 == N;
            if right.contains(&i) {
                out.extend(std::iter::repeat(' ').take(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if !last {
                    out.extend(std::iter::repeat(' ').take(pad));
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        out.push('\n');
    }
}

/// `1.5 KiB`, `241.4 MiB`: for people; the exact byte count is printed beside it.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
