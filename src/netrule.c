/* netrule.c: client address rules (netrule.h). */
#include "netrule.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* Are the bits of addr (len bytes) past the first `bits` all zero? */
static bool host_bits_clear(const uint8_t *addr, size_t len, unsigned bits)
{
    for (size_t i = 0; i < len; i++) {
        unsigned first = (unsigned)i * 8; /* bit index of this byte's top bit */
        uint8_t keep = bits >= first + 8 ? 0xff
                       : bits <= first   ? 0
                                         : (uint8_t)(0xff << (8 - (bits - first)));
        if (addr[i] & (uint8_t)~keep)
            return false;
    }
    return true;
}

/* The prefix length after '/': all digits, at most max. */
static bool parse_bits(const char *s, unsigned max, unsigned *bits)
{
    if (!*s || strlen(s) > 3)
        return false;
    unsigned v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (unsigned)(*s - '0');
    }
    *bits = v;
    return v <= max;
}

bool netrule_parse(const char *text, struct net_rule *r, const char **why)
{
    char host[64];
    memset(r, 0, sizeof(*r));
    if (strcmp(text, "unix") == 0) {
        r->family = NET_UNIX;
        return true;
    }
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    *why = "is not an address: write an IPv4 or IPv6 address, optionally with a /prefix length "
           "(10.0.0.0/8, 2001:db8::/32), or unix";
    if (hlen == 0 || hlen >= sizeof(host))
        return false;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    size_t len;
    if (inet_pton(AF_INET, host, r->addr) == 1) {
        r->family = NET_V4;
        len = 4;
    } else if (inet_pton(AF_INET6, host, r->addr) == 1) {
        r->family = NET_V6;
        len = 16;
    } else {
        return false;
    }
    unsigned bits = (unsigned)len * 8;
    if (slash && !parse_bits(slash + 1, (unsigned)len * 8, &bits)) {
        *why = r->family == NET_V4 ? "has a prefix length that is not a number from 0 to 32"
                                   : "has a prefix length that is not a number from 0 to 128";
        return false;
    }
    if (!host_bits_clear(r->addr, len, bits)) {
        *why = "has address bits set past its prefix length: write the network's first address "
               "(10.0.0.0/8), or a longer prefix";
        return false;
    }
    r->bits = (uint8_t)bits;
    return true;
}

void netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof(*out));
    if (sa->sa_family == AF_UNIX) {
        out->family = NET_UNIX;
    } else if (sa->sa_family == AF_INET) {
        out->family = NET_V4;
        memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(b, v4_mapped, sizeof(v4_mapped)) == 0) {
            out->family = NET_V4;
            memcpy(out->addr, b + 12, 4);
        } else {
            out->family = NET_V6;
            memcpy(out->addr, b, 16);
        }
    }
}

/* Does a lie in r's network? */
static bool rule_matches(const struct net_rule *r, const struct netaddr *a)
{
    if (r->family != a->family || a->family == 0)
        return false;
    if (a->family == NET_UNIX)
        return true;
    unsigned full = r->bits / 8, rest = r->bits % 8;
    if (memcmp(r->addr, a->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (r->addr[full] & mask) == (a->addr[full] & mask);
}

bool netrule_match(const struct net_rules *rs, const struct netaddr *a)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rule_matches(&rs->items[i], a))
            return true;
    return false;
}
