// Type-checks code written against the generated types the way a frontend
// would, so a schema change that breaks such code fails here.
import type {
  CreateMutation,
  ListQuery,
  StatusQuery,
  StatusQueryVariables,
  WatchSubscription,
} from './generated/graphql';
import { Health } from './generated/types';

export const variables: StatusQueryVariables = { id: '00000000-0000-0000-0000-000000000000' };

// @ts-expect-error `id` is a required variable.
export const missingId: StatusQueryVariables = {};

export function summary(data: StatusQuery): string {
  const d = data.deployment;
  // @ts-expect-error `deployment` is nullable: an unknown id answers null.
  data.deployment.health;
  if (!d) return 'not found';
  const cpu: number | undefined = d.resources?.cpuCores; // resources is nullable too
  const last: string | null | undefined = d.statusHistory[0]?.reason;
  return `${d.name} ${d.status} ${data.deployment?.health} ${d.replicaCounts.running}/${d.targetReplicas} cpu=${cpu} ${last}`;
}

export const healthy = (data: StatusQuery): boolean => data.deployment?.health === Health.Healthy;
export const names = (data: ListQuery): string[] => data.deployments.nodes.map((n) => n.name);
export const hasMore = (data: ListQuery): boolean => data.deployments.pageInfo.hasNextPage;
export const created = (data: CreateMutation): string => data.createDeployment.statusHistory[0]?.newStatus ?? '';
export const running = (data: WatchSubscription): number => data.deploymentUpdated.replicaCounts.running;
