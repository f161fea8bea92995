#!/usr/bin/env bash
# free_port.sh: prints a TCP port on 127.0.0.1 that nobody listens on now, taken from below the
# kernel's ephemeral range (as free_port in harness.c does), so no outgoing connection takes it
# as its local port before the caller binds it.
exec /usr/bin/python3 -c '
import os, random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
span = min(10000, low - 1024)
start = random.randrange(span)
for i in range(span):
    port = low - span + (start + i) % span
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    raise SystemExit(0)
raise SystemExit("no free port below the ephemeral range")
'
