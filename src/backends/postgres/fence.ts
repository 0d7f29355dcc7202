// The fence sequence: schema-qualified (option `schema`, default public), created by the backend on
// first use, and refused when it exists but belongs to another role. A sequence found through
// search_path, or one another role owns, could be setval'd backwards by someone else, and fences
// would then repeat. The same goes for the tables beside it (rate buckets, pool members): another
// role's table would let that role lift a limit or add a member.

import { LockAcquisitionError, LockArgumentError } from '../../errors.js';
import { CREATE_SEQUENCE, NAME_SEQUENCE, RELATION_OWNER } from './sql.js';

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
  return ownedRelation(q, {
    schema: seq.schema,
    name: seq.name,
    kind: 'S',
    what: 'the fence sequence',
    risk: 'fences from it could be set back',
  });
}

/** A table the backend keeps beside the fence sequence (rate buckets, pool members). */
export interface SideTable {
  schema: string;
  name: string;
  /** Both parts double-quoted, as a statement names it. */
  quoted: string;
}

/** The table `<sequence>_<kind>` in the sequence's schema (identifiers checked by fenceSequence). */
export function sideTable(seq: FenceSequence, kind: 'rate' | 'pool'): SideTable {
  const name = `${seq.name}_${kind}`;
  return { schema: seq.schema, name, quoted: `"${seq.schema}"."${name}"` };
}

/**
 * Whether the relation exists, and if so that it is of `kind` and owned by the role we connect as;
 * throws when it is not (`risk`: what another owner could do with it).
 */
async function ownedRelation(
  q: Queryable,
  r: { schema: string; name: string; kind: 'S' | 'r'; what: string; risk: string },
): Promise<boolean> {
  const row = (await q.query({ text: RELATION_OWNER, values: [r.schema, r.name] })).rows[0];
  if (!row) return false;
  if (row.kind !== r.kind || row.mine !== true) {
    const why = row.kind !== r.kind ? `is not a ${r.kind === 'S' ? 'sequence' : 'table'}` : 'belongs to another role';
    throw new LockAcquisitionError(
      `${r.what} ${r.schema}.${r.name} exists but ${why}: ${r.risk} by someone else; drop it or choose another schema/sequence`,
    );
  }
  return true;
}

/**
 * Another session created the same relation at the same moment (IF NOT EXISTS does not cover a
 * race): the catalog's unique index (23505), the relation (42P07), or its row type (42710, "type
 * already exists", as four processes starting a rate limiter together met).
 */
const raced = (error: unknown): boolean => ['23505', '42P07', '42710'].includes((error as { code?: string } | null)?.code ?? '');

/**
 * Runs the side table's `create` (CREATE TABLE IF NOT EXISTS, which keeps a table someone else made)
 * and then makes sure the table is ours, or throws. `what` and `risk` word the refusal.
 */
export async function ensureSideTable(q: Queryable, t: SideTable, create: string, what: string, risk: string): Promise<void> {
  await q.query({ text: create }).catch((error: unknown) => {
    if (!raced(error)) throw error;
  });
  if (!(await ownedRelation(q, { schema: t.schema, name: t.name, kind: 'r', what, risk })))
    throw new LockAcquisitionError(`${what} ${t.schema}.${t.name} could not be created`);
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
    if (!raced(error)) throw error;
  }
  if (!(await owned(q, seq))) throw new LockAcquisitionError(`the fence sequence ${seq.schema}.${seq.name} could not be created`);
  return created;
}
