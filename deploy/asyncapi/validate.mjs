// Validates an AsyncAPI document with the AsyncAPI initiative's own parser, independent of the
// Python that generates it: `node validate.mjs <document.json>`.
// Prints one line per diagnostic (severity, rule, path, message) and exits 1 when any is an
// error, 2 when the document cannot be read. Relative $refs (./json/*.json) resolve against the
// document's own location, so the committed schema files are checked too.
import { resolve } from 'node:path';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';

const SEVERITY = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

const [file] = process.argv.slice(2);
if (!file) {
  console.error('usage: node validate.mjs <asyncapi document>');
  process.exit(2);
}

const source = resolve(file);
const parser = new Parser();
let diagnostics;
try {
  // parse() validates, then resolves every $ref and builds the document model, so a reference
  // that cannot be followed is an error here even where validation alone would pass
  ({ diagnostics } = await fromFile(parser, source).parse());
} catch (err) {
  console.error(`${file}: cannot read: ${err.message}`);
  process.exit(2);
}

for (const d of diagnostics) {
  const path = d.path.length ? d.path.join('/') : '(document)';
  console.log(`${SEVERITY[d.severity] ?? d.severity} ${d.code} at ${path}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
const warnings = diagnostics.length - errors;
console.log(`${file}: ${errors} error(s), ${warnings} other diagnostic(s)`);
process.exit(errors ? 1 : 0);
