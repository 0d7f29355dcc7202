// node:diagnostics_channel: what tracers (OpenTelemetry, Datadog, a log line) subscribe to with no
// dependency on us and at no cost while nobody does (contexts are only built for a subscriber).
//
//   tracing:locksmith:acquire:{start,end,asyncStart,asyncEnd,error}  every lease asked for
//   tracing:locksmith:release:{…}                                    every lease given back
//   tracing:locksmith:extend:{…}                                     every renewal and extend()
//   locksmith:lost                                                   a lease lost (expired, refused, dropped)
//   locksmith:error                                                  an error with no caller to throw to
//
// Each tracing context carries key, backend and mode at start; by asyncEnd (or error) it also has
// outcome and, where they apply, owner, fence, waited (ms from asking to holding) and held (ms from
// grant to release).

import diagnostics from 'node:diagnostics_channel';
import type { LeaseMode } from '../backend.js';
import { LockError, LockTimeoutError } from '../errors.js';

export interface LockTraceContext {
  key: string;
  backend: string;
  mode: LeaseMode;
  owner?: string | undefined;
  fence?: bigint | undefined;
  waited?: number | undefined;
  held?: number | undefined;
  /** acquire: 'acquired' | 'timeout' | 'aborted' | 'failed'; release: 'released' | 'failed'; extend: 'extended' | 'refused' | 'failed'. */
  outcome?: string | undefined;
  /** Set by diagnostics_channel on the error channel. */
  error?: unknown;
}

export const acquireChannel = diagnostics.tracingChannel<LockTraceContext>('locksmith:acquire');
export const releaseChannel = diagnostics.tracingChannel<LockTraceContext>('locksmith:release');
export const extendChannel = diagnostics.tracingChannel<LockTraceContext>('locksmith:extend');
export const lostChannel = diagnostics.channel('locksmith:lost');
export const errorChannel = diagnostics.channel('locksmith:error');

type Tracing = typeof acquireChannel;

/** Someone subscribed to any part of `channel` (TracingChannel.hasSubscribers is newer than Node 20.0). */
export function traced(channel: Tracing): boolean {
  return (
    channel.start.hasSubscribers ||
    channel.end.hasSubscribers ||
    channel.asyncStart.hasSubscribers ||
    channel.asyncEnd.hasSubscribers ||
    channel.error.hasSubscribers
  );
}

/**
 * Runs `fn` inside `channel`'s trace (the caller checked traced() first, so a context is only built for
 * a subscriber). `fn` may fill the context in; the outcome is `done`, or what the error says.
 */
export function trace<T>(channel: Tracing, ctx: LockTraceContext, fn: (ctx: LockTraceContext) => Promise<T>, done: string): Promise<T> {
  return channel.tracePromise(async () => {
    try {
      const value = await fn(ctx);
      ctx.outcome ??= done;
      return value;
    } catch (error) {
      ctx.outcome ??= error instanceof LockTimeoutError ? 'timeout' : error instanceof LockError ? 'failed' : 'aborted';
      if (error instanceof LockTimeoutError) ctx.waited ??= error.waited;
      throw error;
    }
  }, ctx);
}
