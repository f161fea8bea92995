"""psycopg 3 through lakeproxy in transaction pooling: server-side prepared statements (psycopg
prepares every query here), explicit transactions, errors, many connections over few servers.
Exit 0 when all pass."""
import sys
import threading

import psycopg

conninfo = sys.argv[1]
failures = []


def check(name, cond):
    print(("ok - " if cond else "not ok - ") + name)
    if not cond:
        failures.append(name)


with psycopg.connect(conninfo, autocommit=True, prepare_threshold=0) as conn:
    for i in range(1, 21):
        row = conn.execute("SELECT name FROM items WHERE id = %s", (i,)).fetchone()
        if row != (f"item {i}",):
            break
    check("prepared statements across transactions", row == ("item 20",))
    try:
        conn.execute("SELECT 1/0")
        check("division by zero raises", False)
    except psycopg.errors.DivisionByZero as e:
        check("error carries its SQLSTATE", e.sqlstate == "22012")
    check("usable after an error", conn.execute("SELECT 2").fetchone() == (2,))
    with conn.transaction():
        pid1 = conn.execute("SELECT pg_backend_pid()").fetchone()
        conn.execute("CREATE TEMP TABLE t_in_tx (a int) ON COMMIT DROP")
        conn.cursor().executemany("INSERT INTO t_in_tx VALUES (%s)", [(i,) for i in range(50)])
        n = conn.execute("SELECT count(*) FROM t_in_tx").fetchone()
        pid2 = conn.execute("SELECT pg_backend_pid()").fetchone()
    check("a transaction stays on one server", pid1 == pid2 and n == (50,))

# psycopg evicts the least recently used statement past prepared_max with an extended-protocol
# "DEALLOCATE _pg3_N" (before, the server was sent it and failed: 26000, the name is not the
# server's), also inside a transaction and in pipeline mode
with psycopg.connect(conninfo, autocommit=True, prepare_threshold=0) as conn:
    conn.prepared_max = 2
    try:
        for i in range(8):
            got = conn.execute("SELECT %s::int + " + str(i), (i,)).fetchone()
            assert got == (2 * i,), got
        with conn.transaction():
            for i in range(8):
                got = conn.execute("SELECT %s::int * " + str(i), (i,)).fetchone()
                assert got == (i * i,), got
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int - " + str(i), (i,)) for i in range(8)]
        got = [c.fetchone() for c in curs]
        assert got == [(0,)] * 8, got
        evicted = True
    except psycopg.Error as e:
        print(repr(e))
        evicted = False
    check("statements evicted from psycopg's cache (prepared_max) are deallocated", evicted)

errors = []


def worker(n):
    try:
        with psycopg.connect(conninfo, autocommit=True, prepare_threshold=1) as c:
            for i in range(30):
                got = c.execute("SELECT %s::int + %s::int", (n, i)).fetchone()
                assert got == (n + i,), got
                with c.transaction():
                    c.execute("SELECT count(*) FROM items WHERE id < %s", (n + 2,)).fetchone()
    except Exception as e:  # noqa: BLE001 - any failure counts
        errors.append(repr(e))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(30)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check("30 psycopg connections over 4 servers with prepared statements", not errors)
if errors:
    print(errors[:3])
sys.exit(1 if failures else 0)
