/* netrule.h: where a client may connect from (users.X.from, listen.from): rules such as
 * 10.0.0.0/8, 2001:db8::/32, 127.0.0.1 or unix, parsed from configuration text, and the match
 * of a client's address against them. Pure: no I/O. */
#ifndef LAKEPROXY_NETRULE_H
#define LAKEPROXY_NETRULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* A client's address as the rules see it: an IPv4-mapped IPv6 address is its IPv4 one. */
struct netaddr {
    uint8_t family; /* NET_UNIX, NET_V4 or NET_V6 (0: unknown: no rule matches it) */
    uint8_t addr[16];
};

enum { NET_UNIX = 1, NET_V4 = 4, NET_V6 = 6 };

/* One rule: a network (family, address, prefix length), or the Unix socket. */
struct net_rule {
    uint8_t family;
    uint8_t bits; /* prefix length: 0-32 (IPv4), 0-128 (IPv6) */
    uint8_t addr[16];
};

struct net_rules {
    struct net_rule *items;
    size_t n;
};

/* Parses "unix", "ADDR" or "ADDR/BITS" into *r; false with why (what to write instead) when it
 * is none of these, or when ADDR has bits set past the prefix (10.1.0.0/8: a typo for
 * 10.0.0.0/8 or 10.1.0.0/16?). */
bool netrule_parse(const char *text, struct net_rule *r, char *why, size_t whysz);

/* The rules' view of a peer address (AF_INET, AF_INET6 or AF_UNIX). */
void netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);

/* Does any rule of rs match a? An empty list matches nothing: callers treat a missing list
 * as "from anywhere". */
bool netrule_match(const struct net_rules *rs, const struct netaddr *a);

/* rs as configuration text, comma-separated ("10.0.0.0/8,::1,unix"; a single address without
 * its full-length prefix); cut with "..." when it does not fit out. Returns out. */
const char *netrule_format(const struct net_rules *rs, char *out, size_t outsz);

#endif
