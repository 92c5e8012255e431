// GraphQL-over-HTTP spec conformance, as checked by graphql-http's own server audit.
import { auditServer } from 'graphql-http';
import { authorization, httpUrl } from './common.mjs';

// Every audit request must carry the token, or the server answers 401 to all.
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', authorization);
  return fetch(input, { ...init, headers });
};

const results = await auditServer({ url: httpUrl, fetchFn });
let failed = 0;
for (const r of results) {
  console.log(`${r.status.padEnd(6)} ${r.id}  ${r.name}`);
  if (r.status !== 'ok') console.log(`         reason: ${r.reason}`);
  // 'notice' is informational only; warn (SHOULD) and error (MUST) count.
  if (r.status === 'warn' || r.status === 'error') failed++;
}
const count = (s) => results.filter((r) => r.status === s).length;
console.log(`\n${count('ok')} ok, ${count('notice')} notice, ${count('warn')} warn, ${count('error')} error`);
if (failed) {
  console.error(`FAIL: ${failed} audit(s) not ok (warn or error)`);
  process.exit(1);
}
