// The grant and the release, the statements on every lock's path, sent without the parts of pg's
// query path they do not need. pg's Query asks the server to describe each result (one more message
// each way), turns every row into an object by that description, and builds a Result and a promise
// around it. These statements' columns are known here, and their values are wanted as text, so they
// go out as pg's own extended-protocol messages but for the Describe (Parse once per connection,
// then Bind, Execute, Sync) and their rows come back as the server's text. Measured on one
// connection, a pg_try_advisory_lock + pg_advisory_unlock pair sent this way ran at 1.17-1.27x the
// same pair through client.query().
//
// It is pg's documented way to run a custom query (an object with submit(), as pg-cursor is), and it
// talks to pg's connection only through the methods pg-cursor uses. A client that does not look like
// pg's (or runs in pipeline mode, which refuses custom queries) gets the plain query path instead.

import { run, type PgClientLike } from './client.js';
import type { Statement } from './sql.js';

/** One row: each column's text, in the statement's order (null for SQL NULL). */
export type TextRow = (string | null)[];

/** Parameters, as our statements take them: text, booleans, or arrays of digits and booleans. */
export type Param = string | boolean | readonly (string | boolean)[];

/** What a custom query uses of pg's connection (as pg-cursor does). */
interface Connection {
  parsedStatements: Record<string, string | undefined>;
  submittedNamedStatements: Record<string, string | undefined>;
  stream: { cork?(): void; uncork?(): void };
  parse(query: { name: string; text: string }): void;
  bind(config: { statement: string; values: string[] }): void;
  execute(config: Record<string, never>): void;
  sync(): void;
}

/** A pg client with a connection a custom query can drive. */
interface Drivable {
  connection?: Partial<Connection>;
  pipeline?: unknown;
}

/** Whether `client` can run lean statements (see the top of this file). */
export function canRunLean(client: PgClientLike): boolean {
  const c = (client as Drivable).connection;
  return (
    !(client as Drivable).pipeline &&
    typeof c === 'object' &&
    c !== null &&
    typeof c.parse === 'function' &&
    typeof c.bind === 'function' &&
    typeof c.execute === 'function' &&
    typeof c.sync === 'function' &&
    typeof c.parsedStatements === 'object' &&
    typeof c.submittedNamedStatements === 'object' &&
    typeof c.stream === 'object'
  );
}

/**
 * Text as PostgreSQL reads a parameter. Arrays here hold only digits and booleans (keys, fences,
 * flags), which need no quoting in an array literal.
 */
function text(value: Param): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 't' : 'f';
  return `{${value.map((v) => (typeof v === 'boolean' ? (v ? 't' : 'f') : v)).join(',')}}`;
}

/**
 * The custom query: pg calls submit() when the connection is free, then the handlers with the
 * server's messages. The names `name` and `text` are pg's: it records the statement as prepared on
 * the connection by them (and forgets it when it fails).
 */
class LeanQuery {
  readonly name: string;
  readonly text: string;
  readonly #values: string[];
  readonly #rows: TextRow[] = [];
  /** pg replaces it to enforce a query_timeout: always called through the property. */
  callback: (error: unknown, rows?: TextRow[]) => void;

  constructor(statement: Statement, values: string[], callback: (error: unknown, rows?: TextRow[]) => void) {
    this.name = statement.name;
    this.text = statement.text;
    this.#values = values;
    this.callback = callback;
  }

  submit(connection: Connection): null {
    // One write for the messages, as pg's own Query does.
    connection.stream.cork?.();
    try {
      if (connection.parsedStatements[this.name] === undefined && connection.submittedNamedStatements[this.name] === undefined) {
        connection.parse({ name: this.name, text: this.text });
        connection.submittedNamedStatements[this.name] = this.text;
      }
      connection.bind({ statement: this.name, values: this.#values });
      connection.execute({});
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleDataRow(message: { fields: TextRow }): void {
    this.#rows.push(message.fields);
  }

  /** pg clears the query before calling this: ReadyForQuery then goes to no one. */
  handleError(error: unknown): void {
    this.callback(error);
  }

  handleReadyForQuery(): void {
    this.callback(null, this.#rows);
  }

  // Nothing to do: no description was asked for, the rows are complete at ReadyForQuery, and these
  // statements neither suspend nor copy.
  handleRowDescription(): void {}
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {}
  handleCopyData(): void {}
}

/** Runs `statement` on `client` (one that canRunLean) and answers its rows as text. */
export function runLean(client: PgClientLike, statement: Statement, values: Param[]): Promise<TextRow[]> {
  return new Promise((resolve, reject) => {
    const query = new LeanQuery(statement, values.map(text), (error, rows) =>
      error ? reject(error instanceof Error ? error : new Error('the server failed the statement', { cause: error })) : resolve(rows ?? []),
    );
    (client.query as unknown as (q: LeanQuery) => void).call(client, query);
  });
}

/** The same through pg's plain query path, for any other client: each row's columns as text, in order. */
export function runPlain(client: PgClientLike, statement: Statement, values: Param[]): Promise<TextRow[]> {
  return run(client, statement, values as unknown[]).then((rows) =>
    // Our statements' columns are text, integers and booleans.
    rows.map((row) =>
      Object.values(row).map((v) =>
        v === null || v === undefined ? null : typeof v === 'boolean' ? (v ? 't' : 'f') : String(v as string | number),
      ),
    ),
  );
}
