/* test_netrule.c: client address rules (users.X.from): what parses, what is refused and why,
 * and which addresses each rule admits. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "netrule.h"

/* The rules' view of a textual IPv4 or IPv6 address, as accepted from a socket. */
static struct netaddr addr_of(const char *text)
{
    struct netaddr a;
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
        netaddr_from_sockaddr((struct sockaddr *)&in, &a);
    else {
        cr_assert_eq(inet_pton(AF_INET6, text, &in6.sin6_addr), 1, "%s", text);
        netaddr_from_sockaddr((struct sockaddr *)&in6, &a);
    }
    return a;
}

/* Does the one rule `rule` admit address `text`? */
static bool admits(const char *rule, const char *text)
{
    struct net_rule r;
    char why[200];
    cr_assert(netrule_parse(rule, &r, why, sizeof(why)), "%s: %s", rule, why);
    struct net_rules rs = {&r, 1};
    struct netaddr a = addr_of(text);
    return netrule_match(&rs, &a);
}

Test(netrule, networks_admit_their_addresses_only)
{
    cr_expect(admits("10.0.0.0/8", "10.255.1.2"));
    cr_expect_not(admits("10.0.0.0/8", "11.0.0.1"));
    cr_expect(admits("192.168.4.0/22", "192.168.7.255"));
    cr_expect_not(admits("192.168.4.0/22", "192.168.8.0"));
    cr_expect(admits("127.0.0.1", "127.0.0.1"), "a bare address is /32");
    cr_expect_not(admits("127.0.0.1", "127.0.0.2"));
    cr_expect(admits("0.0.0.0/0", "203.0.113.9"), "/0 is every IPv4 address");
    cr_expect_not(admits("0.0.0.0/0", "2001:db8::1"), "... and no IPv6 one");
    cr_expect(admits("2001:db8::/32", "2001:db8:ffff::1"));
    cr_expect_not(admits("2001:db8::/32", "2001:db9::1"));
    cr_expect(admits("::1", "::1"));
    cr_expect(admits("10.0.0.0/8", "::ffff:10.1.2.3"), "an IPv4-mapped address is its IPv4 one");
    cr_expect_not(admits("::/0", "10.1.2.3"), "(so no IPv6 rule reaches it)");
}

Test(netrule, unix_admits_the_unix_socket_only)
{
    struct net_rule r;
    char why[200];
    cr_assert(netrule_parse("unix", &r, why, sizeof(why)));
    struct net_rules rs = {&r, 1};
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct netaddr a, b = addr_of("127.0.0.1");
    netaddr_from_sockaddr((struct sockaddr *)&un, &a);
    cr_expect(netrule_match(&rs, &a));
    cr_expect_not(netrule_match(&rs, &b));
    struct net_rules none = {NULL, 0};
    cr_expect_not(netrule_match(&none, &a), "an empty list matches nothing");
}

Test(netrule, mistakes_are_refused_with_what_to_write)
{
    static const char *const bad[][2] = {
        {"10.0.0.0/33", "0 to 32"},
        {"::/129", "0 to 128"},
        {"10.1.0.0/8", "first address (10.0.0.0/8)"},
        {"192.168.1.7/24", "first address (192.168.1.0/24)"},
        {"2001:db8::1/32", "first address (2001:db8::/32)"},
        {"10.0.0.0/", "0 to 32"},
        {"10.0.0.0/8x", "0 to 32"},
        {"10.0.0", "is not an address"},
        {"localhost", "is not an address"},
        {"", "is not an address"},
        {"/8", "is not an address"},
        {"10.0.0.0/-1", "0 to 32"},
        {"UNIX", "is not an address"},
        {"::ffff:127.0.0.1", "IPv4-mapped address, which no client is seen as (one connecting "
                             "over IPv4 is matched by its IPv4 address): write 127.0.0.1"},
        {"::ffff:10.0.0.0/104", "write 10.0.0.0/8"},
        {"::ffff:0:0/96", "write 0.0.0.0/0"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct net_rule r;
        char why[200];
        cr_expect_not(netrule_parse(bad[i][0], &r, why, sizeof(why)), "\"%s\" was accepted",
                      bad[i][0]);
        cr_expect(strstr(why, bad[i][1]), "\"%s\": %s", bad[i][0], why);
    }
}

/* The rules parsed from texts[0..n), as SHOW CONFIG prints them into an outsz buffer. */
static const char *formatted(const char *const *texts, size_t n, char *out, size_t outsz)
{
    struct net_rule r[8];
    char why[200];
    for (size_t i = 0; i < n; i++)
        cr_assert(netrule_parse(texts[i], &r[i], why, sizeof(why)), "%s: %s", texts[i], why);
    struct net_rules rs = {r, n};
    return netrule_format(&rs, out, outsz);
}

Test(netrule, rules_print_as_they_are_written)
{
    static const char *const texts[] = {"10.0.0.0/8",    "127.0.0.1", "127.0.0.1/32", "unix",
                                        "2001:db8::/32", "::1",       "0.0.0.0/0"};
    char out[200];
    cr_expect_str_eq(formatted(texts, 7, out, sizeof(out)),
                     "10.0.0.0/8,127.0.0.1,127.0.0.1,unix,2001:db8::/32,::1,0.0.0.0/0");
}

Test(netrule, a_list_too_long_for_its_buffer_is_cut_with_dots)
{
    static const char *const texts[] = {"10.0.0.0/8", "192.168.0.0/16"};
    char out[16];
    cr_expect_str_eq(formatted(texts, 2, out, sizeof(out)), "10.0.0.0/8,1...");
    cr_expect_str_eq(formatted(texts, 0, out, sizeof(out)), "", "no rules: nothing");
}
