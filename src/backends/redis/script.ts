// One typed helper for every Lua script: its source and SHA, and the one function that turns its
// reply into a value. A reply of the wrong shape (a key holding a foreign value, a script of another
// version) and an error the server replied become a LockError with the reply as `cause`, here only.

import { createHash } from 'node:crypto';
import { LockAcquisitionError } from '../../errors.js';

export interface Script<R> {
  /** For messages: what the script does ("acquire", "release", ...). */
  readonly name: string;
  readonly source: string;
  readonly sha: string;
  /** The reply as a value; throws (any error) when the reply has another shape. */
  readonly decode: (reply: unknown) => R;
}

export function defineScript<R>(name: string, source: string, decode: (reply: unknown) => R): Script<R> {
  return { name, source, sha: createHash('sha1').update(source).digest('hex'), decode };
}

/** A reply the script could not have given. */
export class BadReply extends Error {
  constructor(readonly reply: unknown) {
    super(`unexpected reply ${describe(reply)}`);
  }
}

function describe(reply: unknown): string {
  try {
    return JSON.stringify(reply, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))?.slice(0, 120) ?? String(reply);
  } catch {
    return String(reply);
  }
}

/** An error the server sent back (as opposed to a connection that failed): the client libraries' names for it. */
const isReplyError = (error: unknown): error is Error =>
  error instanceof Error && (error.name === 'ReplyError' || error.name === 'ErrorReply');

/** The server lacks the script (restarted, or its scripts flushed): send the source. */
export function noScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/** A reply `s` could not have given (its decoder threw `error` on `raw`), as a LockAcquisitionError about `key`. */
export function badReply(s: Script<unknown>, key: string, error: unknown, raw: unknown): LockAcquisitionError {
  return new LockAcquisitionError(`"${key}": Redis answered ${s.name} with ${describe(raw)}`, {
    key,
    cause: error instanceof BadReply ? raw : error,
  });
}

/** A call of `s` about `key` that failed: an error the server replied becomes a LockAcquisitionError; a failed connection stays as it is. */
export function failedCall(s: Script<unknown>, key: string, error: unknown): unknown {
  if (!isReplyError(error)) return error;
  return new LockAcquisitionError(`"${key}": Redis refused ${s.name}: ${error.message}`, { key, cause: error });
}

// Decoders shared by several scripts.

/** An integer reply (ioredis and node-redis give a number; RESP3 clients may give a bigint). */
export function integer(reply: unknown): number {
  if (typeof reply === 'number' && Number.isSafeInteger(reply)) return reply;
  if (typeof reply === 'bigint' && reply >= BigInt(Number.MIN_SAFE_INTEGER) && reply <= BigInt(Number.MAX_SAFE_INTEGER))
    return Number(reply);
  throw new BadReply(reply);
}

/** A 0 / 1 reply. */
export function flag(reply: unknown): boolean {
  const n = integer(reply);
  if (n !== 0 && n !== 1) throw new BadReply(reply);
  return n === 1;
}

/** A fence: a positive integer, or the digits of one. */
export function fence(reply: unknown): bigint {
  if ((typeof reply === 'string' && /^[1-9]\d*$/.test(reply)) || (typeof reply === 'number' && Number.isSafeInteger(reply) && reply > 0))
    return BigInt(reply);
  throw new BadReply(reply);
}

/** What an acquire script answers: a grant, a refusal, or (plain requests only) "ask again with every key". */
export type Grant = { granted: true; fence: bigint } | { granted: false; retryAfter: number | undefined } | { granted: 'long' };

/**
 * An acquire's reply: the fence (> 0, a number or its digits), -1 - retry-after ms when refused (so -1:
 * unknown), or 0 for "long".
 */
export function grant(reply: unknown): Grant {
  if (typeof reply === 'string') return { granted: true, fence: fence(reply) };
  const n = integer(reply);
  if (n > 0) return { granted: true, fence: BigInt(n) };
  if (n === 0) return { granted: 'long' };
  return { granted: false, retryAfter: n === -1 ? undefined : -n - 1 };
}
