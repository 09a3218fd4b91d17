// Validates AsyncAPI documents with the official parser (@asyncapi/parser 3): prints one JSON line per document
// ({file, errors: [...], warnings: n}) and exits 1 when any document has an error-level diagnostic.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(file, "utf8"), { source: file });
  const errors = diagnostics
    .filter((d) => d.severity === DiagnosticSeverity.Error)
    .map((d) => ({ code: d.code, message: d.message, path: d.path.join(".") }));
  const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning)
    .map((d) => ({ code: d.code, message: d.message, path: d.path.join(".") }));
  const summary = document ? {
    version: document.version(),
    channels: document.channels().all().map((c) => c.address()),
    messages: document.components().messages().all().map((m) => m.name()),
  } : null;
  if (!document || errors.length) failed = true;
  console.log(JSON.stringify({ file, parsed: Boolean(document), errors, warnings, summary }));
}
process.exit(failed ? 1 : 0);
