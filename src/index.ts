export { Locksmith } from './locksmith.js';
export type { LockEvent, LocksmithEvents, LocksmithStats, LockStatus } from './locksmith.js';
export type { Locks, StatsSource, WaitAttempt, WaitForOptions } from './recipes/locks.js';
export type { Percentiles } from './core/stats.js';
export { Lock } from './lock.js';
export { Semaphore } from './primitives/semaphore.js';
export type { SemaphoreOptions, PermitOptions, TryPermitOptions } from './primitives/semaphore.js';
export { LockGroup } from './primitives/multi.js';
export type { AcquireAllOptions } from './primitives/multi.js';
export {
  LockError,
  LockArgumentError,
  LockTimeoutError,
  LockAcquisitionError,
  LockReleaseError,
  LockExpiredError,
  LockOwnershipError,
  DeadlockError,
} from './errors.js';
export type { LockErrorCode, LockErrorOptions, NodeOutcome } from './errors.js';
export type { LockBackend, BackendCapabilities, AcquireRequest, AcquireResult, LockInfo, LeaseHolder, LeaseMode } from './backend.js';
export type {
  AcquireOptions,
  TryAcquireOptions,
  RwOptions,
  RwPolicy,
  LocksmithOptions,
  ResolvedDefaults,
  Backoff,
  Logger,
} from './options.js';
export { Pool, PoolLease } from './recipes/pool.js';
export type { PoolOptions, PoolAcquireOptions, PoolTryAcquireOptions, PoolStats, PoolStatus, MemberStatus } from './recipes/pool.js';
export type { PoolStore } from './backends/shared/pools.js';
export { Election } from './recipes/election.js';
export type { ElectionOptions, CampaignOptions, Leader, ElectionEvents, ElectionStats } from './recipes/election.js';
export type { KeyFn, AsyncMethod } from './recipes/decorators.js';
export { StampedeGuard, memoryCacheStore } from './recipes/stampede.js';
export type { StampedeOptions, GetOptions, CacheStore, CacheEntry, StampedeStats } from './recipes/stampede.js';
export { RateLimiter } from './recipes/rate-limiter.js';
export type { RateLimiterOptions, TakeOptions, RateLimiterStats, RateDecision } from './recipes/rate-limiter.js';
export type { RateRequest, RateStore } from './backends/shared/gcra.js';
