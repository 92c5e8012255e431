// The server's schema as GraphQL clients see it through introspection must
// equal the checked-in schema.graphql, with graphql-js 16 and 17 alike.
import { readFileSync } from 'node:fs';
import * as graphql16 from 'graphql';
import * as graphql17 from 'graphql17';
import { post, show } from './common.mjs';

const sdl = readFileSync(new URL('../../schema.graphql', import.meta.url), 'utf8');

// Everything standard a client may ask for; `oneOf` (isOneOf) only where
// this graphql-js version knows it (an unknown option is simply ignored).
const OPTIONS = {
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
};

// Depth as the server limits it: each nested field selection adds one;
// fragments (named or inline) add nothing and are expanded in place.
function maxDepth(g, document) {
  const fragments = new Map(
    document.definitions
      .filter((d) => d.kind === g.Kind.FRAGMENT_DEFINITION)
      .map((d) => [d.name.value, d]),
  );
  const depth = (selectionSet) =>
    Math.max(
      0,
      ...(selectionSet?.selections ?? []).map((s) => {
        if (s.kind === g.Kind.FIELD) return 1 + depth(s.selectionSet);
        if (s.kind === g.Kind.INLINE_FRAGMENT) return depth(s.selectionSet);
        return depth(fragments.get(s.name.value).selectionSet);
      }),
    );
  return Math.max(
    ...document.definitions
      .filter((d) => d.kind === g.Kind.OPERATION_DEFINITION)
      .map((d) => depth(d.selectionSet)),
  );
}

// A line diff (LCS) showing only the changed lines with two lines of context.
function diff(expected, actual, maxLines = 60) {
  const a = expected.split('\n');
  const b = actual.split('\n');
  const lcs = Array.from({ length: a.length + 1 }, () => new Int32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const ops = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    // Each op keeps the 1-based line numbers it sits at in both texts.
    if (i < a.length && j < b.length && a[i] === b[j]) ops.push(['  ', a[i++], i, ++j]);
    else if (i < a.length && (j === b.length || lcs[i + 1][j] >= lcs[i][j + 1])) ops.push(['- ', a[i++], i, j + 1]);
    else ops.push(['+ ', b[j++], i + 1, j]);
  }
  const near = (k) => ops.slice(Math.max(0, k - 2), k + 3).some(([op]) => op !== '  ');
  const out = [];
  let inHunk = false;
  ops.forEach(([op, line, ai, bj], k) => {
    if (!near(k)) return void (inHunk = false);
    if (!inHunk) out.push(`@@ schema.graphql printed line ${ai}, server line ${bj} @@`);
    inHunk = true;
    out.push(`${op}${line}`);
  });
  return out.slice(0, maxLines).join('\n') + (out.length > maxLines ? '\n  ... (diff truncated)' : '');
}

const versions = [['graphql 16', graphql16], ['graphql 17', graphql17]];
// Printed first, whatever the server answers: its introspection depth limit is tuned to these.
for (const [label, g] of versions) {
  const query = g.getIntrospectionQuery(OPTIONS);
  const oneOf = query.includes('isOneOf') ? 'with isOneOf' : 'without isOneOf';
  console.log(`${label} (${g.version}): introspection query ${oneOf}, max selection depth ${maxDepth(g, g.parse(query))}`);
}

let failed = false;
for (const [label, g] of versions) {
  const { data, errors } = await post(g.getIntrospectionQuery(OPTIONS));
  if (errors?.length || !data) {
    console.error(`FAIL ${label}: introspection answered errors: ${show(errors ?? 'no data')}`);
    failed = true;
    continue;
  }
  const actual = g.printSchema(g.buildClientSchema(data));
  const expected = g.printSchema(g.buildSchema(sdl));
  if (actual === expected) {
    console.log(`ok   ${label}: introspected schema equals schema.graphql (${expected.split('\n').length} printed lines)`);
  } else {
    console.error(`FAIL ${label}: introspected schema differs from schema.graphql (- schema.graphql, + server):`);
    console.error(diff(expected, actual));
    failed = true;
  }
}
if (failed) process.exit(1);
