// The keys of one lock, shared by the Redis and Redlock backends.

/** The Redis keys of one lock, by role (see keysFor). */
export type LockKeys = {
  /** The lease: "<owner>\n<fence>[w]", the readers' marker "s[w]", or (Redlock) a released fence "\n<fence>". */
  lease: string;
  /** Readers / semaphore permits: "<owner>" → "<expires ms>:<fence>". */
  shared: string;
  /** Writers waiting under writer preference: "<owner>" → "<expires ms>". */
  intents: string;
  /** A refusal seen where no lease could carry the mark (see scripts). */
  waiting: string;
  /** Fair mode: waiting owners by arrival, and when each one's place lapses. */
  queue: string;
  queueExp: string;
  /** A rate limiter's bucket (rate.ts). */
  rate: string;
  /** A pool's members (pools.ts). */
  members: string;
};

/**
 * The escaped name is the {hash tag}, so every key of a lock lands in one Cluster slot (no
 * CROSSSLOT); escaping braces keeps a name like "}x" from ending the tag early (an empty tag would
 * hash each whole key to a different slot).
 */
export function keysFor(prefix: string, name: string): LockKeys {
  const tag = tagOf(prefix, name);
  return {
    lease: `${tag}:lease`,
    shared: `${tag}:shared`,
    intents: `${tag}:intents`,
    waiting: `${tag}:waiting`,
    queue: `${tag}:queue`,
    queueExp: `${tag}:queue-exp`,
    rate: `${tag}:rate`,
    members: `${tag}:members`,
  };
}

const tagOf = (prefix: string, name: string): string =>
  `${prefix}{${/[%{}]/.test(name) ? name.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) : name}}`;

/** keysFor(prefix, name).lease alone, for the common path. */
export const leaseKey = (prefix: string, name: string): string => `${tagOf(prefix, name)}:lease`;

/** keysFor(prefix, name).rate alone, for a rate limiter's every take. */
export const rateKey = (prefix: string, name: string): string => `${tagOf(prefix, name)}:rate`;

/** The wake channel of a prefix: releases publish the lease key there. */
export const wakeChannel = (prefix: string): string => `${prefix}wake`;
