//! Tool calling for chat generation, all of it in one place: a request's `tools` /
//! `tool_choice` / `parallel_tool_calls` checked ([`ToolSettings`]), the grammar that forces a
//! call when one is required, and the model's calls read back out of its text, whole
//! ([`parse_tool_calls`]) or as it streams ([`ToolCallStream`]). Calls are written in the Hermes
//! format, which `super::prepare_tools` teaches templates without tools and ChatML-family models
//! are trained on:
//!
//! ```text
//! <tool_call>
//! {"name": "get_weather", "arguments": {"city": "Paris"}}
//! </tool_call>
//! ```

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::holdback::held_back;

/// The markup around one call.
pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";

const BAD_TOOL: &str = "each tool must be {type: \"function\", function: {name, description?, parameters?}}";
const BAD_CHOICE: &str = "tool_choice must be \"none\", \"auto\", \"required\" or {type: \"function\", function: {name}}";

/// What `tool_choice` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// Calls are not parsed: the reply is text.
    None,
    /// The model may call tools.
    Auto,
    /// The model must call one (or, with parallel calls, several) of the tools.
    Required,
    /// The model must call this tool.
    Function(String),
}

/// The function names of OpenAI's `tools` array, each tool checked to be
/// `{type: "function", function: {name, ...}}` with a name (`INVALID_ARGUMENT` otherwise).
pub(super) fn tool_names(list: &[Value]) -> Result<Vec<String>> {
    list.iter()
        .map(|t| {
            (t.get("type").and_then(Value::as_str) == Some("function"))
                .then(|| t.pointer("/function/name").and_then(Value::as_str))
                .flatten()
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .ok_or_else(|| Error::invalid_argument(BAD_TOOL))
        })
        .collect()
}

/// A request's tool settings, checked.
#[derive(Clone, Debug)]
pub struct ToolSettings {
    /// OpenAI's `tools` array, as given.
    pub tools: Value,
    pub choice: ToolChoice,
    pub parallel: bool,
    names: Vec<String>,
}

impl ToolSettings {
    /// The settings of a request (`tools`, `tool_choice`, `parallel_tool_calls`, as OpenAI spells
    /// them); `None` without tools. Errors are `INVALID_ARGUMENT`.
    pub fn from_request(tools: Option<&Value>, choice: Option<&Value>, parallel: Option<bool>) -> Result<Option<ToolSettings>> {
        let choice = choice.filter(|c| !c.is_null());
        let list = match tools {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) if a.is_empty() => None,
            Some(Value::Array(a)) => Some(a),
            Some(_) => return Err(Error::invalid_argument("tools must be an array")),
        };
        let Some(list) = list else {
            return match choice {
                None => Ok(None),
                Some(Value::String(s)) if s == "none" || s == "auto" => Ok(None),
                Some(_) => Err(Error::invalid_argument("tool_choice needs tools")),
            };
        };
        let names = tool_names(list)?;
        let choice = match choice {
            None => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                _ => return Err(Error::invalid_argument(BAD_CHOICE)),
            },
            Some(c) => {
                let name = (c.get("type").and_then(Value::as_str) == Some("function"))
                    .then(|| c.pointer("/function/name").and_then(Value::as_str))
                    .flatten()
                    .ok_or_else(|| Error::invalid_argument(BAD_CHOICE))?;
                if !names.iter().any(|n| n == name) {
                    return Err(Error::invalid_argument(format!("tool_choice names \"{name}\", which is not in tools")));
                }
                ToolChoice::Function(name.to_string())
            }
        };
        Ok(Some(ToolSettings { tools: Value::Array(list.clone()), choice, parallel: parallel.unwrap_or(true), names }))
    }

    /// Whether the reply is read for calls (every choice but "none").
    pub fn parses_calls(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The grammar a reply must match when a call is required (`Required` or a named function),
    /// in llguidance's Lark dialect: one call, or several when calls may be parallel, whose
    /// arguments match the tool's JSON schema, written as the Hermes examples write it
    /// (`{"name": "f", "arguments": {...}}`) with no room for runaway whitespace.
    pub fn forced_grammar(&self) -> Option<String> {
        let tools: Vec<&Value> = match &self.choice {
            ToolChoice::Required => self.tools.as_array()?.iter().collect(),
            ToolChoice::Function(name) => {
                self.tools.as_array()?.iter().filter(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name)).collect()
            }
            _ => return None,
        };
        let variants: Vec<Value> = tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "type": "object",
                    "properties": {
                        "name": { "const": t.pointer("/function/name").cloned().unwrap_or(Value::Null) },
                        "arguments": t.pointer("/function/parameters").cloned().unwrap_or_else(|| serde_json::json!({ "type": "object" })),
                    },
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        let mut schema = if variants.len() == 1 { variants.into_iter().next()? } else { serde_json::json!({ "anyOf": variants }) };
        schema.as_object_mut()?.insert(
            "x-guidance".into(),
            serde_json::json!({ "whitespace_flexible": false, "key_separator": ": ", "item_separator": ", " }),
        );
        let start = if self.parallel { "start: call (\"\\n\" call)*" } else { "start: call" };
        Some(format!("{start}\ncall: \"{OPEN}\\n\" %json {schema} \"\\n{CLOSE}\""))
    }
}

/// One call the model made, in OpenAI's shape (`arguments` is a JSON string).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParsedCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: ParsedFunction,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParsedFunction {
    pub name: String,
    pub arguments: String,
}

/// Call ids: `call_` and 24 hex digits, the n-th of a reply derived from a per-reply seed, so the
/// streamed and the whole reading of one reply name its calls alike.
fn call_id(seed: u64, n: usize) -> String {
    let mut rng = crate::sampling::Rng::new(seed.wrapping_add(n as u64));
    format!("call_{:016x}{:08x}", rng.next_u64(), rng.next_u64() as u32)
}

/// One `<tool_call>` body as a call, or `None` if it is not `{name, arguments}` of a known tool.
fn to_call(body: &str, names: &[String], id: String) -> Option<ParsedCall> {
    let v: Value = serde_json::from_str(body).ok()?;
    let name = v.get("name")?.as_str()?;
    if !names.iter().any(|n| n == name) {
        return None;
    }
    let args = match v.get("arguments").or_else(|| v.get("parameters")) {
        None | Some(Value::Null) => serde_json::json!({}),
        Some(a @ (Value::Object(_) | Value::Array(_))) => a.clone(),
        Some(_) => return None,
    };
    Some(ParsedCall { id, kind: "function", function: ParsedFunction { name: name.to_string(), arguments: args.to_string() } })
}

/// A reply split into text and calls: `(content, calls)`. A block that is not a well-formed call
/// of a known tool stays in the text; with calls, the text is trimmed, and `None` when empty.
pub fn parse_tool_calls(text: &str, settings: &ToolSettings, seed: u64) -> (Option<String>, Vec<ParsedCall>) {
    parse_with(text, &settings.names, seed)
}

fn parse_with(text: &str, names: &[String], seed: u64) -> (Option<String>, Vec<ParsedCall>) {
    let mut calls = Vec::new();
    let mut content = String::new();
    let mut at = 0;
    while let Some(open) = text[at..].find(OPEN).map(|i| at + i) {
        let Some(close) = text[open + OPEN.len()..].find(CLOSE).map(|i| open + OPEN.len() + i) else { break };
        let call = to_call(text[open + OPEN.len()..close].trim(), names, call_id(seed, calls.len()));
        content.push_str(&text[at..if call.is_some() { open } else { close + CLOSE.len() }]);
        calls.extend(call);
        at = close + CLOSE.len();
    }
    content.push_str(&text[at..]);
    if calls.is_empty() {
        return (Some(content), calls);
    }
    let content = content.trim();
    ((!content.is_empty()).then(|| content.to_string()), calls)
}

/// A piece of a streamed reply.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatDelta {
    Content(String),
    /// The `index`-th call of the reply, whole.
    Call { index: usize, call: ParsedCall },
}

/// Splits streamed text into content and calls as it arrives: [`push`](Self::push) returns the
/// pieces that became final; text that may be the start of a call is held back until it is or is
/// not (`holdback`, the rule stop strings follow too). [`end`](Self::end) returns the rest, as
/// content.
pub struct ToolCallStream {
    buf: String,
    names: Vec<String>,
    seed: u64,
    calls: usize,
    /// A call just ended: whitespace before the next text is not content.
    after_call: bool,
}

impl ToolCallStream {
    pub fn new(settings: &ToolSettings, seed: u64) -> Self {
        ToolCallStream { buf: String::new(), names: settings.names.clone(), seed, calls: 0, after_call: false }
    }

    /// Calls read so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn push(&mut self, text: &str) -> Vec<ChatDelta> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            // Whitespace between calls (or after the last) is not content.
            if self.after_call {
                let rest = self.buf.trim_start();
                if rest.is_empty() {
                    self.buf.clear();
                    return out;
                }
                self.buf = rest.to_string();
                self.after_call = false;
            }
            let Some(open) = self.buf.find(OPEN) else {
                let keep = held_back(&self.buf, &[OPEN]);
                let emit: String = self.buf.drain(..self.buf.len() - keep).collect();
                if !emit.is_empty() {
                    out.push(ChatDelta::Content(emit));
                }
                return out;
            };
            if open > 0 {
                out.push(ChatDelta::Content(self.buf.drain(..open).collect()));
            }
            let Some(close) = self.buf.find(CLOSE) else { return out };
            let end = close + CLOSE.len();
            match to_call(self.buf[OPEN.len()..close].trim(), &self.names, call_id(self.seed, self.calls)) {
                Some(call) => {
                    out.push(ChatDelta::Call { index: self.calls, call });
                    self.calls += 1;
                }
                None => out.push(ChatDelta::Content(self.buf[..end].to_string())),
            }
            self.buf.drain(..end);
            self.after_call = true;
        }
    }

    /// The whole reply read at once ([`parse_tool_calls`] with this stream's tools and seed: the
    /// same calls, with the same ids, as the stream gave).
    pub fn parse_whole(&self, text: &str) -> (Option<String>, Vec<ParsedCall>) {
        parse_with(text, &self.names, self.seed)
    }

    pub fn end(&mut self) -> Vec<ChatDelta> {
        let rest = std::mem::take(&mut self.buf);
        if rest.is_empty() {
            Vec::new()
        } else {
            vec![ChatDelta::Content(rest)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(choice: Option<Value>, parallel: Option<bool>) -> ToolSettings {
        let tools = json!([
            { "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } },
            { "type": "function", "function": { "name": "get_time" } },
        ]);
        ToolSettings::from_request(Some(&tools), choice.as_ref(), parallel).unwrap().unwrap()
    }

    #[test]
    fn requests_are_checked() {
        let bad = |tools: Value, choice: Value| ToolSettings::from_request(Some(&tools), Some(&choice), None).unwrap_err().message;
        let t = json!([{ "type": "function", "function": { "name": "f" } }]);
        assert_eq!(bad(json!({}), Value::Null), "tools must be an array");
        assert!(bad(json!([{ "type": "function", "function": {} }]), Value::Null).starts_with("each tool must be"));
        assert!(bad(t.clone(), json!("sometimes")).starts_with("tool_choice must be"));
        assert_eq!(bad(t.clone(), json!({ "type": "function", "function": { "name": "g" } })), "tool_choice names \"g\", which is not in tools");
        assert_eq!(ToolSettings::from_request(None, Some(&json!("required")), None).unwrap_err().message, "tool_choice needs tools");
        assert!(ToolSettings::from_request(None, Some(&json!("auto")), None).unwrap().is_none());
        assert!(ToolSettings::from_request(Some(&json!([])), None, None).unwrap().is_none());
        let none = ToolSettings::from_request(Some(&t), Some(&json!("none")), None).unwrap().unwrap();
        assert!(!none.parses_calls() && none.forced_grammar().is_none());
    }

    #[test]
    fn a_required_call_is_a_grammar_of_the_tools_schemas() {
        assert!(settings(None, None).forced_grammar().is_none());
        let g = settings(Some(json!("required")), Some(false)).forced_grammar().unwrap();
        assert!(g.starts_with("start: call\ncall: \"<tool_call>\\n\" %json {"), "{g}");
        assert!(g.contains("\"anyOf\"") && g.contains("get_time") && g.contains("\"city\""), "{g}");
        let named = settings(Some(json!({ "type": "function", "function": { "name": "get_time" } })), None).forced_grammar().unwrap();
        assert!(named.starts_with("start: call (\"\\n\" call)*") && !named.contains("get_weather") && !named.contains("anyOf"), "{named}");
    }

    #[test]
    fn calls_are_read_whole_and_streamed_alike() {
        let s = settings(None, None);
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>\n<tool_call>{\"name\": \"get_time\"}</tool_call>";
        let (content, calls) = parse_tool_calls(text, &s, 7);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(calls[1].function.arguments, "{}");
        assert!(calls[0].id.starts_with("call_") && calls[0].id.len() == 29 && calls[0].id != calls[1].id);
        // The unknown tool's block stays in the text.
        assert_eq!(content.as_deref(), Some("Let me check.\n\n<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>"));
        // Streamed in pieces of every size: the same calls, with the same ids.
        for size in [1, 2, 3, 5, 8, 13, 200] {
            let mut st = ToolCallStream::new(&s, 7);
            let mut deltas = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(size) {
                deltas.extend(st.push(&piece.iter().collect::<String>()));
            }
            deltas.extend(st.end());
            let streamed: Vec<ParsedCall> = deltas.iter().filter_map(|d| if let ChatDelta::Call { call, .. } = d { Some(call.clone()) } else { None }).collect();
            assert_eq!(streamed, calls, "pieces of {size}");
            let text_out: String = deltas.iter().filter_map(|d| if let ChatDelta::Content(c) = d { Some(c.as_str()) } else { None }).collect();
            assert!(text_out.starts_with("Let me check.\n<tool_call>") && !text_out.contains("get_weather"), "{text_out:?}");
        }
        // No calls: the text as it is, and a lone "<" released at the end.
        assert_eq!(parse_tool_calls(" hi ", &s, 1), (Some(" hi ".into()), vec![]));
        let mut st = ToolCallStream::new(&s, 1);
        assert_eq!(st.push("a <tool"), vec![ChatDelta::Content("a ".into())]);
        assert_eq!(st.end(), vec![ChatDelta::Content("<tool".into())]);
        // Only calls: no content.
        let (content, calls) = parse_tool_calls("<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>\n", &s, 1);
        assert_eq!((content, calls.len()), (None, 1));
    }
}
