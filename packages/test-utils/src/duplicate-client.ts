import type { Cluster, Redis } from 'ioredis'

/**
 * A new connection configured like `client`. ioredis 6 declares `duplicate` generically per class, so a
 * `Redis | Cluster` union cannot call it directly; with ioredis 5 this is plain `client.duplicate()`.
 */
export function duplicateClient<C extends Redis | Cluster>(client: C): C {
  return (client as unknown as { duplicate(): C }).duplicate()
}
