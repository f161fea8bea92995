// scenarios.js: node-postgres (pg, with pg-cursor) through lakeproxy in transaction pooling.
// node-postgres sends a named statement's Parse once per connection and only Bind/Execute
// after it, reads a cursor through a portal with Execute row limits and Flush (no Sync until
// the cursor closes), and runs queries without parameters as simple Query messages: each must
// give the rows a direct connection gives, a tenant under row-level security its own rows only,
// and a masked user masked values whatever is used.
//   node scenarios.js HOST PORT
// Prints "ok - ..." or "not ok - ..." per check; exits 0 when all pass.
'use strict';
const { Client } = require('pg');
const Cursor = require('pg-cursor');

const [host, port] = process.argv.slice(2);
const failures = [];

function check(name, ok) {
  console.log((ok ? 'ok - ' : 'not ok - ') + name);
  if (!ok) failures.push(name);
}

async function connect(user, extra = {}) {
  const c = new Client({
    host, port: Number(port), database: 'app_txn', user, password: `${user}-secret`, ...extra,
  });
  await c.connect();
  return c;
}

// A named statement's Parse goes to one server connection only; later executions, sent as
// Bind/Execute alone, land on others and must still find it.
async function namedStatements() {
  const c = await connect('alice');
  let all = true;
  for (let i = 1; i <= 50; i++) {
    const r = await c.query({ name: 'item-by-id', text: 'SELECT name FROM items WHERE id = $1', values: [i] });
    all = all && r.rows.length === 1 && r.rows[0].name === `item ${i}`;
  }
  check('named statement executed 50 times over pooled servers', all);
  await c.end();
}

// Errors carry their SQLSTATE; the connection works after them, in and out of a transaction.
async function errors() {
  const c = await connect('alice');
  let code = null;
  try { await c.query('SELECT 1/$1::int', [0]); } catch (e) { code = e.code; }
  check('division by zero raises 22012', code === '22012');
  await c.query('BEGIN');
  code = null;
  try { await c.query('SELECT * FROM no_such_table'); } catch (e) { code = e.code; }
  await c.query('ROLLBACK');
  check('an error inside a transaction raises 42P01', code === '42P01');
  const r = await c.query('SELECT count(*)::int AS n FROM items');
  check('usable after a rolled-back failed transaction', r.rows[0].n === 1000);
  await c.end();
}

// A transaction's statements stay on one server: a temporary table made in it is seen by all.
async function transaction() {
  const c = await connect('alice');
  await c.query('BEGIN');
  const pid1 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  await c.query('CREATE TEMP TABLE node_tx (a int) ON COMMIT DROP');
  for (let i = 0; i < 100; i++) await c.query('INSERT INTO node_tx VALUES ($1)', [i]);
  const r = await c.query('SELECT count(*)::int AS n, sum(a)::int AS s FROM node_tx');
  const pid2 = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  await c.query('COMMIT');
  check('a transaction of 100 inserts stays on one server',
    r.rows[0].n === 100 && r.rows[0].s === 4950 && pid1 === pid2);
  await c.end();
}

// Several statements in one simple query give one result each.
async function multiStatement() {
  const c = await connect('alice');
  const rs = await c.query("SELECT 1 AS a; SELECT 'two' AS b; SELECT count(*)::int AS n FROM items");
  check('three statements in one simple query: three results',
    rs.length === 3 && rs[0].rows[0].a === 1 && rs[1].rows[0].b === 'two' && rs[2].rows[0].n === 1000);
  await c.end();
}

// pg-cursor: Execute with a row limit, then Flush; PortalSuspended between reads. Every row
// arrives once and in order, in and out of an explicit transaction.
async function cursorRead(c, batch) {
  const cur = c.query(new Cursor('SELECT id, name FROM items WHERE id > $1 ORDER BY id', [0]));
  let expect = 1;
  let inOrder = true;
  for (;;) {
    const rows = await cur.read(batch);
    if (rows.length === 0) break;
    for (const row of rows) {
      inOrder = inOrder && row.id === expect && row.name === `item ${expect}`;
      expect++;
    }
  }
  await cur.close();
  return inOrder && expect === 1001;
}

async function cursors() {
  const c = await connect('alice');
  check('pg-cursor reads 1000 rows 37 at a time, in order', await cursorRead(c, 37));
  await c.query('BEGIN');
  const ok = await cursorRead(c, 100);
  await c.query('COMMIT');
  check('pg-cursor inside a transaction', ok);
  const r = await c.query('SELECT 42 AS x');
  check('usable after the cursors', r.rows[0].x === 42);
  await c.end();
}

// 24 clients over the pool's 4 server connections, named statements and transactions mixed.
async function manyClients() {
  const errs = [];
  await Promise.all(Array.from({ length: 24 }, async (_, n) => {
    try {
      const c = await connect('alice');
      for (let i = 0; i < 40; i++) {
        const id = n * 40 + i + 1;
        const s = await c.query({ name: 'sum', text: 'SELECT $1::int + $2::int AS s', values: [n, i] });
        if (s.rows[0].s !== n + i) throw new Error('wrong sum');
        await c.query('BEGIN');
        const r = await c.query({ name: 'item', text: 'SELECT name FROM items WHERE id = $1', values: [id] });
        await c.query('COMMIT');
        if (r.rows[0].name !== `item ${id}`) throw new Error(`wrong item ${r.rows[0].name}`);
      }
      await c.end();
    } catch (e) {
      errs.push(String(e));
    }
  }));
  check('24 clients over 4 server connections: no error, every answer right', errs.length === 0);
  if (errs.length) console.log(`    ${errs[0]}`);
}

// application_name from the startup packet is the server's, whichever server serves the query.
async function applicationName() {
  const c = await connect('alice', { application_name: 'node-scenarios' });
  let all = true;
  for (let i = 0; i < 10; i++) {
    const r = await c.query("SELECT current_setting('application_name') AS a");
    all = all && r.rows[0].a === 'node-scenarios';
  }
  check('application_name is the server\'s on every query', all);
  await c.end();
}

// TLS without checking the test certificate.
async function tls() {
  const c = await connect('alice', { ssl: { rejectUnauthorized: false } });
  const r = await c.query({ name: 'tls-item', text: 'SELECT name FROM items WHERE id = $1', values: [7] });
  check('over TLS: a named statement', r.rows[0].name === 'item 7');
  await c.end();
}

// Row-level security (database app_rls): two tenants' clients share the pool's 4 server
// connections through named statements, each sees only its rows, and setting the attribute
// itself is refused (42501) without changing what the client sees.
async function rowLevelSecurity() {
  const text = 'SELECT count(*)::int AS n, min(tenant_id) AS lo, max(tenant_id) AS hi FROM rls_docs WHERE id > $1';
  const errs = [];
  await Promise.all(Array.from({ length: 12 }, async (_, n) => {
    const tenant = n % 2 === 0 ? 3 : 7;
    try {
      const c = await connect(`tenant${tenant}`, { database: 'app_rls' });
      for (let i = 0; i < 20; i++) {
        const r = await c.query({ name: 'docs', text, values: [0] });
        const row = r.rows[0];
        if (row.n !== 100 || row.lo !== tenant || row.hi !== tenant) {
          throw new Error(`tenant ${tenant} saw ${JSON.stringify(row)}`);
        }
      }
      await c.end();
    } catch (e) {
      errs.push(String(e));
    }
  }));
  check('RLS: 12 clients of two tenants over 4 servers each see only their own rows', errs.length === 0);
  if (errs.length) console.log(`    ${errs[0]}`);
  const c = await connect('tenant3', { database: 'app_rls' });
  let code = null;
  try { await c.query('SELECT set_config($1, $2, false)', ['app.tenant_id', '7']); } catch (e) { code = e.code; }
  check('RLS: set_config($1, $2, false) is refused with 42501', code === '42501');
  const r = await c.query({ name: 'docs', text, values: [0] });
  check('RLS: after the refusal the client still sees only its rows', r.rows[0].lo === 3 && r.rows[0].hi === 3);
  await c.end();
}

const MASKED = 'SELECT id, email, ssn FROM customers WHERE id <= $1 ORDER BY id';
const WANT = '1 a***@example.com ****3333|2 g***@navy.example ****6666';
const lines = (rows) => rows.map((r) => `${r.id} ${r.email} ${r.ssn}`).join('|');

// A masked user sees masked values through unnamed and named statements, a cursor and binary
// results; an expression over a masked column is refused (42501); the exempt user sees all.
async function masking() {
  const c = await connect('mallory');
  check('masked: unnamed statement', lines((await c.query(MASKED, [2])).rows) === WANT);
  let named = '';
  for (let i = 0; i < 3; i++) named = lines((await c.query({ name: 'm', text: MASKED, values: [2] })).rows);
  check('masked: named statement', named === WANT);
  const cur = c.query(new Cursor(MASKED, [2]));
  const rows = [...(await cur.read(1)), ...(await cur.read(5))];
  await cur.close();
  check('masked: cursor read one row per Execute', lines(rows) === WANT);
  const bin = await c.query({ text: 'SELECT email FROM customers WHERE id = $1', values: [1], binary: true });
  check('masked: binary results', bin.rows[0].email.toString() === 'a***@example.com');
  let code = null;
  try { await c.query('SELECT lower(email) FROM customers'); } catch (e) { code = e.code; }
  check('an expression over a masked column is refused with 42501', code === '42501');
  const r = await c.query('SELECT name FROM customers WHERE id = 1');
  check('usable after the refusal', r.rows[0].name === 'Ada Lovelace');
  await c.end();
  const a = await connect('alice');
  const real = await a.query(MASKED, [1]);
  check('the exempt user sees the real values', lines(real.rows) === '1 ada.secret@example.com 111-22-3333');
  await a.end();
}

(async () => {
  for (const scenario of [namedStatements, errors, transaction, multiStatement, cursors,
    manyClients, applicationName, tls, rowLevelSecurity, masking]) {
    try {
      await scenario();
    } catch (e) {
      check(`${scenario.name} ran without an exception (${e})`, false);
    }
  }
  process.exit(failures.length ? 1 : 0);
})();
