//! What the JS runtime gives the module so that a trap cannot leave anything hanging (see
//! `src/js/runtime.js`, `armTraps`). A trap inside an asynchronous call happens in a microtask,
//! outside any JS `try`, so the promise of that call would never settle: the runtime races every
//! asynchronous call against its `trapped` promise, which it rejects when the module traps.
//!
//! - [`set_runtime_hooks`]: the JS side hands over `trapped` and an `onPanic(message)` callback.
//! - The panic hook (set at start) logs the panic as before and calls `onPanic` with the message
//!   while the instance is still consistent; the runtime fails every call in flight with it.
//!   Wasm has no unwinding: the trap follows.
//! - `render` renders chat templates in the template renderer's module ([`crate::chat::set_isolated_renderer`]).
//! - `trapped` also goes to storage: held Web Locks race their release against it, so a lock is
//!   freed when the module that held it traps ([`crate::storage::release_locks_on_trap`]).

use std::cell::RefCell;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

struct Hooks {
    on_panic: js_sys::Function,
}

thread_local! {
    // Set on the thread JS calls (the page's or the Worker's); the CPU pool's threads have none.
    static HOOKS: RefCell<Option<Hooks>> = const { RefCell::new(None) };
}

/// Called once per instance by the JS runtime, before anything else runs. `render` (a function
/// from a JSON `chat::RenderJob` to a JSON `chat::RenderReply`, or undefined) renders chat
/// templates in the template renderer's module (`examples/template_renderer.rs`), where a template
/// past its memory budget traps a small instance of its own instead of this one.
#[wasm_bindgen(js_name = setRuntimeHooks)]
pub fn set_runtime_hooks(trapped: js_sys::Promise, on_panic: js_sys::Function, render: JsValue) {
    crate::storage::release_locks_on_trap(trapped);
    HOOKS.with(|h| *h.borrow_mut() = Some(Hooks { on_panic }));
    let render = render.dyn_into::<js_sys::Function>().ok();
    crate::chat::set_isolated_renderer(render.map(|f| -> crate::chat::IsolatedRenderer {
        Box::new(move |job: &crate::chat::RenderJob| {
            let Ok(json) = serde_json::to_string(job) else {
                return crate::chat::RenderReply::Failed("the render job could not be written".into());
            };
            match f.call1(&JsValue::NULL, &JsValue::from_str(&json)) {
                Ok(v) => v
                    .as_string()
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_else(|| crate::chat::RenderReply::Failed("the template renderer gave no answer".into())),
                Err(e) => crate::chat::RenderReply::Failed(format!("the template renderer failed: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))),
            }
        })
    }));
}

/// The panic hook: log as `console_error_panic_hook` does, then tell the runtime.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let message = match info.location() {
            Some(l) => format!("{what}, at {}:{}", l.file(), l.line()),
            None => what,
        };
        let _ = HOOKS.try_with(|h| {
            if let Ok(h) = h.try_borrow() {
                if let Some(h) = h.as_ref() {
                    let _ = h.on_panic.call1(&JsValue::NULL, &JsValue::from_str(&message));
                }
            }
        });
    }));
}

/// Test-only fault injection (the `__panicAfterAwait` load option): a panic after an await, where
/// a trap happens in a microtask with no JS caller on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PanicAt {
    Load,
    Step,
}

impl PanicAt {
    pub fn parse(s: &str) -> crate::error::Result<PanicAt> {
        match s {
            "load" => Ok(PanicAt::Load),
            "step" => Ok(PanicAt::Step),
            _ => Err(crate::error::Error::invalid_argument(format!("__panicAfterAwait must be \"load\" or \"step\", got {s:?}"))),
        }
    }

    /// Yield to the event loop once, then panic: the rest of the call runs from a microtask.
    pub async fn fire(self) -> ! {
        let _ = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::resolve(&JsValue::UNDEFINED)).await;
        panic!("test fault: a panic after an await in {self:?} (the __panicAfterAwait load option)");
    }
}
