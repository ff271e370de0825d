// Golden tokenizations from llama.cpp itself (the prebuilt libllama that npm node-llama-cpp ships).
//
// usage: node tokenize-golden.mjs --model PATH --name NAME [--out DIR] [--pieces]
// writes DIR/tokenizer-NAME.json (DIR defaults to ../golden next to this script).
//
// For every case: ids = llama_tokenize(add_special=true, parse_special=true), ids_plain =
// llama_tokenize(add_special=false, parse_special=false), detok / detok_special =
// llama_detokenize(ids, remove_special=false, unparse_special=false / true), and with --pieces the
// per-token pieces (llama_detokenize of one token, unparse_special=true). The node addon tokenizes with
// add_special=false only, so BOS/EOS are added here exactly as llama_tokenize does it: BOS first when
// llama_vocab_get_add_bos, EOS last when llama_vocab_get_add_eos (for SPM and BPE vocabularies these are
// the only effects of add_special).
//
// Needs: npm install (in this folder). Runs on the CPU build; never builds or downloads anything.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const here = path.dirname(fileURLToPath(import.meta.url));

function arg(name, dflt) {
    const i = process.argv.indexOf(`--${name}`);
    if (i < 0) return dflt;
    return process.argv[i + 1];
}
const modelPath = arg("model");
const name = arg("name");
const outDir = arg("out", path.join(here, "..", "golden"));
const withPieces = process.argv.includes("--pieces");
if (!modelPath || !name) {
    console.error("usage: node tokenize-golden.mjs --model PATH --name NAME [--out DIR] [--pieces]");
    process.exit(2);
}

// A ~1000-character paragraph mixing scripts, digits, code and whitespace.
const LONG = [
    "In 2024, the café on 5th Avenue served 1,234 customers — naïve estimates said 999.",
    "東京の天気は晴れです。北京今天下雨了。서울은 흐립니다.",
    "Привет, мир! Как дела? Γειά σου Κόσμε. שלום עולם. مرحبا يا عالم.",
    "नमस्ते, यह एक परीक्षण है। สวัสดีครับ ยินดีต้อนรับ",
    "fn add(a: i32, b: i32) -> i32 {\n\ta + b // don't panic\n}\n",
    "Emoji: 😀😃😄 👩‍💻 🏳️‍🌈 👍🏽 — and math: ∑ x² ≤ ∞, √2 ≈ 1.41421356.",
    "    indented line\n\n\n   \t mixed\twhitespace   \r\n",
    "URLs like https://example.org/a/b?c=1&d=2#e and e-mail foo.bar@example.com.",
    "The quick brown fox jumps over the lazy dog; THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "Numbers: 3.14159265358979323846, 2.71828, 6.022e23, -0.000001, 1_000_000, 0xDEADBEEF.",
    "Quotes: “double”, ‘single’, «guillemets», „German“, 「Japanese」.",
    "She said: 'I'M sure you're right, we've seen it; they'll agree, he'd say.'",
    "Table: | id | name | score |\n|----|------|-------|\n| 1 | Ada | 99.5 |\n| 2 | Линус | 87 |\n",
    "JSON: {\"key\": [1, 2.5, null, true], \"nested\": {\"ü\": \"ß\"}} <end_of_turn> <|im_end|>",
    "Long words: antidisestablishmentarianism, Donaudampfschifffahrtsgesellschaft, 電気自動車充電器.",
].join(" ");

const CASES = [
    // The prompts of tests/golden/gemma3-270m.json.
    ["golden_france", "The capital of France is"],
    ["golden_once", "Once upon a time"],
    ["golden_fibonacci", "def fibonacci(n):"],
    ["golden_numbers", "1, 2, 3, 4,"],
    // Scripts.
    ["cjk", "日本語のテキストと中文字符，한국어 문장도 있습니다。"],
    ["arabic", "مرحبا بالعالم، كيف حالك؟ ١٢٣"],
    ["hindi", "नमस्ते दुनिया, आप कैसे हैं?"],
    ["cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю."],
    ["thai", "สวัสดีครับ ยินดีที่ได้รู้จัก"],
    ["greek_hebrew", "Καλημέρα κόσμε שלום עולם"],
    ["no_space_mixed", "abc中文123def🙂xyz"],
    // Emoji.
    ["emoji", "I ❤️ 🦀 and 🍕! 👍👍🏽👍🏿"],
    ["emoji_zwj", "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👩🏾‍💻 coder, 🧑‍🤝‍🧑"],
    ["emoji_spaces", "🙂 🙂  🙂\t🙂\n🙂"],
    ["rare_chars", "𓀀𓀁 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10FFFD}\u{E000} \u{1FAE8}\u{1FABF}"],
    // Combining marks and decomposed forms.
    ["combining", "e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0361\u0353a\u0336lgo \u1112\u1161\u11ab"],
    // Whitespace.
    ["spaces_runs", "a  b   c    d     e      f"],
    ["mixed_ws", "a  b\t\tc\n\n\nd \t \n e\r\nf\n \n\t\n  g     "],
    ["unicode_ws", "x\u00a0y\u3000z\u2003w\u2028v\u0085u"],
    ["leading_trailing", "   leading and trailing   "],
    ["leading_newlines", "\n\nHello\n"],
    ["single_space", " "],
    ["single_newline", "\n"],
    ["only_tabs", "\t\t\t"],
    ["crlf", "line1\r\nline2\rline3\n\r\n"],
    ["empty", ""],
    // Digits.
    ["digits", "3.14159265358979 1234567890 0000 12,345,678 ١٢٣٤ ½ ²³ Ⅻ"],
    ["long_number", "123456789012345678901234567890"],
    // Code and punctuation.
    ["code_rust", "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{:?}\", x); // it's\n}\n"],
    ["code_python", "\tdef f(a, b=2):\n\t\treturn {'k': [a, b]}  # ok\n"],
    ["punct", "Hello,world!!! ... ?!? (a)[b]{c} <tag/> a->b => $100 + 5% ~x^2 |pipe| `tick` @at #hash"],
    ["url", "https://example.com/path?q=1&r=two#frag email@test.org"],
    ["quotes", "l’été c’est ‘quoted’ “double” «guillemets»"],
    ["contractions", "I'M you're WE'VE they'll She'd it's DON'T 'tis"],
    ["math", "∑_{i=1}^{n} x_i² ≤ ∞ ∂f/∂x ≠ √2"],
    ["html", "<table><tr><td>cell</td></tr></table><br/>"],
    // Special and control tokens written in the text.
    ["chat_gemma", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"],
    ["chat_chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"],
    ["chat_llama3", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"],
    ["special_inline", "<bos>text<eos> <unk> <pad><mask>[multimodal] <|endoftext|>x"],
    ["special_adjacent", "<end_of_turn><end_of_turn>  <start_of_turn>"],
    ["user_defined", "<think>reason</think> done"],
    ["long_mixed", LONG],
];

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, vocabOnly: true });
const addon = model._model;

const addBos = addon.shouldPrependBosToken();
const addEos = addon.shouldAppendEosToken();
const bos = model.tokens.bos;
const eos = model.tokens.eos;
const nVocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;

const eog = [];
for (let id = 0; id < nVocab; id++) {
    if (addon.isEogToken(id)) eog.push(id);
}

function tokenize(text, specialTokens) {
    return text === "" ? [] : Array.from(addon.tokenize(text, specialTokens));
}
function detokenize(ids, special) {
    return addon.detokenize(Uint32Array.from(ids), special);
}

const usedIds = new Set(eog);
const cases = CASES.map(([caseName, text]) => {
    const ids = [...(addBos && bos != null ? [bos] : []), ...tokenize(text, true), ...(addEos && eos != null ? [eos] : [])];
    const idsPlain = tokenize(text, false);
    for (const id of [...ids, ...idsPlain]) usedIds.add(id);
    const c = {
        name: caseName,
        text,
        ids,
        ids_plain: idsPlain,
        detok: detokenize(ids, false),
        detok_special: detokenize(ids, true),
    };
    if (withPieces) c.pieces = ids.map((id) => detokenize([id], true));
    return c;
});

// Attributes (llama_token_attr bits) of every id that appears above.
const attrs = {};
for (const id of [...usedIds].sort((a, b) => a - b)) attrs[id] = addon.getTokenAttributes(id);

const golden = {
    source: "llama.cpp (libllama commit de3ff81 as bundled by npm node-llama-cpp 3.22.1, prebuilt CPU), vocab_only; generated by tests/reference/tokenize-golden.mjs",
    model: path.basename(modelPath),
    tokenizer: {
        model: model.fileInfo.metadata.tokenizer.ggml.model,
        pre: model.fileInfo.metadata.tokenizer.ggml.pre ?? null,
        n_vocab: nVocab,
        bos,
        eos,
        add_bos: addBos,
        add_eos: addEos,
        eog,
    },
    attrs,
    cases,
};

fs.mkdirSync(outDir, { recursive: true });
const out = path.join(outDir, `tokenizer-${name}.json`);
fs.writeFileSync(out, JSON.stringify(golden, null, 1) + "\n");
console.log(`${out}: ${cases.length} cases, n_vocab ${nVocab}, ${eog.length} eog ids`);
await model.dispose();
await llama.dispose();
