// postgresjs.js: Postgres.js (the npm package postgres) through lakeproxy in transaction pooling.
// Postgres.js prepares every query with parameters as a named statement by default (prepare:
// true), sends the Parse once per connection and only Bind/Execute after it, pipelines the
// queries of concurrent callers on each connection, ends a batch with a single Sync, and reads
// cursors with Execute row limits. Poolers without protocol-level prepared statements need
// prepare: false; lakeproxy must give the rows a direct connection gives with the default, a
// tenant under row-level security its own rows only, and a masked user masked values.
//   node postgresjs.js HOST PORT
// Prints "ok - ..." or "not ok - ..." per check; exits 0 when all pass.
'use strict';
let postgres; // (an ES module: imported below, as CommonJS on any Node.js 18 or later can)

const [host, port] = process.argv.slice(2);
const failures = [];

function check(name, ok, detail) {
  console.log((ok ? 'ok - ' : 'not ok - ') + 'postgres.js: ' + name);
  if (!ok && detail !== undefined) console.log(`    ${detail}`);
  if (!ok) failures.push(name);
}

// Queries sent, counted by Postgres.js's debug hook. Postgres.js sends a query again, quietly,
// when a server answers its Bind with 26000 (no such prepared statement): through a pooler that
// does not carry prepared statements across servers the results come right, but each query
// sent more than once shows the statement was missing.
let sent = 0;

// A client of its own (a pool of up to max connections to lakeproxy) for user.
function connect(user, extra = {}) {
  return postgres({
    host, port: Number(port), database: 'app_txn', user, password: `${user}-secret`,
    max: 8, onnotice: () => {}, debug: () => { sent++; }, ...extra,
  });
}

// 400 concurrent queries of one prepared text from 8 connections over the pool's 4 servers:
// each connection prepares the statement once, and its Bind/Execute land on servers that
// never saw that Parse.
async function preparedStatements() {
  const sql = connect('alice');
  const ids = Array.from({ length: 400 }, (_, i) => (i % 1000) + 1);
  const before = sent;
  const rows = await Promise.all(ids.map((id) => sql`SELECT name FROM items WHERE id = ${id}`));
  const wrong = rows.findIndex((r, i) => r.length !== 1 || r[0].name !== `item ${ids[i]}`);
  check('400 concurrent prepared queries from 8 connections over 4 servers', wrong < 0,
    wrong >= 0 && JSON.stringify(rows[wrong]));
  check('each sent once: no server lacked the prepared statement', sent - before === 400,
    `${sent - before} sends`);
  const sums = await Promise.all(ids.slice(0, 50).map((id) => sql`SELECT ${id}::int + ${1}::int AS s`));
  check('a second prepared text beside the first', sums.every((r, i) => r[0].s === ids[i] + 1));
  await sql.end();
}

// A batch is one implicit transaction ended by one Sync: it commits whole, or not at all.
async function batches() {
  const sql = connect('alice');
  await sql`DROP TABLE IF EXISTS pgjs_batch`;
  await sql`CREATE TABLE pgjs_batch (a int PRIMARY KEY)`;
  const [, , [{ n }]] = await sql.batch([
    sql`INSERT INTO pgjs_batch VALUES (${1})`,
    sql`INSERT INTO pgjs_batch VALUES (${2})`,
    sql`SELECT count(*)::int AS n FROM pgjs_batch`,
  ]);
  check('a batch of three statements, one Sync', n === 2);
  let err = null;
  try {
    await sql.batch([sql`INSERT INTO pgjs_batch VALUES (${3})`, sql`INSERT INTO pgjs_batch VALUES (${1})`]);
  } catch (e) { err = e; }
  const [{ n: after }] = await sql`SELECT count(*)::int AS n FROM pgjs_batch`;
  check('a failing batch: 23505 at index 1, nothing of it committed',
    err && err.code === '23505' && err.index === 1 && after === 2, `${err && err.code} ${err && err.index} ${after}`);
  await sql`DROP TABLE pgjs_batch`;
  await sql.end();
}

// sql.begin keeps its statements on one server; a nested begin is a savepoint whose failure
// rolls back only its own work.
async function transactions() {
  const sql = connect('alice');
  const got = await sql.begin(async (tx) => {
    const [{ p: pid1 }] = await tx`SELECT pg_backend_pid() AS p`;
    await tx`CREATE TEMP TABLE pgjs_tx (a int) ON COMMIT DROP`;
    for (let i = 0; i < 50; i++) await tx`INSERT INTO pgjs_tx VALUES (${i})`;
    let code = null;
    try {
      await tx.begin(async (sp) => {
        await sp`INSERT INTO pgjs_tx VALUES (${1000})`;
        await sp`SELECT 1/${0}::int`;
      });
    } catch (e) { code = e.code; }
    const [{ n, s }] = await tx`SELECT count(*)::int AS n, sum(a)::int AS s FROM pgjs_tx`;
    const [{ p: pid2 }] = await tx`SELECT pg_backend_pid() AS p`;
    return { same: pid1 === pid2, n, s, code };
  });
  check('sql.begin: 50 inserts on one server, a failed savepoint rolled back alone',
    got.same && got.n === 50 && got.s === 1225 && got.code === '22012', JSON.stringify(got));
  await sql.end();
}

// Errors carry their SQLSTATE, and the connection and its prepared statements work after them.
async function errors() {
  const sql = connect('alice', { max: 1 });
  let code = null;
  try { await sql`SELECT 1/${0}::int`; } catch (e) { code = e.code; }
  check('division by zero raises 22012', code === '22012');
  code = null;
  try { await sql`SELECT * FROM no_such_table WHERE id = ${1}`; } catch (e) { code = e.code; }
  check('an unknown table raises 42P01', code === '42P01');
  const [{ name }] = await sql`SELECT name FROM items WHERE id = ${5}`;
  check('usable after the errors', name === 'item 5');
  await sql.end();
}

// A cursor reads 1000 rows 37 at a time, in order; describe() gives the parameter and column
// types; several statements in one simple query give one result each.
async function cursorsAndDescribe() {
  const sql = connect('alice');
  let expect = 1, inOrder = true;
  for await (const rows of sql`SELECT id, name FROM items WHERE id > ${0} ORDER BY id`.cursor(37)) {
    for (const r of rows) {
      inOrder = inOrder && r.id === expect && r.name === `item ${expect}`;
      expect++;
    }
  }
  check('a cursor reads 1000 rows 37 at a time, in order', inOrder && expect === 1001, expect);
  const d = await sql`SELECT id, name FROM items WHERE id = ${1}`.describe();
  check('describe(): one int4 parameter, columns id and name',
    d.types.length === 1 && d.types[0] === 23 && d.columns.map((c) => c.name).join() === 'id,name',
    JSON.stringify({ types: d.types, columns: d.columns.map((c) => c.name) }));
  const rs = await sql.unsafe("SELECT 1 AS a; SELECT 'two' AS b").simple();
  check('two statements in one simple query: two results',
    rs.length === 2 && rs[0][0].a === 1 && rs[1][0].b === 'two');
  const lines = [];
  for await (const chunk of await sql`COPY (SELECT id FROM items WHERE id <= 10 ORDER BY id) TO STDOUT`.readable()) {
    lines.push(chunk.toString());
  }
  check('COPY TO STDOUT as a stream: ten rows', lines.join('') === Array.from({ length: 10 }, (_, i) => `${i + 1}\n`).join(''));
  await sql.end();
}

// Row-level security (database app_rls): two tenants' pools share its 4 server connections
// with the same prepared text; each sees only its rows, and setting the attribute is refused.
async function rowLevelSecurity() {
  const text = (sql) => sql`SELECT count(*)::int AS n, min(tenant_id) AS lo, max(tenant_id) AS hi FROM rls_docs WHERE id > ${0}`;
  const wrong = [];
  await Promise.all([3, 7].map(async (tenant) => {
    const sql = connect(`tenant${tenant}`, { database: 'app_rls', max: 6 });
    const rows = await Promise.all(Array.from({ length: 60 }, () => text(sql)));
    for (const [r] of rows) {
      if (r.n !== 100 || r.lo !== tenant || r.hi !== tenant) wrong.push(`tenant ${tenant} saw ${JSON.stringify(r)}`);
    }
    await sql.end();
  }));
  check('RLS: two tenants, 60 prepared queries each over 4 servers, each sees only its rows',
    wrong.length === 0, wrong[0]);
  const sql = connect('tenant3', { database: 'app_rls', max: 1 });
  let code = null;
  try { await sql`SELECT set_config(${'app.tenant_id'}, ${'7'}, false)`; } catch (e) { code = e.code; }
  const [r] = await text(sql);
  check('RLS: set_config is refused with 42501, and the client still sees only its rows',
    code === '42501' && r.lo === 3 && r.hi === 3, `${code} ${JSON.stringify(r)}`);
  await sql.end();
}

const WANT = '1 a***@example.com ****3333|2 g***@navy.example ****6666';
const joined = (rows) => rows.map((r) => `${r.id} ${r.email} ${r.ssn}`).join('|');
const masked = (sql) => sql`SELECT id, email, ssn FROM customers WHERE id <= ${2} ORDER BY id`;

// A masked user sees masked values through prepared statements, values(), raw() and a cursor;
// an expression over a masked column is refused (42501); the exempt user sees the real values.
async function masking() {
  const sql = connect('mallory', { max: 2 });
  const runs = await Promise.all(Array.from({ length: 6 }, () => masked(sql)));
  check('masked: prepared statement, six runs', runs.every((r) => joined(r) === WANT), joined(runs[0]));
  const vals = await masked(sql).values();
  check('masked: values()', vals.map((v) => v.join(' ')).join('|') === WANT);
  const raw = await masked(sql).raw();
  check('masked: raw() buffers', raw.map((v) => v.map(String).join(' ')).join('|') === WANT);
  const viaCursor = [];
  for await (const rows of masked(sql).cursor(1)) viaCursor.push(...rows);
  check('masked: a cursor of one row per Execute', joined(viaCursor) === WANT, joined(viaCursor));
  let code = null;
  try { await sql`SELECT lower(email) FROM customers WHERE id = ${1}`; } catch (e) { code = e.code; }
  check('an expression over a masked column is refused with 42501', code === '42501', code);
  const [{ name }] = await sql`SELECT name FROM customers WHERE id = ${1}`;
  check('usable after the refusal', name === 'Ada Lovelace');
  await sql.end();
  const alice = connect('alice', { max: 1 });
  const real = await alice`SELECT id, email, ssn FROM customers WHERE id <= ${1} ORDER BY id`;
  check('the exempt user sees the real values', joined(real) === '1 ada.secret@example.com 111-22-3333');
  await alice.end();
}

(async () => {
  ({ default: postgres } = await import('postgres'));
  for (const scenario of [preparedStatements, batches, transactions, errors, cursorsAndDescribe,
    rowLevelSecurity, masking]) {
    try {
      await scenario();
    } catch (e) {
      check(`${scenario.name} ran without an exception (${e.code || ''} ${e.message})`, false);
    }
  }
  process.exit(failures.length ? 1 : 0);
})();
