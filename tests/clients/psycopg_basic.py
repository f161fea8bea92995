"""psycopg 3 through lakeproxy: queries, parameters, server-side prepare, COPY, notifications,
errors that leave the connection usable, and a pool of connections. Exit 0 when all pass."""
import sys
import threading
import time

import psycopg

conninfo = sys.argv[1]
failures = []


def check(name, cond):
    print(("ok - " if cond else "not ok - ") + name)
    if not cond:
        failures.append(name)


with psycopg.connect(conninfo) as conn:
    row = conn.execute("SELECT count(*), max(id) FROM items WHERE id <= %s", (500,)).fetchone()
    check("parameterised query", row == (500, 500))
    # psycopg prepares a statement server-side after it has run it prepare_threshold times.
    for i in range(10):
        v = conn.execute("SELECT name FROM items WHERE id = %s", (i + 1,), prepare=True).fetchone()
    check("server-side prepared statement", v == ("item 10",))
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE c (a int, b text)")
        with cur.copy("COPY c FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, "x" * (i % 50)))
        cur.execute("SELECT count(*), sum(a) FROM c")
        check("COPY FROM STDIN of 1000 rows", cur.fetchone() == (1000, 499500))
        out = bytearray()
        with cur.copy("COPY (SELECT a FROM c ORDER BY a) TO STDOUT") as copy:
            for data in copy:
                out += data
        check("COPY TO STDOUT", out.decode().split() == [str(i) for i in range(1000)])
    try:
        conn.execute("SELECT 1/0")
        check("division by zero raises", False)
    except psycopg.errors.DivisionByZero as e:
        check("error carries its SQLSTATE", e.sqlstate == "22012")
    conn.rollback()
    check("connection usable after an error", conn.execute("SELECT 2").fetchone() == (2,))
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE tx (a int)")
        conn.execute("INSERT INTO tx VALUES (1)")
    check("explicit transaction commits", conn.execute("SELECT count(*) FROM tx").fetchone() == (1,))

# LISTEN/NOTIFY across two connections
listener = psycopg.connect(conninfo, autocommit=True)
got = []
listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
listener.execute("LISTEN lp_channel")
with psycopg.connect(conninfo, autocommit=True) as talker:
    talker.execute("NOTIFY lp_channel, 'hello'")
deadline = time.monotonic() + 5
while not got and time.monotonic() < deadline:
    listener.execute("SELECT 1")  # notifications are delivered with the next result
    time.sleep(0.05)
check("LISTEN/NOTIFY across two clients", got == [("lp_channel", "hello")])
listener.close()

# many connections at once, each doing some work
errors = []


def worker(n):
    try:
        with psycopg.connect(conninfo) as c:
            for _ in range(20):
                assert c.execute("SELECT %s::int + 1", (n,)).fetchone() == (n + 1,)
    except Exception as e:  # noqa: BLE001 - any failure counts
        errors.append(repr(e))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check("20 concurrent psycopg connections", not errors)
if errors:
    print(errors[:3])

sys.exit(1 if failures else 0)
