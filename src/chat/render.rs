//! One chat-template rendering: minijinja with fuel (an endless template is an error, not a hang),
//! a bounded output, a bounded `tojson` indent and a memory budget (`crate::budget`: going past it
//! aborts). Everything the template sees comes in one serializable [`RenderJob`] and everything it
//! gives back in a [`RenderReply`].
//!
//! This file depends on minijinja, serde, serde_json and the budget allocator only: the crate
//! renders with it natively, and the template-renderer wasm module (`examples/template_renderer.rs`,
//! built into the npm package) includes this same file, so that in the browser a template renders
//! in a small module instance of its own, where the budget's abort takes only that instance with
//! it ([`super::set_isolated_renderer`]).

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

/// Instructions a template may execute before rendering fails (a few thousand per message is
/// plenty for every real template).
const FUEL: u64 = 2_000_000;

/// The largest `tojson(indent=N)` a template may ask for (real templates use 2 or 4).
const MAX_JSON_INDENT: usize = 16;

/// A template, what it sees, and its bounds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenderJob {
    pub template: String,
    /// `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and (when given) `tools`.
    pub context: serde_json::Value,
    /// Bytes of text the template may write.
    pub max_output: usize,
    /// Bytes of heap the render may hold.
    pub memory_budget: usize,
}

/// How a render ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RenderReply {
    Ok(String),
    /// Out of fuel.
    TooSlow,
    /// More than `max_output` bytes of text.
    TooLong,
    /// The template's own error (syntax, `raise_exception`, a bad operation), or invalid UTF-8.
    Failed(String),
    /// The renderer trapped (the memory budget, in the isolated renderer); set by the JS side.
    Trapped(String),
}

/// A `std::io::Write` sink that refuses to grow past `max` bytes.
struct Bounded {
    out: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            return Err(std::io::Error::other("output limit"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Render `job` here, in this module instance (past the memory budget the process aborts).
pub fn run(job: &RenderJob) -> RenderReply {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    // Hugging Face templates call `raise_exception` to reject conversations they cannot render.
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    // `tojson` with a bounded indent (an indent of 10^9 would allocate gigabytes per value).
    env.add_filter(
        "tojson",
        |v: &minijinja::Value, indent: Option<minijinja::Value>, args: minijinja::value::Kwargs| {
            let asked = match &indent {
                Some(i) => Some(i.clone()),
                None => args.peek::<Option<minijinja::Value>>("indent")?,
            };
            if let Some(n) = asked.and_then(|i| usize::try_from(i).ok()).filter(|&n| n > MAX_JSON_INDENT) {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson indent {n} is larger than {MAX_JSON_INDENT}"),
                ));
            }
            minijinja::filters::tojson(v, indent, args)
        },
    );
    let ctx = minijinja::Value::from(minijinja::value::Serde(&job.context));
    let out = crate::budget::limit(job.memory_budget, crate::budget::AbortReason::TemplateMemory, || {
        let mut out = Bounded { out: Vec::new(), max: job.max_output };
        env.template_from_str(&job.template).and_then(|t| t.render_captured_to(ctx, &mut out).map(drop)).map(|()| out.out)
    });
    match out {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => RenderReply::Ok(s),
            Err(_) => RenderReply::Failed("the template wrote invalid UTF-8".into()),
        },
        Err(e) => match e.kind() {
            ErrorKind::OutOfFuel => RenderReply::TooSlow,
            ErrorKind::WriteFailure => RenderReply::TooLong,
            _ => RenderReply::Failed(e.to_string()),
        },
    }
}
