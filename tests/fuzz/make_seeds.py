#!/usr/bin/env python3
"""make_seeds.py: writes the seed inputs of each fuzz target under tests/fuzz/corpus/ (run it
from the repository root after changing a target's input format; libFuzzer adds its own
finds next to them)."""
import os
import struct

ROOT = "tests/fuzz/corpus"


def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def write(target, name, data):
    os.makedirs(f"{ROOT}/{target}", exist_ok=True)
    with open(f"{ROOT}/{target}/seed-{name}", "wb") as f:
        f.write(data)


# client: simple and extended protocol, the guards' inputs
queries = ["SELECT 1", "SELECT email, ssn FROM customers WHERE id = 1",
           "SELECT lower(email) FROM customers", "SET app.tenant_id = '1'",
           "SELECT c FROM customers c", "WITH x AS (SELECT email FROM customers) SELECT * FROM x",
           "DEALLOCATE ALL", "COPY customers TO STDOUT", "SELECT c.concat FROM customers c",
           "DO $$ BEGIN END $$", "BEGIN; SELECT 1; COMMIT"]
for i, q in enumerate(queries):
    write("client", f"query{i}", msg(b"Q", cstr(q)))
ext = (msg(b"P", cstr("s1") + cstr("SELECT email FROM customers WHERE id = $1") + struct.pack("!HI", 1, 23))
       + msg(b"B", cstr("") + cstr("s1") + struct.pack("!HH", 1, 0) + struct.pack("!Hi", 1, 1) + b"7"
             + struct.pack("!HH", 1, 1))
       + msg(b"D", b"P" + cstr("")) + msg(b"E", cstr("") + struct.pack("!i", 0)) + msg(b"S", b"")
       + msg(b"C", b"S" + cstr("s1")) + msg(b"X", b""))
write("client", "extended", ext)
write("client", "truncated", ext[:37])
write("client", "copy", msg(b"Q", cstr("COPY t FROM STDIN")) + msg(b"d", b"1\tx\n") + msg(b"c", b""))

# server: a SCRAM login, then a result
server = (msg(b"R", struct.pack("!I", 10) + cstr("SCRAM-SHA-256") + b"\0")
          + msg(b"R", struct.pack("!I", 11) + b"r=nonceNONCE,s=c2FsdA==,i=4096")
          + msg(b"R", struct.pack("!I", 12) + b"v=AAAA")
          + msg(b"R", struct.pack("!I", 0)) + msg(b"S", cstr("client_encoding") + cstr("UTF8"))
          + msg(b"K", struct.pack("!II", 1234, 5678)) + msg(b"Z", b"I"))
write("server", "login", server)
rowdesc = msg(b"T", struct.pack("!H", 2) + cstr("email") + struct.pack("!IhIhih", 16384, 3, 25, -1, -1, 0)
              + cstr("n") + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 1))
datarow = msg(b"D", struct.pack("!H", 2) + struct.pack("!i", 5) + b"a@b.c" + struct.pack("!i", 4) + b"\0\0\0\1")
write("server", "result", rowdesc + datarow + msg(b"C", cstr("SELECT 1")) + msg(b"Z", b"I"))
write("server", "error", msg(b"E", b"SERROR\0C23502\0Mnull value\0DFailing row contains (x)\0\0") + msg(b"Z", b"E"))
write("server", "notice", msg(b"N", b"SWARNING\0C01000\0Mhello\0\0"))
write("server", "md5", msg(b"R", struct.pack("!I", 5) + b"salt"))

# startup: v3 with options, SSLRequest, cancel; then a SASL exchange
params = cstr("user") + cstr("alice") + cstr("database") + cstr("app") + cstr("options") \
    + cstr("-c app.tenant_id=1 --search_path=public") + cstr("application_name") + cstr("psql") + b"\0"
v3 = struct.pack("!II", 8 + len(params), 196608) + params
first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
sasl = msg(b"p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first)[5:]
write("startup", "v3", v3 + sasl + b"\xff" + b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
write("startup", "ssl", struct.pack("!II", 8, 80877103))
write("startup", "cancel", struct.pack("!IIII", 16, 80877102, 1234, 5678))
write("startup", "badversion", struct.pack("!II", 8, 131072))

# config: the shipped files and a masking policy
for f in ("conf/lakeproxy.yaml", "conf/demo.yaml"):
    with open(f, "rb") as src:
        write("config", os.path.basename(f), src.read())
write("config", "masking", b"""databases: {app: {host: h, user: u, pool: {mode: transaction}}}
users: {al: {password: x, groups: [g]}}
groups: {g: {role: r, attributes: {k: v}}}
rls: {attributes: {k: attribute}}
masking:
  rules:
    - {column: public.t.c, function: "partial(1, 2, '*')", unless: {roles: [r], attributes: {k: v}}}
    - {column: s.t.d, function: email}
""")

# mask: column count, charset/key flags, one byte per column, then a DataRow body
def datarow_body(values):
    out = struct.pack("!H", len(values))
    for v in values:
        out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out

write("mask", "text", bytes([3, 4, 0x07, 0x00, 0x09]) + datarow_body([b"jane@example.com", b"x", "Zoë".encode()]))
write("mask", "binary", bytes([2, 1, 0xa3, 0x33]) + datarow_body([b"\0\0\0\x05", None]))
write("mask", "spec", b"partial(2, 3, 'x''y')")
