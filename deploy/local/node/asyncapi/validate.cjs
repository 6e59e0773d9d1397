// Parse an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package-lock.json) and print its diagnostics as one JSON object on stdout:
//   {"valid": bool, "counts": {"error": n, "warning": n, "information": n, "hint": n},
//    "diagnostics": [{"severity", "code", "message", "path"}]}
// Usage: NODE_PATH=<install dir>/node_modules node validate.cjs <file | ->   ("-" reads stdin)
"use strict";

const fs = require("node:fs");
const { Parser } = require("@asyncapi/parser");

const SEVERITIES = ["error", "warning", "information", "hint"];

async function main() {
  const source = process.argv[2];
  if (!source) {
    console.error("usage: node validate.cjs <asyncapi.json | ->");
    process.exit(2);
  }
  const text = fs.readFileSync(source === "-" ? 0 : source, "utf8");
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text, {
    source: source === "-" ? undefined : source,
  });
  const counts = Object.fromEntries(SEVERITIES.map((name) => [name, 0]));
  const listed = diagnostics.map((d) => {
    const severity = SEVERITIES[d.severity] ?? String(d.severity);
    counts[severity] = (counts[severity] ?? 0) + 1;
    return { severity, code: String(d.code), message: d.message, path: d.path.join(".") };
  });
  process.stdout.write(JSON.stringify({ valid: document !== undefined, counts, diagnostics: listed }));
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : String(error));
  process.exit(1);
});
