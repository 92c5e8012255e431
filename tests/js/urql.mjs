// urql with its defaults: short queries go out as GET
// (preferGetMethod: 'within-url-limit'), which the server must answer as
// GraphQL rather than with the GraphiQL page.
import { Client, fetchExchange } from '@urql/core';
import { authorization, fail, httpUrl, show } from './common.mjs';

const methods = [];
const client = new Client({
  url: httpUrl,
  exchanges: [fetchExchange],
  fetchOptions: { headers: { authorization } },
  fetch: (input, init) => {
    methods.push(init?.method ?? 'GET');
    return fetch(input, init);
  },
});

const query = '{ deployments(first: 1) { totalCount } }';
const { data, error } = await client.query(query, {}).toPromise();
console.log(`urql ${methods.join(', ')} ${httpUrl}: ${error ? `error ${error.message}` : show(data)}`);

if (methods.length !== 1 || methods[0] !== 'GET') fail(`expected one GET request, urql sent ${show(methods)}`);
if (error) {
  const status = error.response?.status ? ` (HTTP ${error.response.status})` : '';
  fail(`urql reported an error${status}: ${error.message}`);
}
if (typeof data?.deployments?.totalCount !== 'number') fail(`expected a numeric deployments.totalCount, got ${show(data)}`);
console.log(`ok: GET query answered, totalCount ${data.deployments.totalCount}`);
