/* netrule.c: client address rules (netrule.h). */
#include "netrule.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The mask of byte i of an address that keeps its first `bits` bits. */
static uint8_t prefix_mask(size_t i, unsigned bits)
{
    unsigned first = (unsigned)i * 8; /* bit index of this byte's top bit */
    return bits >= first + 8 ? 0xff : bits <= first ? 0 : (uint8_t)(0xff << (8 - (bits - first)));
}

/* Are the bits of addr (len bytes) past the first `bits` all zero? */
static bool host_bits_clear(const uint8_t *addr, size_t len, unsigned bits)
{
    for (size_t i = 0; i < len; i++)
        if (addr[i] & (uint8_t)~prefix_mask(i, bits))
            return false;
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

/* Clears the bits of addr (len bytes) past the first `bits`. */
static void clear_host_bits(uint8_t *addr, size_t len, unsigned bits)
{
    for (size_t i = 0; i < len; i++)
        addr[i] &= prefix_mask(i, bits);
}

/* The message for r (parsed with host bits set past bits): names the network r lies in. */
static void say_first_address(struct net_rule r, unsigned bits, char *why, size_t whysz)
{
    char net[INET6_ADDRSTRLEN] = "?";
    clear_host_bits(r.addr, r.family == NET_V4 ? 4 : 16, bits);
    inet_ntop(r.family == NET_V4 ? AF_INET : AF_INET6, r.addr, net, sizeof(net));
    snprintf(why, whysz,
             "has address bits set past its prefix length: write the network's first address "
             "(%s/%u), or a longer prefix",
             net, bits);
}

/* Is r inside ::ffff:0:0/96 (IPv4-mapped)? Such a rule would never match: a client connecting
 * over IPv4 is seen as its IPv4 address (netaddr_from_sockaddr), as in pg_hba.conf, where an
 * IPv6 entry matches IPv6 connections only. */
static bool ipv4_mapped(const struct net_rule *r, unsigned bits)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return r->family == NET_V6 && bits >= 96 && memcmp(r->addr, mapped, sizeof(mapped)) == 0;
}

/* The message for an IPv4-mapped rule: names the IPv4 rule to write instead. */
static void say_ipv4_instead(const struct net_rule *r, unsigned bits, char *why, size_t whysz)
{
    char v4[INET_ADDRSTRLEN] = "?", suffix[8] = "";
    inet_ntop(AF_INET, r->addr + 12, v4, sizeof(v4));
    if (bits < 128)
        snprintf(suffix, sizeof(suffix), "/%u", bits - 96);
    snprintf(why, whysz,
             "is an IPv4-mapped address, which no client is seen as (one connecting over IPv4 "
             "is matched by its IPv4 address): write %s%s",
             v4, suffix);
}

bool netrule_parse(const char *text, struct net_rule *r, char *why, size_t whysz)
{
    char host[64];
    memset(r, 0, sizeof(*r));
    if (strcmp(text, "unix") == 0) {
        r->family = NET_UNIX;
        return true;
    }
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    snprintf(why, whysz,
             "is not an address: write an IPv4 or IPv6 address, optionally with a /prefix "
             "length (10.0.0.0/8, 2001:db8::/32), or unix");
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
        snprintf(why, whysz, "has a prefix length that is not a number from 0 to %u",
                 (unsigned)len * 8);
        return false;
    }
    if (!host_bits_clear(r->addr, len, bits)) {
        say_first_address(*r, bits, why, whysz);
        return false;
    }
    if (ipv4_mapped(r, bits)) {
        say_ipv4_instead(r, bits, why, whysz);
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

/* One rule as configuration text. */
static void format_rule(const struct net_rule *r, char *out, size_t outsz)
{
    char addr[INET6_ADDRSTRLEN] = "?";
    if (r->family == NET_UNIX) {
        snprintf(out, outsz, "unix");
        return;
    }
    inet_ntop(r->family == NET_V4 ? AF_INET : AF_INET6, r->addr, addr, sizeof(addr));
    if (r->bits == (r->family == NET_V4 ? 32 : 128))
        snprintf(out, outsz, "%s", addr);
    else
        snprintf(out, outsz, "%s/%u", addr, (unsigned)r->bits);
}

const char *netrule_format(const struct net_rules *rs, char *out, size_t outsz)
{
    size_t used = 0;
    char one[INET6_ADDRSTRLEN + 8];
    if (outsz == 0)
        return out;
    out[0] = '\0';
    for (size_t i = 0; i < rs->n; i++) {
        format_rule(&rs->items[i], one, sizeof(one));
        int n = snprintf(out + used, outsz - used, "%s%s", i ? "," : "", one);
        if (n < 0 || (size_t)n >= outsz - used) {
            snprintf(out + (outsz > 4 ? outsz - 4 : 0), outsz > 4 ? 4 : outsz, "...");
            break;
        }
        used += (size_t)n;
    }
    return out;
}
