//! Chat prompts: render a conversation into the model's prompt text with its chat template.
//!
//! The template is the GGUF's `tokenizer.chat_template` (a Jinja template, as in Hugging Face
//! tokenizers) rendered with `minijinja`; when the file has none, a built-in template chosen by
//! the special tokens of the vocabulary (Gemma turns, ChatML, Llama 3 headers, Phi-3) is used, and
//! a plain `role: content` transcript when none of those match. Templates come from downloaded
//! files, so rendering is sandboxed ([`render`]): no file system, no includes, a fuel limit that
//! turns an endless template into an error instead of a hang, an output limit ([`max_output`]), a
//! bounded `tojson` indent, and a memory budget ([`memory_budget`], kept by [`crate::budget`]:
//! minijinja has no hook for the memory of values a template builds, such as a list doubled in a
//! loop, so going past it aborts). In the browser the render runs in an isolated renderer (a small
//! wasm module instance of its own, [`set_isolated_renderer`]), where that abort costs only the
//! renderer's instance and the call gets `INVALID_ARGUMENT`; natively it aborts the process.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

pub mod overflow;
pub mod render;
pub mod tools;

pub use render::{RenderJob, RenderReply};

/// A renderer outside this module instance: runs a [`RenderJob`], and says `Trapped` when its
/// instance trapped (the memory budget).
pub type IsolatedRenderer = Box<dyn Fn(&RenderJob) -> RenderReply>;

thread_local! {
    static ISOLATED: RefCell<Option<IsolatedRenderer>> = const { RefCell::new(None) };
}

/// Render templates with `renderer` from now on (on this thread); `None`: in this instance.
pub fn set_isolated_renderer(renderer: Option<IsolatedRenderer>) {
    ISOLATED.with(|r| *r.borrow_mut() = renderer);
}

/// Run `job` in the isolated renderer when there is one, else here.
fn run_job(job: &RenderJob) -> RenderReply {
    let isolated = ISOLATED.with(|r| r.borrow().as_ref().map(|f| f(job)));
    isolated.unwrap_or_else(|| render::run(job))
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// "system", "user", "assistant" or "tool".
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// The calls an assistant message made (OpenAI's `tool_calls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Which call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.to_string(), content: content.to_string(), ..Default::default() }
    }
}

/// A tool call of an assistant message, in OpenAI's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// A JSON string (OpenAI) or an object (Hugging Face templates).
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// How a model is told about tools when its template does not take `tools` itself (the
/// Hermes format, which ChatML-family models are trained on; calls are parsed back from it).
const TOOL_PROMPT: &str = "You are a function calling AI model. You are provided with function signatures within \
<tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make assumptions \
about what values to plug into functions. Here are the available tools:\n<tools>\n";
const TOOL_PROMPT_END: &str = "</tools>\nFor each function call, return a JSON object with the function name and \
arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": \
<args-json-object>}\n</tool_call>";

/// Whether a template renders `tools` itself (Hugging Face tool-calling templates do).
pub fn template_takes_tools(template: &TemplateSource) -> bool {
    matches!(template, TemplateSource::File(t) if t.contains("tools"))
}

/// A conversation with tools, ready for [`render`]: for a template that takes `tools`, the
/// messages (call arguments as objects, as those templates expect) and the tools; for any other,
/// the tools described in the system message, calls written into assistant messages and tool
/// results into user messages, in the Hermes format. Bad `tools` are `INVALID_ARGUMENT`.
pub fn prepare_tools(
    template: &TemplateSource,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
) -> Result<(Vec<ChatMessage>, Option<serde_json::Value>)> {
    let tools = match tools {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => {
            let list = t.as_array().ok_or_else(|| Error::invalid_argument("tools must be an array"))?;
            tools::tool_names(list)?;
            (!list.is_empty()).then(|| t.clone())
        }
    };
    let uses_tools = tools.is_some() || messages.iter().any(|m| m.role == "tool" || m.tool_calls.is_some());
    if !uses_tools {
        return Ok((messages.to_vec(), None));
    }
    let args_object = |a: &serde_json::Value| match a {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| a.clone()),
        v => v.clone(),
    };
    if template_takes_tools(template) {
        let mut out = messages.to_vec();
        for call in out.iter_mut().flat_map(|m| m.tool_calls.iter_mut().flatten()) {
            call.function.arguments = args_object(&call.function.arguments);
        }
        return Ok((out, tools));
    }
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(list) = tools.as_ref().and_then(|t| t.as_array()) {
        let mut prompt = TOOL_PROMPT.to_string();
        for t in list {
            prompt.push_str(&serde_json::to_string(t).unwrap_or_default());
            prompt.push('\n');
        }
        prompt.push_str(TOOL_PROMPT_END);
        match messages.first() {
            Some(m) if m.role == "system" => {}
            _ => out.push(ChatMessage::new("system", "")),
        }
        let first = out.first_mut().filter(|m| m.role == "system");
        if let Some(sys) = first {
            sys.content = prompt;
        } else {
            // The caller's system message comes first: the tools follow its text.
            out.push(ChatMessage::new("system", &format!("{}\n\n{prompt}", messages[0].content)));
        }
    }
    let skip = usize::from(tools.is_some() && messages.first().is_some_and(|m| m.role == "system"));
    for m in &messages[skip..] {
        match m.role.as_str() {
            "tool" => {
                let text = format!("<tool_response>\n{}\n</tool_response>", m.content);
                match out.last_mut() {
                    // Consecutive results go in one turn (templates that require alternating turns).
                    Some(prev) if prev.role == "user" && prev.content.ends_with("</tool_response>") => {
                        prev.content.push('\n');
                        prev.content.push_str(&text);
                    }
                    _ => out.push(ChatMessage::new("user", &text)),
                }
            }
            "assistant" if m.tool_calls.is_some() => {
                let mut text = m.content.clone();
                for call in m.tool_calls.iter().flatten() {
                    let call_json = serde_json::json!({ "name": call.function.name, "arguments": args_object(&call.function.arguments) });
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&format!("<tool_call>\n{call_json}\n</tool_call>"));
                }
                out.push(ChatMessage::new("assistant", &text));
            }
            _ => out.push(ChatMessage { tool_calls: None, tool_call_id: None, ..m.clone() }),
        }
    }
    Ok((out, None))
}

/// The most prompt text a template may write for `messages`: four times their contents plus
/// 1 MiB of markup (real templates add tens of bytes per message).
fn max_output(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| m.content.len()).sum::<usize>().saturating_mul(4).saturating_add(1 << 20)
}

/// The most heap a render may hold for `messages`: eight times the output limit plus 64 MiB
/// (real templates need a few times the conversation's size).
fn memory_budget(messages: &[ChatMessage]) -> usize {
    max_output(messages).saturating_mul(8).saturating_add(64 << 20)
}

const GEMMA: &str = "{{ bos_token }}\
{%- if messages[0].role == 'system' -%}{%- set prefix = messages[0].content ~ '\n\n' -%}{%- set msgs = messages[1:] -%}\
{%- else -%}{%- set prefix = '' -%}{%- set msgs = messages -%}{%- endif -%}\
{%- for m in msgs -%}<start_of_turn>{{ 'model' if m.role == 'assistant' else m.role }}\n\
{{ (prefix if loop.first else '') ~ m.content | trim }}<end_of_turn>\n{% endfor -%}\
{%- if add_generation_prompt -%}<start_of_turn>model\n{% endif -%}";

const CHATML: &str = "{%- for m in messages -%}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor -%}\
{%- if add_generation_prompt -%}<|im_start|>assistant\n{% endif -%}";

const LLAMA3: &str = "{{ bos_token }}{%- for m in messages -%}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n\
{{ m.content | trim }}<|eot_id|>{%- endfor -%}\
{%- if add_generation_prompt -%}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif -%}";

const PHI3: &str = "{%- for m in messages -%}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{%- endfor -%}\
{%- if add_generation_prompt -%}<|assistant|>\n{% endif -%}";

const PLAIN: &str = "{%- for m in messages -%}{{ m.role }}: {{ m.content }}\n{% endfor -%}\
{%- if add_generation_prompt -%}assistant:{%- endif -%}";

/// Which template a model uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    /// From the GGUF's `tokenizer.chat_template`.
    File(String),
    /// Built in, by name ("gemma", "chatml", "llama3", "phi3", "plain").
    BuiltIn(&'static str),
}

impl TemplateSource {
    pub fn name(&self) -> &str {
        match self {
            TemplateSource::File(_) => "gguf",
            TemplateSource::BuiltIn(n) => n,
        }
    }

    fn text(&self) -> &str {
        match self {
            TemplateSource::File(t) => t,
            TemplateSource::BuiltIn("gemma") => GEMMA,
            TemplateSource::BuiltIn("chatml") => CHATML,
            TemplateSource::BuiltIn("llama3") => LLAMA3,
            TemplateSource::BuiltIn("phi3") => PHI3,
            TemplateSource::BuiltIn(_) => PLAIN,
        }
    }
}

/// The file's template if it has one, else a built-in one matching the vocabulary.
pub fn template_for(file_template: Option<&str>, tok: &Tokenizer) -> TemplateSource {
    if let Some(t) = file_template.filter(|t| !t.trim().is_empty()) {
        return TemplateSource::File(t.to_string());
    }
    let has = |s: &str| tok.token_to_id(s).is_some();
    TemplateSource::BuiltIn(if has("<start_of_turn>") {
        "gemma"
    } else if has("<|im_start|>") {
        "chatml"
    } else if has("<|start_header_id|>") {
        "llama3"
    } else if has("<|assistant|>") && has("<|end|>") {
        "phi3"
    } else {
        "plain"
    })
}

/// Render `messages` into prompt text. `add_generation_prompt` appends the opening of the
/// assistant's turn.
pub fn render(template: &TemplateSource, messages: &[ChatMessage], add_generation_prompt: bool, bos: &str, eos: &str) -> Result<String> {
    render_with_tools(template, messages, None, add_generation_prompt, bos, eos)
}

/// [`render`] with `tools` (from [`prepare_tools`]) passed to a template that takes them.
pub fn render_with_tools(
    template: &TemplateSource,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<String> {
    if messages.is_empty() {
        return Err(Error::invalid_argument("messages must not be empty"));
    }
    let tool_role = template_takes_tools(template);
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant") && !(tool_role && m.role == "tool")) {
        return Err(Error::invalid_argument(format!(
            "message role must be \"system\", \"user\", \"assistant\" or \"tool\", got \"{}\"",
            m.role
        )));
    }
    let max = max_output(messages);
    let mut context = serde_json::json!({
        "messages": messages,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos,
        "eos_token": eos,
    });
    if let Some(t) = tools {
        context["tools"] = t.clone();
    }
    let job = RenderJob { template: template.text().to_string(), context, max_output: max, memory_budget: memory_budget(messages) };
    let what = match run_job(&job) {
        RenderReply::Ok(text) => return Ok(text),
        RenderReply::TooSlow => "takes too long to render (fuel limit)".to_string(),
        RenderReply::TooLong => format!("writes more than {max} bytes of prompt for these messages"),
        RenderReply::Failed(e) => e,
        RenderReply::Trapped(e) => format!(
            "needed more memory than its budget of {} MiB while rendering (a broken or hostile template; {e})",
            job.memory_budget >> 20
        ),
    };
    Err(Error::invalid_argument(format!("the chat template ({}) failed: {what}", template.name())))
}

/// A chat prompt: the template's text and its token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    pub text: String,
    pub ids: Vec<u32>,
}

/// Marks around a sentinel's number (Unicode noncharacters, which no text a user means to send
/// contains; a conversation that does is encoded the strict way).
const SENTINEL_OPEN: char = '\u{10FFFE}';
const SENTINEL_CLOSE: char = '\u{10FFFF}';

/// What a conversation's caller wrote (message contents, tool names and arguments, tool
/// descriptions), replaced by numbered sentinels for a second rendering, and the caller's strings
/// that stay as they are (checked instead).
#[derive(Default)]
struct Caller {
    /// (what it is, the text a sentinel stands for: the string without its outer whitespace).
    marked: Vec<(String, String)>,
    /// (what it is, the text) of every other string the caller wrote into the tools or calls.
    unmarked: Vec<(String, String)>,
    /// Some input holds a sentinel character itself.
    forged: bool,
}

impl Caller {
    /// `s` with its text (not its outer whitespace, which a template's `trim` must still see)
    /// replaced by a sentinel.
    fn mark(&mut self, what: &str, s: &str) -> String {
        self.forged |= s.contains([SENTINEL_OPEN, SENTINEL_CLOSE]);
        let core = s.trim();
        if core.is_empty() {
            return s.to_string();
        }
        let lead = s.len() - s.trim_start().len();
        let n = self.marked.len();
        self.marked.push((what.to_string(), core.to_string()));
        format!("{}{SENTINEL_OPEN}{n}{SENTINEL_CLOSE}{}", &s[..lead], &s[lead + core.len()..])
    }

    fn keep(&mut self, what: &str, s: &str) {
        self.forged |= s.contains([SENTINEL_OPEN, SENTINEL_CLOSE]);
        self.unmarked.push((what.to_string(), s.to_string()));
    }

    /// A JSON value the caller wrote, its free text marked: every string value when `free` is
    /// `None`, else the string values (and array elements) under the keys in `free`. Keys and the
    /// other strings are kept as they are.
    fn mark_json(&mut self, what: &str, v: &serde_json::Value, free: Option<&[&str]>, key: Option<&str>) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) if free.is_none_or(|f| key.is_some_and(|k| f.contains(&k))) => Value::String(self.mark(what, s)),
            Value::String(s) => {
                self.keep(what, s);
                v.clone()
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.mark_json(what, x, free, key)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        self.keep(what, k);
                        (k.clone(), self.mark_json(what, x, free, Some(k)))
                    })
                    .collect(),
            ),
            _ => v.clone(),
        }
    }
}

/// The free-text fields of a tool definition: marked as the caller's text.
const TOOL_TEXT: &[&str] = &["name", "description", "title", "enum"];

/// `messages` and `tools` (as from [`prepare_tools`]) with the caller's text replaced by
/// sentinels.
fn mark_caller(messages: &[ChatMessage], tools: Option<&serde_json::Value>) -> (Caller, Vec<ChatMessage>, Option<serde_json::Value>) {
    let mut c = Caller::default();
    let marked = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut m = m.clone();
            let what = format!("the content of message {i} ({})", m.role);
            m.content = c.mark(&what, &m.content);
            for (j, call) in m.tool_calls.iter_mut().flatten().enumerate() {
                call.function.name = c.mark(&format!("the name of tool call {j} of message {i}"), &call.function.name);
                call.function.arguments = c.mark_json(&format!("the arguments of tool call {j} of message {i}"), &call.function.arguments, None, None);
                if let Some(id) = &call.id {
                    call.id = Some(c.mark(&format!("the id of tool call {j} of message {i}"), id));
                }
            }
            for (field, what) in [(&mut m.tool_call_id, "tool_call_id"), (&mut m.name, "name")] {
                if let Some(v) = field.as_mut() {
                    *v = c.mark(&format!("the {what} of message {i}"), v);
                }
            }
            m
        })
        .collect();
    let tools = tools.map(|t| c.mark_json("a tool definition", t, Some(TOOL_TEXT), None));
    (c, marked, tools)
}

/// Where the caller's text lies in `real` (the template's output for the conversation), read off
/// `marked` (its output for the same conversation with sentinels): the template's text between
/// sentinels must be the same in both, and each sentinel must stand in `real` for its text as
/// written, or escaped inside a JSON string (`tojson`). `None` when the template treats the
/// caller's text otherwise (slices it, tests it, changes its case).
fn locate(real: &str, marked: &str, texts: &[(String, String)]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut ranges = Vec::new();
    let mut at = 0;
    let mut rest = marked;
    loop {
        let Some(open) = rest.find(SENTINEL_OPEN) else {
            return (&real[at..] == rest).then_some(ranges);
        };
        let piece = &rest[..open];
        real[at..].starts_with(piece).then_some(())?;
        at += piece.len();
        let after = &rest[open + SENTINEL_OPEN.len_utf8()..];
        let close = after.find(SENTINEL_CLOSE)?;
        let text = &texts.get(after[..close].parse::<usize>().ok()?)?.1;
        rest = &after[close + SENTINEL_CLOSE.len_utf8()..];
        let json = serde_json::to_string(text).ok()?;
        let json = &json[1..json.len() - 1];
        // minijinja's `tojson` also escapes HTML's special characters.
        let html = json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026").replace('\'', "\\u0027");
        let written = [text.as_str(), json, &html].into_iter().find(|w| real[at..].starts_with(w))?;
        ranges.push(at..at + written.len());
        at += written.len();
    }
}

/// Render a conversation (`messages` and `tools` from [`prepare_tools`]) with `template` and
/// tokenize it so that only the template's own markup can become control tokens.
///
/// The template runs twice: on the conversation, and on the same with everything the caller wrote
/// (message contents, tool names, call arguments and ids, tool descriptions) replaced by numbered
/// sentinels. Where the two agree, the sentinels say exactly which spans of the prompt are the
/// caller's, and those are tokenized as plain text: `<|im_start|>` or `<start_of_turn>` in a
/// message, a tool name or a description stays text wherever it stands, even right after the same
/// markup written by the template. Where a template treats the caller's text in a way sentinels
/// cannot follow (slicing or testing it), the prompt is tokenized as a whole and any of the
/// caller's text that spells a control token is refused (`INVALID_ARGUMENT`). Strings the caller
/// wrote outside free text (a schema's keys, its `type`s) are refused the same way in both cases.
/// BOS is added as for any prompt unless the template wrote it.
pub fn encode_chat(
    tok: &Tokenizer,
    template: &TemplateSource,
    messages: &[ChatMessage],
    tools: Option<&serde_json::Value>,
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> Result<ChatPrompt> {
    let text = render_with_tools(template, messages, tools, add_generation_prompt, bos, eos)?;
    let (caller, marked_messages, marked_tools) = mark_caller(messages, tools);
    let located = if caller.forged {
        None
    } else {
        let marked = render_with_tools(template, &marked_messages, marked_tools.as_ref(), add_generation_prompt, bos, eos)?;
        locate(&text, &marked, &caller.marked)
    };
    let refuse = |what: &str| {
        Error::invalid_argument(format!(
            "{what} spells a control token, and the chat template ({}) writes it where it cannot be kept as plain text; \
             remove the control-token text",
            template.name()
        ))
    };
    // What stays whole text: the unmarked strings always, the marked ones too where unlocated.
    let unlocated = located.is_none().then_some(&caller.marked).into_iter().flatten();
    for (what, s) in caller.unmarked.iter().chain(unlocated) {
        if tok.spells_control_token(s) {
            return Err(refuse(what));
        }
    }
    let template_wrote_bos = !bos.is_empty() && text.starts_with(bos);
    let ids = tok.encode_with_plain(&text, located.as_deref().unwrap_or_default(), !template_wrote_bos);
    Ok(ChatPrompt { text, ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(r, c)).collect()
    }

    #[test]
    fn tools_are_described_and_calls_and_results_written_for_templates_without_tools() {
        let tools = serde_json::json!([{ "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object" } } }]);
        let mut m = msgs(&[("system", "Be brief."), ("user", "Weather in Paris?")]);
        m.push(ChatMessage {
            role: "assistant".into(),
            tool_calls: Some(vec![ToolCall {
                id: Some("call_1".into()),
                kind: Some("function".into()),
                function: FunctionCall { name: "get_weather".into(), arguments: "{\"city\":\"Paris\"}".into() },
            }]),
            ..Default::default()
        });
        m.push(ChatMessage { role: "tool".into(), content: "18 C".into(), tool_call_id: Some("call_1".into()), ..Default::default() });
        m.push(ChatMessage { role: "tool".into(), content: "sunny".into(), tool_call_id: Some("call_2".into()), ..Default::default() });
        let chatml = TemplateSource::BuiltIn("chatml");
        let (prepared, for_template) = prepare_tools(&chatml, &m, Some(&tools)).unwrap();
        assert!(for_template.is_none());
        let out = render(&chatml, &prepared, true, "", "").unwrap();
        assert!(out.starts_with("<|im_start|>system\nBe brief.\n\nYou are a function calling AI model."), "{out}");
        assert!(out.contains("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"get_weather\""), "{out}");
        assert!(out.contains("<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call><|im_end|>"), "{out}");
        assert!(out.contains("<|im_start|>user\n<tool_response>\n18 C\n</tool_response>\n<tool_response>\nsunny\n</tool_response><|im_end|>"), "{out}");
        assert!(out.ends_with("<|im_start|>assistant\n"));
        // A template that takes tools gets them, and the tool role, as they are.
        let hf = TemplateSource::File("{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}{{ m.role }}:{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls[0].function.arguments.city }}{% endif %};{% endfor %}".into());
        let (prepared, for_template) = prepare_tools(&hf, &m[1..], Some(&tools)).unwrap();
        let out = render_with_tools(&hf, &prepared, for_template.as_ref(), true, "", "").unwrap();
        assert_eq!(out, "[get_weather]user:Weather in Paris?;assistant:Paris;tool:18 C;tool:sunny;");
        // Bad tools are typed errors.
        for bad in [serde_json::json!({}), serde_json::json!([{ "type": "function" }]), serde_json::json!([{ "type": "x", "function": { "name": "f" } }])] {
            assert_eq!(prepare_tools(&chatml, &m, Some(&bad)).unwrap_err().code, crate::ErrorCode::InvalidArgument);
        }
    }

    #[test]
    fn gemma_turns_fold_the_system_prompt_into_the_first_user_turn() {
        let out = render(
            &TemplateSource::BuiltIn("gemma"),
            &msgs(&[("system", "Be brief."), ("user", " Hi "), ("assistant", "Hello!"), ("user", "Bye")]),
            true,
            "<bos>",
            "<eos>",
        )
        .unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn chatml_and_llama3_shapes() {
        let m = msgs(&[("user", "Hi")]);
        assert_eq!(
            render(&TemplateSource::BuiltIn("chatml"), &m, true, "", "").unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            render(&TemplateSource::BuiltIn("llama3"), &m, false, "<|begin_of_text|>", "").unwrap(),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        );
    }

    #[test]
    fn file_templates_render_with_hugging_face_conventions() {
        let t = TemplateSource::File(
            "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}\
             [{{ m['role'] }}]{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
                .into(),
        );
        assert_eq!(render(&t, &msgs(&[("user", "a"), ("assistant", "b")]), true, "", "").unwrap(), "[user]a[assistant]b[assistant]");
        let e = render(&t, &msgs(&[("system", "x")]), true, "", "").unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidArgument);
        assert!(e.message.contains("no system"), "{}", e.message);
    }

    #[test]
    fn callers_text_is_located_by_sentinels_verbatim_trimmed_or_in_json() {
        // Gemma trims contents; the assistant's text repeats the markup just before it.
        let m = msgs(&[("system", "Be brief."), ("user", " Hi "), ("assistant", "<start_of_turn>model"), ("user", "Hi")]);
        let t = TemplateSource::BuiltIn("gemma");
        let real = render(&t, &m, true, "<bos>", "").unwrap();
        let (c, marked_msgs, _) = mark_caller(&m, None);
        let marked = render(&t, &marked_msgs, true, "<bos>", "").unwrap();
        let r = locate(&real, &marked, &c.marked).unwrap();
        let texts: Vec<&str> = r.iter().map(|r| &real[r.clone()]).collect();
        assert_eq!(texts, ["Be brief.", "Hi", "<start_of_turn>model", "Hi"]);
        // Where the template wrote it, not at the first match of its text.
        let own = real.find("<start_of_turn>model\n<start_of_turn>model").unwrap();
        assert_eq!(r[2].start, own + "<start_of_turn>model\n".len(), "{real:?}");
        // Inside `tojson`, escaped as minijinja writes it.
        let json = TemplateSource::File("{% for m in messages %}{{ m.content | tojson }}{% endfor %}".into());
        let m = msgs(&[("user", "a \"<b>\" & 'c'")]);
        let real = render(&json, &m, false, "", "").unwrap();
        let (c, marked_msgs, _) = mark_caller(&m, None);
        let marked = render(&json, &marked_msgs, false, "", "").unwrap();
        let r = locate(&real, &marked, &c.marked).unwrap();
        assert_eq!(r, [1..real.len() - 1], "{real}");
        // A template that slices the content cannot be followed.
        let sliced = TemplateSource::File("{% for m in messages %}{{ m.content[:3] }}{% endfor %}".into());
        let m = msgs(&[("user", "hello")]);
        let (c, marked_msgs, _) = mark_caller(&m, None);
        let real = render(&sliced, &m, false, "", "").unwrap();
        assert_eq!(locate(&real, &render(&sliced, &marked_msgs, false, "", "").unwrap(), &c.marked), None);
    }

    #[test]
    fn hostile_templates_fail_cleanly() {
        let endless = TemplateSource::File("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}".into());
        let e = render(&endless, &msgs(&[("user", "a")]), true, "", "").unwrap_err();
        assert!(e.message.contains("fuel"), "{}", e.message);
        let broken = TemplateSource::File("{% for m in messages %}".into());
        assert_eq!(render(&broken, &msgs(&[("user", "a")]), true, "", "").unwrap_err().code, crate::ErrorCode::InvalidArgument);
        let e = render(&TemplateSource::BuiltIn("plain"), &msgs(&[("tool", "a")]), true, "", "").unwrap_err();
        assert!(e.message.contains("role"), "{}", e.message);
        assert!(render(&TemplateSource::BuiltIn("plain"), &[], true, "", "").is_err());
        // Memory bombs through the output or tojson fail fast, with a typed error.
        let indent = TemplateSource::File("{{ messages|tojson(indent=1000000000) }}".into());
        let e = render(&indent, &msgs(&[("user", "a")]), true, "", "").unwrap_err();
        assert!(e.code == crate::ErrorCode::InvalidArgument && e.message.contains("indent"), "{}", e.message);
        let kw = TemplateSource::File("{{ messages|tojson(99) }}".into());
        assert!(render(&kw, &msgs(&[("user", "a")]), true, "", "").unwrap_err().message.contains("indent"));
        let ok = TemplateSource::File("{{ messages|tojson(indent=4) }}".into());
        assert!(render(&ok, &msgs(&[("user", "a")]), true, "", "").unwrap().contains("\"content\": \"a\""));
        let wide = TemplateSource::File("{% for i in range(100000) %}{{ messages[0].content * 100 }}{% endfor %}".into());
        let e = render(&wide, &msgs(&[("user", "0123456789")]), true, "", "").unwrap_err();
        assert!(e.message.contains("more than") || e.message.contains("fuel"), "{}", e.message);
    }

    /// Values a template builds (here a list doubled 40 times: 2^40 items) hit the memory budget,
    /// which aborts the process: run in a child process. On wasm the abort is a trap that the JS
    /// side reports as INVALID_ARGUMENT (tests/js).
    #[test]
    fn templates_that_build_huge_values_abort_at_the_budget() {
        const CHILD: &str = "BROWSER_LLM_TEMPLATE_BOMB";
        let bomb = "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}";
        if std::env::var_os(CHILD).is_some() {
            let _ = render(&TemplateSource::File(bomb.into()), &msgs(&[("user", "a")]), true, "", "");
            return;
        }
        let t0 = std::time::Instant::now();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "chat::tests::templates_that_build_huge_values_abort_at_the_budget", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child rendered a 2^40-item list: {stderr}");
        // An allocation was refused (the one that would pass the 65 MiB budget of this
        // conversation), long before all memory.
        assert!(stderr.contains("memory allocation of"), "{stderr}");
        assert!(t0.elapsed().as_secs() < 60, "{:?}", t0.elapsed());
    }
}
