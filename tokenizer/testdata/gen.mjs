// Produces golden outputs for vserve's Go tokenizer package using
// @huggingface/tokenizers (encode/decode) and @huggingface/jinja (chat templates).
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

const shared = process.argv[2];
const outDir = process.argv[3];
const readJSON = (p) => JSON.parse(fs.readFileSync(p, "utf8"));
const pkg = (n) => readJSON(path.join("node_modules", n, "package.json")).version;

const common = [
  "", " ", "Hello world", "Hello, world! How are you?",
  "  leading and trailing spaces  ", "multiple   spaces\tand\ttabs",
  "line1\nline2\n\nline4\r\nend", "\n\n\n", "1234567890 3.14159 1,000,000 42",
  "I'm you're we've they'll she'd it's DON'T I'M", "emoji 😀🎉👍🏽 family 👨‍👩‍👧!",
  "CJK 你好世界 日本語のテキスト 한국어", "accents: café naïve résumé Ångström",
  "cafe\u0301 nai\u0308ve A\u030angstro\u0308m", "rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∮ ⊕ ℵ ꙮ",
  "control \u0001\u0002 chars\u007f", "def foo(x):\n    return x ** 2  # comment\n",
  "Привет мир, Arabic مرحبا", "supercalifragilisticexpialidocious",
  "a\u00a0b\u3000c", "▁already metaspace ▁", "<0x41> literal", "  \n  \t x",
  "Once upon a time, there was a little girl named Lily. She loved to play outside.",
  "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!!! ... ??? ,,,",
  "don't stop 'til you're done, y'all's", "x=1;y=2\n\tif(x<y){return'z'}",
  "https://example.com/path?q=1&r=2#frag", "tabs\t\t\tand spaces    \n    indented",
];

const families = {
  "tokenizers/llama2": ["<s>Hello</s> world", "</s>", "<unk> <s> </s>", "text<s>text", "[INST] hi [/INST]"],
  "tokenizers/mistral": ["<s>Hello</s> world", "</s>", "[INST] What is 2+2? [/INST]", " <s> spaced"],
  "tokenizers/llama3": ["<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "<|eot_id|>", "a<|reserved_special_token_5|>b", "   spaces    before"],
  "tokenizers/qwen2.5": ["<|im_start|>user\nhi<|im_end|>\n", "<|endoftext|>", "x <|im_end|> y", "<tool_call>\n{}\n</tool_call>"],
  "tokenizers/gpt2": ["<|endoftext|>", "Hello<|endoftext|> world", "   spaces    before"],
  "models/stories260K/hf": ["<s>Hello</s> world", "One day, a little boy named Tim went to the park."],
  "models/llama2-tokenizer/hf": ["<s>Hello</s> world", "</s>"],
};

const meta = {
  generator: "gen.mjs (see README.md)",
  node: process.version,
  "@huggingface/tokenizers": pkg("@huggingface/tokenizers"),
  "@huggingface/jinja": pkg("@huggingface/jinja"),
};

// Variants: real vocabularies with the pre-tokenizer/decoder layout newer
// SentencePiece-style files use (no normalizer, Metaspace pre-tokenizer).
// The Go test applies the same edits (see variantEdits in golden_test.go).
const variants = {
  "variants/mistral-metaspace-first": {
    base: "tokenizers/mistral",
    edit: (tj) => {
      tj.normalizer = null;
      tj.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
    },
  },
  "variants/llama2-metaspace-always": {
    base: "tokenizers/llama2",
    edit: (tj) => {
      tj.normalizer = null;
      tj.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false };
      tj.decoder = { type: "Sequence", decoders: [{ type: "Metaspace", replacement: "\u2581", prepend_scheme: "always", split: false }, { type: "ByteFallback" }, { type: "Fuse" }] };
    },
  },
};
for (const [name, v] of Object.entries(variants)) families[name] = families[v.base];
function loadTokenizerJSON(dir) {
  const v = variants[dir];
  const tj = readJSON(path.join(shared, v ? v.base : dir, "tokenizer.json"));
  if (v) v.edit(tj);
  return tj;
}
function configDir(dir) { return variants[dir] ? variants[dir].base : dir; }

const encodeOut = { meta, tokenizers: {} };
for (const [dir, extra] of Object.entries(families)) {
  const tj = loadTokenizerJSON(dir);
  const cfgPath = path.join(shared, configDir(dir), "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? readJSON(cfgPath) : {};
  const tok = new Tokenizer(tj, cfg);
  const cases = [];
  for (const text of [...common, ...extra]) {
    const ids = tok.encode(text, { add_special_tokens: true }).ids;
    const idsNoSpecial = tok.encode(text, { add_special_tokens: false }).ids;
    const c = { text, ids, ids_no_special: idsNoSpecial };
    if (ids.length > 0) {
      c.decoded = tok.decode(ids, { skip_special_tokens: false });
      c.decoded_skip_special = tok.decode(ids, { skip_special_tokens: true });
    }
    cases.push(c);
  }
  encodeOut.tokenizers[dir] = cases;
}
fs.writeFileSync(path.join(outDir, "encode_golden.json"), JSON.stringify(encodeOut, null, 1) + "\n");

// Random strings and random id sequences from a fixed-seed generator.
function mulberry32(a) {
  return function () {
    a |= 0; a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pools = [
  "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", "      ", "\n\n\t\r",
  ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`", "éèêëàâäôöûüçñßøåæœ", "你好世界中文字符日本語한국어",
  "😀🎉👍🏽👨‍👩‍👧🚀", "\u0301\u0308\u200d\u00a0\u3000\u2028", "ـالعربيةрусскийελληνικά",
  "▁Ġ", "'s're've'll'd't'm",
];
const specialsIn = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<0x41>"];
function randomText(rnd) {
  const n = 1 + Math.floor(rnd() * 40);
  let out = "";
  for (let i = 0; i < n; i++) {
    if (rnd() < 0.03) { out += specialsIn[Math.floor(rnd() * specialsIn.length)]; continue; }
    const pool = [...pools[Math.floor(rnd() * pools.length)]];
    const run = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < run; k++) out += pool[Math.floor(rnd() * pool.length)];
  }
  return out;
}
const randomOut = { meta, tokenizers: {} };
for (const dir of Object.keys(families)) {
  const tj = loadTokenizerJSON(dir);
  const cfgPath = path.join(shared, configDir(dir), "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? readJSON(cfgPath) : {};
  const tok = new Tokenizer(tj, cfg);
  const rnd = mulberry32(12345);
  const vocabSize = tok.get_vocab(true).size;
  const texts = [], ids = [], decodes = [];
  for (let i = 0; i < 150; i++) {
    const text = randomText(rnd);
    texts.push(text);
    ids.push(tok.encode(text, { add_special_tokens: false }).ids);
  }
  for (let i = 0; i < 60; i++) {
    const n = 1 + Math.floor(rnd() * 12);
    const seq = [];
    for (let k = 0; k < n; k++) {
      const r = rnd();
      // Mix low ids (specials, byte tokens) with ids from anywhere.
      seq.push(r < 0.15 ? Math.floor(rnd() * 300) : Math.floor(rnd() * vocabSize));
    }
    decodes.push({ ids: seq, text: tok.decode(seq, { skip_special_tokens: false }), text_skip_special: tok.decode(seq, { skip_special_tokens: true }) });
  }
  randomOut.tokenizers[dir] = { texts, ids, decodes };
}
fs.writeFileSync(path.join(outDir, "random_golden.json"), JSON.stringify(randomOut) + "\n");

// Chat templates.
const templates = {};
for (const dir of ["tokenizers/llama2", "tokenizers/llama3", "tokenizers/qwen2.5", "tokenizers/mistral", "tokenizers/gpt2"]) {
  const cfg = readJSON(path.join(shared, dir, "tokenizer_config.json"));
  if (typeof cfg.chat_template === "string") templates[dir + "/tokenizer_config.json"] = { src: cfg.chat_template, cfg };
  for (const f of fs.readdirSync(path.join(shared, dir))) {
    if (f.startsWith("chat_template.") && f.endsWith(".jinja")) {
      templates[dir + "/" + f] = { src: fs.readFileSync(path.join(shared, dir, f), "utf8"), cfg };
    }
  }
}
const tok = (v) => (v == null ? "" : typeof v === "string" ? v : v.content);
const tools = [{ type: "function", function: { name: "get_weather", description: "Get the weather for a city.", parameters: { type: "object", properties: { city: { type: "string", description: "City name" }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city"] } } }];
const conversations = {
  single_user: [{ role: "user", content: "Hello!" }],
  system_multi_turn: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is the capital of France?" },
    { role: "assistant", content: "The capital of France is Paris." },
    { role: "user", content: "And Germany?" },
  ],
  whitespace_content: [{ role: "user", content: "  padded question \n" }, { role: "assistant", content: " answer with spaces  " }, { role: "user", content: "next" }],
  not_alternating: [{ role: "user", content: "a" }, { role: "user", content: "b" }],
  starts_with_assistant: [{ role: "assistant", content: "Hi, I am here." }, { role: "user", content: "ok" }],
};
const chatOut = { meta, cases: [] };
for (const [name, { src, cfg }] of Object.entries(templates)) {
  const t = new Template(src);
  for (const [conv, messages] of Object.entries(conversations)) {
    for (const agp of [false, true]) {
      for (const withTools of [false, true]) {
        if (withTools && conv !== "single_user") continue;
        const ctx = {
          messages, add_generation_prompt: agp,
          bos_token: tok(cfg.bos_token), eos_token: tok(cfg.eos_token),
          date_string: "26 Jul 2024",
        };
        if (withTools) ctx.tools = tools;
        const c = { template: name, conversation: conv, add_generation_prompt: agp, tools: withTools, extra: { date_string: "26 Jul 2024" } };
        try { c.output = t.render(ctx); } catch (e) { c.error = String(e.message || e); }
        chatOut.cases.push(c);
      }
    }
  }
}
// Small templates exercising the Jinja features real chat templates use.
const featureCtx = { xs: [1, 2, 3], s: "  Hi There  ", m: { b: [1, 2], a: { "z": "naïve ✓", "y": null } }, u: "naïve \"q\" \n", n: 0, f: 1.5, msgs: [{ role: "user", content: "a" }, { role: "assistant", content: "b" }] };
const features = {
  loop: "{% for x in xs %}{{ loop.index0 }}/{{ loop.index }}/{{ loop.length }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %},{% endfor %}",
  slicing: "{{ xs[1:] | join('-') }}|{{ xs[:-1] | join('-') }}|{{ xs[::-1] | join('-') }}|{{ 'hello'[1:3] }}|{{ msgs[-1].content }}",
  tests: "{% if m is mapping %}M{% endif %}{% if xs is mapping %}X{% endif %}{% if s is string %}S{% endif %}{% if nope is defined %}D{% endif %}{% if nope is not defined %}N{% endif %}{% if m.b is iterable %}I{% endif %}{% if n is number %}#{% endif %}{% if m.a.y is none %}0{% endif %}",
  strings: "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ s | trim }}][{{ s.upper() }}][{{ s.lower() }}][{{ s.split() | join(',') }}][{{ 'a,b'.split(',') | join('+') }}][{% if s.strip().startswith('Hi') %}sw{% endif %}][{{ s.replace('Hi', 'Yo') }}]",
  whitespace: "A  {%- if true -%}  B  {%- endif -%}  C\n{{- ' D ' -}}\n E",
  trim_lstrip_blocks: "<ul>\n  {% for x in xs %}\n    <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n{# comment #}\n  {% if true %}\nyes\n  {% endif %}\nend",
  tojson: "{{ m | tojson }}|{{ xs | tojson }}|{{ u | tojson }}|{{ f | tojson }}|{{ n | tojson }}",
  tojson_indent: "{{ m | tojson(indent=4) }}\n{{ msgs | tojson(indent=2) }}\n{{ [] | tojson(indent=2) }}",
  namespace: "{% set ns = namespace(total=0, seen=false) %}{% for x in xs %}{% set ns.total = ns.total + x %}{% if x == 2 %}{% set ns.seen = true %}{% endif %}{% endfor %}{{ ns.total }}{% if ns.seen %}!{% endif %}",
  expressions: "{{ 'x' ~ 1 ~ 'y' }}|{{ xs | length }}|{{ nope | default('dflt') }}|{{ 'yes' if 2 in xs else 'no' }}|{% if 'a' not in 'bcd' %}notin{% endif %}|{{ (n + 7) // 2 }}|{{ 7 % 3 }}|{{ xs | first }}{{ xs | last }}|{{ m['b'][0] }}|{{ m.get('zz', 'none') }}",
  items: "{% for k, v in m.items() %}{{ k }}={{ v | tojson }};{% endfor %}|{% for k in m %}{{ k }}{% endfor %}|{{ m | length }}",
  macro: "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }}",
  raise: "{% if xs | length > 2 %}{{ raise_exception('too many: ' ~ xs | length) }}{% endif %}",
  set_block: "{% set greeting %}Hi {{ s | trim }}{% endset %}[{{ greeting }}]",
  filters: "{{ msgs | map(attribute='role') | join(',') }}|{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join }}|{{ xs | reverse | list | join }}|{{ 'ab' | upper }}|{{ s | replace(' ', '_') }}",
};
// Templates in the style of other model families (written for this test,
// not copied from model repositories): they exercise operator precedence
// with filters, string splitting, namespaces and nested conditionals.
features.gemma_style = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";
features.think_split = "{% set ns = namespace(sys='') %}{% for m in msgs %}{% if m['role'] == 'system' %}{% set ns.sys = m['content'] %}{% endif %}{% endfor %}{{ ns.sys }}{% for m in msgs %}{% if m['role'] == 'assistant' %}{% set c = m['content'] %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}<A>{{ c }}{% else %}<U>{{ m['content'] }}{% endif %}{% endfor %}";
features.nested_ifs = "{%- for m in msgs -%}\n  {%- if m.role == 'user' -%}\n    {%- if loop.first -%}first:{%- elif loop.last -%}last:{%- else -%}mid:{%- endif -%}\n    {{ m.content }}\n  {%- else -%}\n    [{{ m.content | upper }}]\n  {%- endif %}\n{% endfor -%}";
const extraCtx = { messages: [{ role: "user", content: "  hi  " }, { role: "assistant", content: "<think>x</think>yo" }], bos_token: "<bos>", add_generation_prompt: true };
Object.assign(featureCtx, extraCtx);
featureCtx.msgs = [{ role: "system", content: "S" }, { role: "user", content: "a" }, { role: "assistant", content: "r</think>b" }, { role: "user", content: "c" }];
chatOut.features = [];
for (const [name, src] of Object.entries(features)) {
  const c = { name, template: src };
  try { c.output = new Template(src).render(featureCtx); } catch (e) { c.error = String(e.message || e); }
  chatOut.features.push(c);
}
chatOut.feature_context = featureCtx;
chatOut.conversations = conversations;
chatOut.tools = tools;
fs.writeFileSync(path.join(outDir, "chat_golden.json"), JSON.stringify(chatOut, null, 1) + "\n");
console.log("ok", Object.keys(encodeOut.tokenizers).length, "tokenizers", chatOut.cases.length, "chat cases");
