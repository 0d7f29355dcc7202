// Lock names as advisory keys, and the values derived from them that every statement sends: computed
// once per name and kept in bounded maps, since names may be endless (one per order, say).

import { LockArgumentError } from '../../errors.js';
import { inspectKeys } from './inspect.js';
import { advisoryKey, slotKey, waitKey } from './keys.js';

/** `map`'s value for `id`, made on first use; a full map starts over. */
function remember<K, T>(map: Map<K, T>, id: K, bound: number, make: () => T): T {
  let value = map.get(id);
  if (value === undefined) {
    value = make();
    if (map.size >= bound) map.clear();
    map.set(id, value);
  }
  return value;
}

export class Names {
  readonly #keys = new Map<string, bigint>();
  readonly #texts = new Map<bigint, string>();
  readonly #waits = new Map<bigint, string>();
  readonly #inspected = new Map<bigint, string>();
  readonly #slots = new Map<string, bigint[]>();

  /** `custom`: the user's own name → key function (checked on every call: it is not ours). */
  constructor(private readonly custom: ((name: string) => bigint) | undefined) {}

  key(name: string): bigint {
    if (!this.custom) return remember(this.#keys, name, 1024, () => advisoryKey(name));
    const k: unknown = this.custom(name);
    if (typeof k !== 'bigint' || BigInt.asIntN(64, k) !== k) {
      throw new LockArgumentError(`postgresBackend(): key("${name.slice(0, 40)}") must return a bigint in the signed 64-bit range`, {
        key: name,
      });
    }
    return k;
  }

  /** The name's key as text, as statements take it (and the NOTIFY payload that wakes its waiters). */
  text(nameKey: bigint): string {
    return remember(this.#texts, nameKey, 1024, () => String(nameKey));
  }

  /** The key its waiters hold shared while they wait, as text. */
  wait(nameKey: bigint): string {
    return remember(this.#waits, nameKey, 1024, () => String(waitKey(nameKey)));
  }

  /** A semaphore's slot keys. */
  slots(nameKey: bigint, limit: number): bigint[] {
    return remember(this.#slots, `${nameKey}/${limit}`, 64, () => Array.from({ length: limit }, (_, i) => slotKey(nameKey, i)));
  }

  /** The array literal of every key inspect looks at for the name. */
  inspected(nameKey: bigint): string {
    return remember(this.#inspected, nameKey, 1024, () => `{${inspectKeys(nameKey).join(',')}}`);
  }
}
