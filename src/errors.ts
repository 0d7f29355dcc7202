// Every error the library throws is a LockError with a stable `code` that callers can switch on,
// the `key` it concerns (when there is one) and the underlying `cause` (when there is one).

export type LockErrorCode =
  | 'ERR_LOCK_ARGUMENT'
  | 'ERR_LOCK_TIMEOUT'
  | 'ERR_LOCK_ACQUISITION'
  | 'ERR_LOCK_RELEASE'
  | 'ERR_LOCK_EXPIRED'
  | 'ERR_LOCK_OWNERSHIP'
  | 'ERR_LOCK_DEADLOCK';

/** What every error may carry besides its message: the lock's key and the underlying cause. */
export interface LockErrorOptions {
  key?: string | undefined;
  cause?: unknown;
}

export class LockError extends Error {
  readonly code: LockErrorCode;
  readonly key: string | undefined;

  constructor(code: LockErrorCode, message: string, options: LockErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.key = options.key;
  }

  static {
    named(this, 'LockError');
  }
}

/**
 * Sets `name` on a class's prototype, as Error.prototype.name is set (not enumerable): spelled out,
 * because `constructor.name` is whatever a minifier renamed the class to.
 */
function named(cls: { prototype: Error }, name: string): void {
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: true, configurable: true });
}

/** Bad input, detected before any I/O. */
export class LockArgumentError extends LockError {
  static {
    named(this, 'LockArgumentError');
  }

  constructor(message: string, options?: LockErrorOptions) {
    super('ERR_LOCK_ARGUMENT', message, options);
  }
}

/** `wait` elapsed while other owners held the lock. */
export class LockTimeoutError extends LockError {
  static {
    named(this, 'LockTimeoutError');
  }

  /** How long the caller waited, in ms. */
  readonly waited: number;
  constructor(message: string, options: LockErrorOptions & { waited: number }) {
    super('ERR_LOCK_TIMEOUT', message, options);
    this.waited = options.waited;
  }
}

/** One node's answer in a multi-node acquisition (Redlock), for diagnostics. */
export interface NodeOutcome {
  node: string;
  outcome: 'granted' | 'held' | 'error' | 'timeout';
  error?: string;
}

/** The backend failed (unreachable, protocol error, no quorum). */
export class LockAcquisitionError extends LockError {
  static {
    named(this, 'LockAcquisitionError');
  }

  readonly nodes: readonly NodeOutcome[];
  constructor(message: string, options: LockErrorOptions & { nodes?: readonly NodeOutcome[] } = {}) {
    super('ERR_LOCK_ACQUISITION', message, options);
    this.nodes = options.nodes ?? [];
  }
}

/** A release could not be confirmed: the lease was already gone, taken over, or the backend failed. */
export class LockReleaseError extends LockError {
  static {
    named(this, 'LockReleaseError');
  }

  constructor(message: string, options?: LockErrorOptions) {
    super('ERR_LOCK_RELEASE', message, options);
  }
}

/** The lease was lost or expired; also the reason of `lock.signal` when it aborts. */
export class LockExpiredError extends LockError {
  static {
    named(this, 'LockExpiredError');
  }

  constructor(message: string, options?: LockErrorOptions) {
    super('ERR_LOCK_EXPIRED', message, options);
  }
}

/** The operation concerns a lock that another owner holds. */
export class LockOwnershipError extends LockError {
  static {
    named(this, 'LockOwnershipError');
  }

  /** The owner that holds it now, when known. */
  readonly holder: string | undefined;
  constructor(message: string, options: LockErrorOptions & { holder?: string | undefined } = {}) {
    super('ERR_LOCK_OWNERSHIP', message, options);
    this.holder = options.holder;
  }
}

/** A wait that could never end, such as upgrading a held read lock to a write lock. */
export class DeadlockError extends LockError {
  static {
    named(this, 'DeadlockError');
  }

  constructor(message: string, options?: LockErrorOptions) {
    super('ERR_LOCK_DEADLOCK', message, options);
  }
}
