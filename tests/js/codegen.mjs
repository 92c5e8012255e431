// GraphQL Code Generator against the live server (schema by introspection
// over HTTP), then the TypeScript compiler over its output and code using it.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { generate } from '@graphql-codegen/cli';
import { authorization, fail, httpUrl } from './common.mjs';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
// Codegen resolves importSchemaTypesFrom against the working directory.
process.chdir(here('.'));
const types = here('./generated/types.ts');
const output = here('./generated/graphql.ts');
// A stale file must not make a failed run pass.
for (const file of [types, output]) rmSync(file, { force: true });

// Since typescript-operations 6 emits the enums its operations use itself, it
// cannot share a file with the `typescript` plugin's schema types (duplicate
// declarations): the schema types go to types.ts, which graphql.ts imports.
const config = { scalars: { DateTime: 'string' } }; // RFC 3339 on the wire

try {
  await generate(
    {
      schema: { [httpUrl]: { headers: { Authorization: authorization } } },
      documents: here('./operations.graphql'),
      generates: {
        [types]: { plugins: ['typescript'], config },
        [output]: {
          plugins: ['typescript-operations'],
          config: { ...config, importSchemaTypesFrom: './generated/types.ts' },
        },
      },
      silent: true,
    },
    true,
  );
} catch (e) {
  // Keep codegen's reasons, without its stack traces and list of supported schema sources.
  const reason = String(e?.message ?? e)
    .split('\n\nGraphQL Code Generator supports:')[0]
    .split('\n')
    .filter((line) => !/^\s+at /.test(line))
    .join('\n');
  fail(`codegen from ${httpUrl} failed:\n${reason}`);
}
console.log(`generated ${types} and ${output}`);

// --strict so nullability mistakes in the generated types are caught;
// --skipLibCheck skips only .d.ts files (the @types/node that codegen's own
// dependencies pull in), not the generated files or use-generated.ts.
const tsc = spawnSync(
  process.execPath,
  [
    here('./node_modules/typescript/bin/tsc'),
    '--noEmit', '--strict', '--skipLibCheck',
    '--target', 'es2022', '--module', 'esnext', '--moduleResolution', 'bundler',
    types, output, here('./use-generated.ts'),
  ],
  { encoding: 'utf8' },
);
if (tsc.status !== 0) fail(`tsc --noEmit --strict failed:\n${tsc.stdout}${tsc.stderr}`);
console.log('ok: tsc --noEmit --strict accepts generated/types.ts, generated/graphql.ts and use-generated.ts');
