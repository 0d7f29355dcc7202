// The fence sequence: schema-qualified (option `schema`, default public), created by the backend on
// first use, and refused when it exists but belongs to another role. A sequence found through
// search_path, or one another role owns, could be setval'd backwards by someone else, and fences
// would then repeat.

import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { CREATE_SEQUENCE, NAME_SEQUENCE, SEQUENCE_OWNER } from './sql.js';

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export interface FenceSequence {
  schema: string;
  name: string;
  /** As a regclass parameter takes it: both parts double-quoted, so case is kept as written. */
  regclass: string;
}

/** Checks the `schema` and `sequence` options (plain identifiers) before any I/O. */
export function fenceSequence(where: string, schema: unknown, name: unknown): FenceSequence {
  const s = schema === undefined ? 'public' : schema;
  const n = name === undefined ? 'locksmith_fence' : name;
  if (typeof s !== 'string' || !IDENTIFIER.test(s))
    throw new LockArgumentError(`${where}: schema must be an identifier (letters, digits and _, at most 63)`);
  if (typeof n !== 'string' || !IDENTIFIER.test(n))
    throw new LockArgumentError(
      `${where}: sequence must be an identifier (letters, digits and _, at most 63; the schema is its own option)`,
    );
  return { schema: s, name: n, regclass: `"${s}"."${n}"` };
}

interface Queryable {
  query(config: { text: string; values?: unknown[] }): Promise<{ rows: Record<string, unknown>[] }>;
}

/** Whether it exists, and if so that it is a sequence of ours; throws when it is not. */
async function owned(q: Queryable, seq: FenceSequence): Promise<boolean> {
  const row = (await q.query({ text: SEQUENCE_OWNER, values: [seq.schema, seq.name] })).rows[0];
  if (!row) return false;
  if (row.kind !== 'S' || row.mine !== true) {
    throw new LockAcquisitionError(
      `the fence sequence ${seq.schema}.${seq.name} exists but ${row.kind !== 'S' ? 'is not a sequence' : 'belongs to another role'}: fences from it could be set back by someone else; drop it or choose another schema/sequence`,
    );
  }
  return true;
}

/**
 * Makes sure the sequence exists and is ours. `inTransaction`: the caller's transaction is open (the
 * creation is then part of it); otherwise it runs in one of its own. True when this call created it.
 */
export async function ensureSequence(q: Queryable, seq: FenceSequence, inTransaction: boolean): Promise<boolean> {
  if (await owned(q, seq)) return false;
  // In the caller's transaction, a savepoint confines a failed create: two transactions creating the
  // sequence at once, the second fails with a unique violation when the first commits, which would
  // otherwise abort the caller's whole transaction (a job queue's workers starting together).
  const [begin, commit, rollback] = inTransaction
    ? ['SAVEPOINT locksmith_fence', 'RELEASE SAVEPOINT locksmith_fence', 'ROLLBACK TO SAVEPOINT locksmith_fence']
    : ['BEGIN', 'COMMIT', 'ROLLBACK'];
  await q.query({ text: begin });
  let created = false;
  try {
    await q.query({ text: NAME_SEQUENCE, values: [seq.schema, seq.name] });
    await q.query({ text: CREATE_SEQUENCE });
    await q.query({ text: commit });
    created = true;
  } catch (error) {
    await q.query({ text: rollback }).catch(() => undefined);
    if (inTransaction) await q.query({ text: commit }).catch(() => undefined);
    // Another process created it at the same moment (the catalog's unique index): it exists now.
    const code = (error as { code?: string }).code;
    if (code !== '23505' && code !== '42P07') throw error;
  }
  if (!(await owned(q, seq))) throw new LockAcquisitionError(`the fence sequence ${seq.schema}.${seq.name} could not be created`);
  return created;
}
