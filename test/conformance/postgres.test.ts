// The conformance suite on PostgreSQL: a throw-away database on the machine's server. Each backend()
// is a new pool, as another process would have.
import { postgresBackend } from '../../src/backends/postgres/index.js';
import { createDatabase, type TestDatabase } from '../support/postgres.js';
import { conformance } from './suite.js';

let db: TestDatabase;

conformance({
  name: 'postgres',
  before: async () => {
    db = await createDatabase();
  },
  backend: () => {
    // Each backend's pool ends with it: the server's max_connections is shared with everyone.
    const pool = db.pool({ max: 20 });
    const backend = postgresBackend({ pool });
    return { ...backend, close: () => backend.close().then(() => pool.end()) };
  },
  after: async () => {
    await db.drop();
  },
});
