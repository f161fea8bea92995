"""psycopg 3 through lakeproxy with column masking (database app_txn, rules in run.sh's
config): a masked user's results are masked whether psycopg uses the simple protocol, server-
side prepared statements, binary results or a server-side cursor; an expression over a masked
column is refused with InsufficientPrivilege and the connection stays usable; the exempt user
sees the real values. Exit 0 when all pass. argv: masked conninfo, exempt conninfo."""
import sys

import psycopg

masked, exempt = sys.argv[1], sys.argv[2]
failures = []
SECRETS = ("secret", "111-22", "444-55", "777-88")


def check(name, cond):
    print(("ok - " if cond else "not ok - ") + name)
    if not cond:
        failures.append(name)


def leaks(rows):
    return any(s in str(v) for row in rows for v in row for s in SECRETS)


QUERY = "SELECT id, email, ssn FROM customers WHERE id <= %s ORDER BY id"
WANT = [(1, "a***@example.com", "****3333"), (2, "g***@navy.example", "****6666")]

with psycopg.connect(masked, autocommit=True) as conn:
    check("simple protocol: masked", conn.execute(QUERY, (2,), prepare=False).fetchall() == WANT)
    for i in range(3):  # prepared on the server after the first
        rows = conn.execute(QUERY, (2,), prepare=True).fetchall()
    check("server-side prepared statement: masked", rows == WANT)
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(QUERY, (2,)).fetchall()
    check("binary results: masked", rows == WANT)
    with conn.transaction():
        with conn.cursor(name="c") as cur:
            cur.itersize = 1
            cur.execute("SELECT email FROM customers ORDER BY id")
            rows = cur.fetchall()
    check("server-side cursor: masked", len(rows) == 3 and not leaks(rows)
          and rows[0] == ("a***@example.com",))
    try:
        conn.execute("SELECT lower(email) FROM customers")
        check("an expression over a masked column is refused", False)
    except psycopg.errors.InsufficientPrivilege as e:
        check("an expression over a masked column is refused", "email" in str(e))
    check("usable after a refusal",
          conn.execute("SELECT name FROM customers WHERE id = 1").fetchone() == ("Ada Lovelace",))

with psycopg.connect(exempt, autocommit=True) as conn:
    rows = conn.execute(QUERY, (1,)).fetchall()
    check("the exempt user sees the real values",
          rows == [(1, "ada.secret@example.com", "111-22-3333")])

sys.exit(1 if failures else 0)
