// Render conversations with a Jinja chat template using @huggingface/jinja, the Jinja engine that
// npm node-llama-cpp ships (a reference independent of our minijinja path and of llama.cpp's
// built-in templates).
//
// usage: node render-chat.mjs < IN.json > OUT.json
//   IN  = {"template": "...", "bos_token": "...", "eos_token": "...",
//          "conversations": [{"messages": [{role, content}], "add_generation_prompt": bool}]}
//   OUT = {"engine": "@huggingface/jinja VERSION", "rendered": ["...", ...]}

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "@huggingface/jinja";

const input = JSON.parse(fs.readFileSync(0, "utf8"));
const tmpl = new Template(input.template);
const rendered = input.conversations.map((c) =>
    tmpl.render({
        messages: c.messages,
        add_generation_prompt: c.add_generation_prompt,
        bos_token: input.bos_token,
        eos_token: input.eos_token,
    }),
);
const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.join(here, "node_modules", "@huggingface", "jinja", "package.json");
const version = fs.existsSync(pkg) ? JSON.parse(fs.readFileSync(pkg, "utf8")).version : "unknown";
process.stdout.write(JSON.stringify({ engine: `@huggingface/jinja ${version}`, rendered }) + "\n");
