// Idempotency keys as the README tells client teams to send them: Apollo
// Client with a link that sets the header from the operation's context,
// and urql with fetchOptions. A retry with the same key gets the same
// deployment back and creates nothing.
import { randomUUID } from 'node:crypto';
import { authorization, fail, httpUrl, post, show, uniqueName } from './common.mjs';

const { ApolloClient, ApolloLink, InMemoryCache, HttpLink, gql } = await import('@apollo/client/core/index.js');
const CREATE = gql`
  mutation Create($name: String!) {
    createDeployment(input: { name: $name, targetReplicas: 1, resources: { cpuCores: 1, memoryMb: 64, storageGb: 1 } }) {
      id
      name
    }
  }
`;

const idempotency = new ApolloLink((operation, forward) => {
  const { idempotencyKey } = operation.getContext();
  if (idempotencyKey) {
    operation.setContext(({ headers = {} }) => ({
      headers: { ...headers, 'Idempotency-Key': `"${idempotencyKey}"` },
    }));
  }
  return forward(operation);
});
const apollo = new ApolloClient({
  link: idempotency.concat(new HttpLink({ uri: httpUrl, headers: { authorization } })),
  cache: new InMemoryCache(),
});

const name = uniqueName('apollo');
const idempotencyKey = randomUUID();
const first = await apollo.mutate({ mutation: CREATE, variables: { name }, context: { idempotencyKey } });
const retry = await apollo.mutate({ mutation: CREATE, variables: { name }, context: { idempotencyKey } });
if (first.data?.createDeployment?.id !== retry.data?.createDeployment?.id) {
  fail(`Apollo's retry with the same key got another answer: ${show(first.data)} then ${show(retry.data)}`);
}
try {
  const again = await apollo.mutate({ mutation: CREATE, variables: { name }, context: { idempotencyKey: randomUUID() } });
  if (!again.errors) fail(`a new key for the same name created twice: ${show(again)}`);
} catch (error) {
  if (!String(error.message).includes('already have a deployment')) fail(`a new key: ${error.message}`);
}
console.log(`ok: Apollo, the same key twice: one deployment ${first.data.createDeployment.id}`);

const { Client, fetchExchange } = await import('@urql/core');
const urql = new Client({ url: httpUrl, exchanges: [fetchExchange], fetchOptions: { headers: { authorization } } });
const urqlName = uniqueName('urql');
const urqlKey = randomUUID();
const send = () =>
  urql
    .mutation(CREATE.loc.source.body, { name: urqlName }, {
      fetchOptions: { headers: { authorization, 'Idempotency-Key': `"${urqlKey}"` } },
    })
    .toPromise();
const [a, b] = [await send(), await send()];
if (a.error || b.error || a.data.createDeployment.id !== b.data.createDeployment.id) {
  fail(`urql with one key: ${show(a.data ?? a.error?.message)} then ${show(b.data ?? b.error?.message)}`);
}
const count = await post('{ deployments(first: 100) { nodes { name } } }');
const names = count.data.deployments.nodes.map((node) => node.name);
if (names.filter((n) => n === name).length !== 1 || names.filter((n) => n === urqlName).length !== 1) {
  fail(`expected one deployment each, got ${show(names)}`);
}
console.log(`ok: urql, the same key twice: one deployment ${a.data.createDeployment.id}`);
