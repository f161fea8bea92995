/* test_config.c: the YAML loader: the reference file loads, defaults apply, and every kind of
 * mistake an admin makes is reported with its exact file:line:column. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static const char *const minimal = "databases:\n"
                                   "  app:\n"
                                   "    host: db.internal\n"
                                   "    user: app_login\n";

static struct config *parse(const char *text, struct config_errors *errs)
{
    memset(errs, 0, sizeof(*errs));
    return config_parse_string(text, strlen(text), "t.yaml", errs);
}

Test(config, reference_file_loads_without_errors)
{
    struct config_errors errs = {0};
    setenv("LAKEPROXY_MASK_KEY", "a-test-key-of-32-bytes-or-so-123", 1); /* masking.hash_key_env */
    struct config *cfg = config_load("conf/lakeproxy.yaml", &errs);
    for (size_t i = 0; i < errs.n; i++)
        cr_log_error("%s", errs.msgs[i]);
    cr_assert_not_null(cfg, "conf/lakeproxy.yaml must load");
    cr_expect_eq(cfg->listen_port, 6432);
    cr_expect_str_eq(cfg->takeover_socket, "/run/lakeproxy/takeover.sock");
    cr_expect_eq(cfg->shutdown_timeout_s, 30);
    cr_expect_str_eq(cfg->tls_cert, "/etc/lakeproxy/server.crt");
    const struct db_config *db = config_find_db(cfg, "app");
    cr_assert_not_null(db);
    cr_expect_str_eq(db->dbname, "postgres");
    cr_expect_eq(db->tls, TLS_PREFER);
    cr_expect_eq(db->pool.size, 20);
    cr_expect_eq(db->pool.mode, POOL_SESSION);
    cr_expect_not_null(config_find_user(cfg, "alice")->password_scram);
    cr_expect_eq(config_find_user(cfg, "monitor")->auth, AUTH_TRUST);
    cr_expect(cfg->auth_query.enabled);
    cr_expect_str_eq(cfg->auth_query.database, "app");
    cr_expect(config_is_admin(cfg, "alice"));
    cr_expect_not(config_is_admin(cfg, "bob"));
    const struct db_config *lakebase = config_find_db(cfg, "lakebase");
    cr_assert_not_null(lakebase);
    cr_expect(config_db_admits(cfg, lakebase, "bob", NULL));
    cr_expect(config_db_admits(cfg, lakebase, "carol", NULL), "through her group eu_support");
    cr_expect_not(config_db_admits(cfg, lakebase, "monitor", NULL), "neither named nor in a group");
    config_free(cfg);
}

Test(config, unix_socket_path_and_mode_are_read_as_postgresql_names_them)
{
    static const struct {
        const char *listen, *path;
        int mode;
    } cases[] = {
        {"  port: 6543\n  unix_socket_dir: /run/lakeproxy\n  unix_socket_mode: 0770\n",
         "/run/lakeproxy/.s.PGSQL.6543", 0770},
        {"  unix_socket_dir: /tmp\n  unix_socket_mode: \"660\"\n", "/tmp/.s.PGSQL.6432", 0660},
        {"  unix_socket_dir: /tmp\n", "/tmp/.s.PGSQL.6432", 0777}, /* as PgBouncer's default */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];
        struct config_errors errs;
        snprintf(text, sizeof(text), "listen:\n%sdatabases:\n  app: {host: h, user: u}\n",
                 cases[i].listen);
        struct config *cfg = parse(text, &errs);
        cr_assert_not_null(cfg, "case %zu: %s", i, errs.n ? errs.msgs[0] : "");
        cr_expect_str_eq(cfg->unix_socket_path, cases[i].path, "case %zu", i);
        cr_expect_eq(cfg->unix_socket_mode, cases[i].mode, "case %zu", i);
        config_free(cfg);
    }
}

/* The demo's file loads, and its protected rows reach no one unprotected: no entry is an
 * alias open to all (no warning), and its tenants and masked user may use only their own. */
Test(config, demo_file_loads_and_serves_protected_rows_to_no_one_unprotected)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load("conf/demo.yaml", &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    size_t k = 0;
    const struct db_config *guarded;
    const char *what;
    const struct db_config *open = config_unprotected_alias(cfg, &k, &guarded, &what);
    cr_expect_null(open, "%s reaches %s's rows outside %s", open ? open->name : "",
                   open ? guarded->name : "", open ? what : "");
    static const struct {
        const char *user, *db;
        bool admitted;
    } who[] = {
        {"alice", "demo", true},
        {"bob", "demo", false},
        {"ada", "demo", false},
        {"grace", "demo", false},
        {"ada", "demo_rls", true},
        {"grace", "demo_rls", true},
        {"bob", "demo_rls", false},
        {"bob", "demo_masked", true},
        {"ada", "demo_masked", false},
        {"alice", "demo_rotating", true},
        {"grace", "demo_rotating", false},
    };
    for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++)
        cr_expect_eq(config_db_admits(cfg, config_find_db(cfg, who[i].db), who[i].user, NULL),
                     who[i].admitted, "%s into %s", who[i].user, who[i].db);
    config_free(cfg);
}

Test(config, defaults_apply_to_a_minimal_file)
{
    struct config_errors errs;
    struct config *cfg = parse(minimal, &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    cr_expect_str_eq(cfg->listen_host, "127.0.0.1");
    cr_expect_eq(cfg->listen_port, 6432);
    cr_expect_null(cfg->tls_cert);
    cr_expect_null(cfg->takeover_socket, "no takeover socket unless asked for");
    cr_expect_str_eq(cfg->unix_socket_path, "", "no Unix socket unless asked for");
    cr_expect_eq(cfg->max_clients, 1000);
    cr_expect_eq(cfg->max_message_size, 16u << 20);
    cr_expect_eq(cfg->max_message_memory, 256u << 20);
    cr_expect_eq(cfg->shutdown_timeout_s, 30);
    cr_expect_str_eq(cfg->log_level, "info");
    const struct db_config *db = &cfg->dbs[0];
    cr_expect_str_eq(db->name, "app");
    cr_expect_str_eq(db->dbname, "app", "dbname defaults to the entry's key");
    cr_expect_eq(db->port, 5432);
    cr_expect_null(db->password);
    cr_expect_eq(db->tls, TLS_PREFER);
    cr_expect_eq(db->pool.size, 20);
    cr_expect_eq(db->pool.min, 0);
    cr_expect_eq(db->pool.max_wait_ms, 5000);
    cr_expect_eq(db->pool.idle_timeout_s, 600);
    cr_expect_eq(db->pool.lifetime_s, 3000);
    cr_expect_eq(db->pool.connect_timeout_ms, 5000);
    cr_expect_eq(cfg->n_users, 0);
    cr_expect_not(cfg->auth_query.enabled);
    config_free(cfg);
}

/* How each user logs in: its users: entry (password, trust), none for an identity entry
 * (auth: token) or an unknown name, else auth_query when it is on (never for the console). */
Test(config, each_user_has_one_way_to_log_in)
{
    static const char base[] = "databases:\n"
                               "  app: {host: h, user: u1, password: p1}\n"
                               "users:\n"
                               "  al: {password: pw}\n"
                               "  tr: {auth: trust}\n"
                               "  tk: {auth: token}\n";
    char text[512];
    struct config_errors errs;
    for (int lookup = 0; lookup < 2; lookup++) {
        snprintf(text, sizeof(text), "%s%s", base, lookup ? "auth_query:\n  database: app\n" : "");
        struct config *cfg = parse(text, &errs);
        cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
        const struct db_config *db = config_find_db(cfg, "app");
        size_t entry = 99;
        cr_expect_eq(config_login_path(cfg, db, false, "al", &entry), LOGIN_PASSWORD);
        cr_expect_eq(entry, 0);
        cr_expect_eq(config_login_path(cfg, db, false, "tr", &entry), LOGIN_TRUST);
        cr_expect_eq(entry, 1);
        cr_expect_eq(config_login_path(cfg, NULL, true, "tr", &entry), LOGIN_TRUST, "the console");
        cr_expect_eq(config_login_path(cfg, db, false, "tk", &entry), LOGIN_NONE);
        cr_expect_eq(config_login_path(cfg, db, false, "dave", &entry),
                     lookup ? LOGIN_LOOKUP : LOGIN_NONE);
        cr_expect_eq(config_login_path(cfg, NULL, false, "dave", &entry),
                     lookup ? LOGIN_LOOKUP : LOGIN_NONE, "an entry that does not exist");
        /* the console is opened by users: entries alone, never through auth_query */
        cr_expect_eq(config_login_path(cfg, NULL, true, "dave", &entry), LOGIN_NONE);
        config_free(cfg);
    }
}

Test(config, auth_query_defaults_to_the_database_login)
{
    struct config_errors errs;
    struct config *cfg = parse("databases:\n"
                               "  app: {host: h, user: u1, password: p1}\n"
                               "auth_query:\n"
                               "  database: app\n",
                               &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    cr_expect_str_eq(cfg->auth_query.user, "u1");
    cr_expect_str_eq(cfg->auth_query.password, "p1");
    cr_expect(strstr(cfg->auth_query.query, "pg_shadow"));
    cr_expect(strstr(cfg->auth_query.query, "valuntil > now()"), "no expired password");
    config_free(cfg);
}

/* Each bad file and the exact first error it must produce. */
static const struct {
    const char *text;
    const char *error;
} bad[] = {
    {"databases:\n  app: {host: h, user: u}\nlisten:\n  prot: 1\n",
     "t.yaml:4:3: unknown key 'prot' in listen (expected one of: host, port, tls, "
     "takeover_socket, unix_socket_dir, unix_socket_mode)"},
    {"listen:\n  takeover_socket: run/lp.sock\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:20: listen.takeover_socket: expected an absolute path shorter than 108 bytes"},
    {"listen:\n  unix_socket_dir: run\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:20: listen.unix_socket_dir: expected an absolute path of a directory; with "
     "\"/.s.PGSQL.6432\" after it, it must be shorter than 108 bytes"},
    {"listen:\n  port: 5433\n  unix_socket_dir: /"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaa"
     "\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:3:20: listen.unix_socket_dir: expected an absolute path of a directory; with "
     "\"/.s.PGSQL.5433\" after it, it must be shorter than 108 bytes"},
    {"listen:\n  unix_socket_dir: /run/lp\n  unix_socket_mode: 0789\ndatabases:\n  app: {host: "
     "h, user: u}\n",
     "t.yaml:3:21: listen.unix_socket_mode: expected permissions in octal, such as \"0777\" "
     "(everyone may connect; the default) or \"0770\" (the owner and its group)"},
    {"listen:\n  unix_socket_mode: \"0770\"\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:21: listen.unix_socket_mode: needs listen.unix_socket_dir"},
    {"databse:\n  app: {host: h, user: u}\n",
     "t.yaml:1:1: unknown key 'databse' at top level (expected one of: listen, limits, log, "
     "admin, databases, users, groups, rls, masking, auth_query, stats)"},
    {"databases:\n  app: {host: h, user: u}\nadmin:\n  users: admin\n",
     "t.yaml:4:10: admin.users: expected a list, got a scalar"},
    {"databases:\n  app:\n    host: h\n    user: u\n    pool:\n      sise: 5\n",
     "t.yaml:6:7: unknown key 'sise' in databases.app.pool (expected one of: mode, size, min, "
     "max_wait_ms, idle_timeout_s, lifetime_s, connect_timeout_ms, reserve, "
     "reserve_timeout_ms, check_after_s, idle_transaction_timeout_s, query_timeout_s, "
     "client_idle_timeout_s)"},
    {"listen:\n  port: abc\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:9: listen.port: expected an integer, got \"abc\""},
    {"listen:\n  port: \"5432\"\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:9: listen.port: expected an integer, got \"5432\""},
    {"listen:\n  port: 70000\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:9: listen.port: 70000 is out of range (1 to 65535)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    pool: {size: 2, min: 5}\n",
     "t.yaml:3:5: databases.app.pool: min (5) must not exceed size (2)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    pool: {mode: statement}\n",
     "t.yaml:5:18: databases.app.pool.mode: unknown value \"statement\" (expected one of: "
     "session, transaction)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    tls: on\n",
     "t.yaml:5:10: databases.app.tls: unknown value \"on\" (expected one of: disable, prefer, "
     "require, verify-full)"},
    {"databases:\n  app:\n    user: u\n", "t.yaml:3:5: databases.app: missing required key 'host'"},
    {"databases:\n  app:\n    host: h\n", "t.yaml:3:5: databases.app: missing required key 'user'"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al:\n    password: a\n    password_scram: "
     "\"SCRAM-SHA-256$4096:c2FsdA==$c3Q=:c2s=\"\n",
     "t.yaml:5:5: users.al: give exactly one of password_scram or password"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al:\n    password: a\n"
     "    from: [127.0.0.1, 10.1.0.0/8]\n",
     "t.yaml:6:23: users.al.from[1]: \"10.1.0.0/8\" has address bits set past its prefix "
     "length: write the network's first address (10.0.0.0/8), or a longer prefix"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al:\n    password: a\n"
     "    from: [localhost]\n",
     "t.yaml:6:12: users.al.from[0]: \"localhost\" is not an address: write an IPv4 or IPv6 "
     "address, optionally with a /prefix length (10.0.0.0/8, 2001:db8::/32), or unix"},
    {"databases:\n  app: {host: h, user: u}\nauth_query:\n  database: app\n"
     "  from: [\"fe80::1/10\"]\n",
     "t.yaml:5:10: auth_query.from[0]: \"fe80::1/10\" has address bits set past its prefix "
     "length: write the network's first address (fe80::/10), or a longer prefix"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al:\n    password: a\n    from: []\n",
     "t.yaml:6:11: users.al.from: an empty list lets nobody connect: remove the key to allow "
     "every address"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al: {}\n",
     "t.yaml:4:7: users.al: give password_scram or password (or auth: token for a Databricks "
     "identity that logs in with its own token only)"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al: {auth: token, password: p}\n",
     "t.yaml:4:7: users.al: auth: token takes no password (the user logs in with its own "
     "Databricks token)"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al: {password_scram: \"md5abc\"}\n",
     "t.yaml:4:7: users.al.password_scram: expected SCRAM-SHA-256$<iterations>:<salt>$"
     "<StoredKey>:<ServerKey> as in pg_authid (iterations from 1, a salt of at most 128 bytes, "
     "32-byte keys)"},
    /* the right shape, but start-up refused them: --check-config passed them */
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al: {password_scram: "
     "\"SCRAM-SHA-256$0:c2FsdA==$c3Q=:c2s=\"}\n",
     "t.yaml:4:7: users.al.password_scram: expected SCRAM-SHA-256$<iterations>:<salt>$"
     "<StoredKey>:<ServerKey> as in pg_authid (iterations from 1, a salt of at most 128 bytes, "
     "32-byte keys)"},
    {"databases:\n  app: {host: h, user: u}\nusers:\n  al: {auth: trust, password: x}\n",
     "t.yaml:4:7: users.al: auth: trust takes no password"},
    {"databases:\n  app: {host: h, user: u}\nauth_query:\n  database: nope\n",
     "t.yaml:4:13: auth_query.database: no database named \"nope\" under databases"},
    {"listen:\n  tls:\n    cert: c.pem\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:3:5: listen.tls: missing required key 'key'"},
    {"databases:\n  app: {host: h, user: u}\n  app: {host: h, user: u}\n",
     "t.yaml:3:3: duplicate key 'app' in databases"},
    {"databases:\n  app: {host: h, user: u, host: x}\n",
     "t.yaml:2:27: duplicate key 'host' in databases.app"},
    {"databases:\n  app: {host: \"h, user: u}\n",
     "t.yaml:3:1: YAML syntax error: found unexpected end of stream while scanning a quoted "
     "scalar"},
    {"", "t.yaml:1:1: empty configuration: at least 'databases' is required"},
    {"- a\n- b\n", "t.yaml:1:1: top level: expected a mapping, got a list"},
    {"databases: {}\n", "t.yaml:1:12: databases: at least one database is required"},
    {"databases:\n  - host: h\n", "t.yaml:2:3: databases: expected a mapping, got a list"},
    {"databases:\n  app: {host: [a, b], user: u}\n",
     "t.yaml:2:15: databases.app.host: expected a string, got a list"},
    {"databases:\n  app: {host: h, user: u}\nlimits:\n  max_message_size: 10\n",
     "t.yaml:4:21: limits.max_message_size: 10 is out of range (1024 to 1073741824)"},
    {"databases:\n  app: {host: h, user: u}\nlimits:\n  max_message_size: 2097152\n"
     "  max_message_memory: 2097152\n",
     "t.yaml:5:23: limits.max_message_memory (2097152) must hold one message of "
     "limits.max_message_size (2097152) and its 5-byte header: raise it to at least 2097157"},
    {"databases:\n  app: {host: h, user: u, password: }\n",
     "t.yaml:2:37: databases.app.password: missing value (expected a string)"},
    {"log:\n  level: verbose\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:2:10: log.level: unknown value \"verbose\" (expected one of: error, warning, info, "
     "debug)"},
    {"databases:\n  app: {host: h, user: u}\n---\nfoo: 1\n",
     "t.yaml:4:1: only one YAML document is allowed per file"},
    {"listen: 6432\ndatabases:\n  app: {host: h, user: u}\n",
     "t.yaml:1:9: listen: expected a mapping, got a scalar"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials: {path: /t}\n",
     "t.yaml:5:18: databases.app.credentials: missing required key 'provider'"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials: {provider: vault}\n",
     "t.yaml:5:29: databases.app.credentials.provider: unknown value \"vault\" (expected one "
     "of: static, file, command, databricks)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials: {provider: file}\n",
     "t.yaml:5:18: databases.app.credentials: provider file needs path"},
    {"databases:\n  app:\n    host: h\n    user: u\n    client_auth: databricks_token\n",
     "t.yaml:5:18: databases.app.client_auth: databricks_token checks tokens at the workspace of "
     "credentials.provider databricks; this database has provider static"},
    {"listen: {port: 1}\ndatabases:\n  app:\n    host: h\n    user: u\n"
     "    client_auth: databricks_token\n"
     "    credentials: {provider: databricks, workspace: https://w, client_id: i,\n"
     "                  client_secret_env: S, instance: x}\n",
     "t.yaml:6:18: databases.app.client_auth: databricks_token needs listen.tls (clients send "
     "their token as a password, which must not cross the network in clear)"},
    {"databases:\n  lakeproxy:\n    host: h\n    user: u\n",
     "t.yaml:2:3: databases.lakeproxy: the name is the admin console's; choose another"},
    {"databases:\n  app:\n    host: h\n    user: u\n    client_auth: oauth\n",
     "t.yaml:5:18: databases.app.client_auth: unknown value \"oauth\" (expected one of: password, "
     "databricks_token)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    password: p\n"
     "    credentials: {provider: file, path: /t}\n",
     "t.yaml:5:15: databases.app.password: not used with credentials.provider file; remove it"},
    {"databases:\n  app:\n    host: h\n    user: u\n"
     "    credentials: {provider: command, command: [a], shell: b}\n",
     "t.yaml:5:18: databases.app.credentials: give exactly one of command (a list) or shell"},
    {"databases:\n  app:\n    host: h\n    user: u\n"
     "    credentials: {provider: command, command: x}\n",
     "t.yaml:5:47: databases.app.credentials.command: expected a list, got a scalar"},
    {"databases:\n  app:\n    host: h\n    user: u\n"
     "    credentials: {provider: file, path: /t, workspace: https://w}\n",
     "t.yaml:5:56: databases.app.credentials.workspace: only used with provider: databricks "
     "(this is provider: file)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials:\n      provider: databricks\n"
     "      workspace: http://w\n      client_id: c\n      client_secret_env: S\n"
     "      instance: i\n",
     "t.yaml:6:7: databases.app.credentials: provider databricks needs workspace: https://<host>"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials:\n      provider: databricks\n"
     "      workspace: https://w\n      client_id: c\n      client_secret: s\n"
     "      instance: i\n",
     "t.yaml:9:7: unknown key 'client_secret' in databases.app.credentials (expected one of: "
     "provider, path, command, shell, workspace, client_id, client_id_env, client_secret_env, "
     "client_secret_file, instance, instances, endpoint, ttl_s, ca_file, timeout_ms, lifetime_s, "
     "refresh_percent, refresh_margin_s)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials:\n      provider: databricks\n"
     "      workspace: https://w\n      client_id: c\n      client_secret_env: S\n",
     "t.yaml:6:7: databases.app.credentials: give exactly one of instance, instances "
     "(provisioned) or endpoint (autoscaling)"},
    {"databases:\n  app:\n    host: h\n    user: u\n    credentials:\n      provider: databricks\n"
     "      workspace: https://w\n      client_id: c\n      client_secret_env: S\n"
     "      endpoint: projects/p/branches/b/endpoints/e\n      ttl_s: 60\n",
     "t.yaml:11:14: databases.app.credentials.ttl_s: 60 is out of range (300 to 3600)"}, /* rls:
                                                                                            row-level-security
                                                                                            attributes
                                                                                          */
    {"databases: {app: {host: h, user: u}}\nrls:\n  attributes: {tenant_id: atribute}\n",
     "t.yaml:3:27: rls.attributes.tenant_id: unknown source \"atribute\" (expected one of: "
     "attribute, user, database, client_addr, application_name, option, cert.CN, cert.O, "
     "cert.OU, cert.emailAddress, ...)"},
    {"databases: {app: {host: h, user: u}}\nrls:\n  attributes: {Tenant-Id: user}\n",
     "t.yaml:3:27: rls.attributes.Tenant-Id: attribute names are lower-case letters, digits and "
     "'_' (at most 48)"},
    {"databases: {app: {host: h, user: u}}\nrls: {prefix: \"app; drop\", attributes: {u: user}}\n",
     "t.yaml:2:15: rls.prefix: lower-case letters, digits and '_' (at most 48), like \"app\""},
    {"admin: {http: localhost}\ndatabases: {app: {host: h, user: u}}\n",
     "t.yaml:1:15: admin.http: expected host:port, like 127.0.0.1:9187"},
    {"databases: {app: {host: h, user: u}}\nstats: {sample_percent: 150}\n",
     "t.yaml:2:25: stats.sample_percent: 150 is out of range (0 to 100)"},
    {"databases: {app: {host: h, user: u}}\nstats: {logfile: x}\n",
     "t.yaml:2:9: unknown key 'logfile' in stats (expected one of: enabled, log, sample_percent, "
     "slow_ms, queue, max_queries)"},
    {"databases: {app: {host: h, user: u}}\nusers:\n  al: {password: \"a\\0b\"}\n",
     "t.yaml:3:18: a value may not contain a NUL character (\\0)"},
    {"databases: {app: {host: h, user: u}}\nrls:\n  attributes: {tenant_id: cert.OU}\n",
     "t.yaml:3:15: rls.attributes.tenant_id: a cert.* source needs client certificates (set "
     "listen.tls.client_ca)"},
    {"listen:\n  tls: {cert: c, key: k, client_cert: require}\ndatabases: {app: {host: h, user: "
     "u}}\n",
     "t.yaml:2:8: listen.tls.client_cert: require needs listen.tls.client_ca, the CA that signs "
     "client certificates"},
    {"listen:\n  tls: {cert: c, key: k, client_crl: r.crl}\ndatabases: {app: {host: h, user: "
     "u}}\n",
     "t.yaml:2:8: listen.tls.client_crl needs listen.tls.client_ca, the CA whose revocations it "
     "lists"},
    {"listen:\n  tls: {cert: c, key: k, client_cert: always}\ndatabases: {app: {host: h, user: "
     "u}}\n",
     "t.yaml:2:39: listen.tls.client_cert: unknown value \"always\" (expected one of: optional, "
     "require)"},
    {"databases: {app: {host: h, user: u}}\nrls: {prefix: app}\n",
     "t.yaml:2:6: rls: give attributes (name: source) to inject, or switch_role: true"},
    {"databases: {app: {host: h, user: u}}\nrls: {databases: [ap], attributes: {u: user}}\n",
     "t.yaml:2:18: rls.databases: no database named \"ap\" under databases"},
    {"databases: {app: {host: h, user: u}}\nrls: {attributes: {tenant_id: attribute}}\n"
     "users:\n  al: {password: x, attributes: {tenantid: '1'}}\n",
     "t.yaml:4:33: users.al.attributes.tenantid: not declared under rls.attributes with "
     "source attribute"},
    {"databases: {app: {host: h, user: u}}\nusers:\n  al: {password: x, groups: [ops]}\n",
     "t.yaml:3:29: users.al.groups: no group named \"ops\" under groups"},
    {"databases: {app: {host: h, user: u}}\nrls: {switch_role: true}\n"
     "users:\n  al: {password: x}\n",
     "t.yaml:4:7: users.al: rls.switch_role is on but this user has no role (set users.al.role, "
     "a role on one of its groups, or rls.default_role)"},
    {"databases: {app: {host: h, user: u}}\nrls: {switch_role: yes, attributes: {u: user}}\n",
     "t.yaml:2:20: rls.switch_role: expected true or false, got \"yes\""},
#define TXN_DB "databases: {app: {host: h, user: u, pool: {mode: transaction}}}\n"
    {TXN_DB "masking:\n  rules:\n    - column: public.t.c\n      function: partial(1, x)\n",
     "t.yaml:5:28: masking.rules[0].function: partial takes (prefix, suffix[, 'fill'])"},
    {TXN_DB "masking:\n  rules:\n    - {column: public.t.c, function: scramble}\n",
     "t.yaml:4:38: masking.rules[0].function: unknown masking function \"scramble\" (use "
     "redact, null, partial, email, last4, hash or fixed)"},
    {TXN_DB "masking:\n  rules:\n    - {column: t.c, function: email}\n",
     "t.yaml:4:16: masking.rules[0].column: expected schema.table.column (e.g. "
     "public.customers.email), got \"t.c\""},
    {TXN_DB "masking:\n  rules:\n    - {column: public.t.c, function: hash}\n",
     "t.yaml:4:5: masking: function hash needs a key: set masking.hash_key_env or "
     "masking.hash_key_file"},
    {TXN_DB
     "masking:\n  rules:\n    - {column: public.t.c, function: null, unless: {rolez: [a]}}\n",
     "t.yaml:4:53: unknown key 'rolez' in masking.rules[0].unless (expected one of: users, "
     "groups, roles, attributes)"},
    {"databases: {app: {host: h, user: u}}\n"
     "masking:\n  rules:\n    - {column: public.t.c, function: null}\n",
     "t.yaml:3:3: masking applies to database \"app\", whose pool.mode is session: masking "
     "needs pool.mode transaction (or list the databases it applies to under "
     "masking.databases)"},
    {TXN_DB "masking:\n  strict_predicates: true\n",
     "t.yaml:3:3: masking: missing required key 'rules'"},
};

Test(config, masking_policy_loads)
{
    struct config_errors errs;
    setenv("LP_TEST_MASK_KEY", "0123456789abcdef0123", 1);
    struct config *cfg =
        parse("databases:\n  app: {host: h, user: u, pool: {mode: transaction}}\n"
              "  raw: {host: h, user: u}\n"
              "groups:\n  auditors: {role: auditor}\n"
              "users:\n  al: {password: x, groups: [auditors]}\n  bo: {password: x}\n"
              "masking:\n  databases: [app]\n  hash_key_env: LP_TEST_MASK_KEY\n"
              "  allow_functions: [safe_fn]\n  strict_predicates: true\n"
              "  rules:\n"
              "    - column: public.customers.email\n      function: email\n"
              "      unless: {roles: [auditor]}\n"
              "    - {column: s.t.ssn, function: \"partial(0, 4, '#')\", unless: {users: [bo]}}\n"
              "    - {column: s.t.k, function: hash}\n",
              &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    const struct mask_config *m = &cfg->masking;
    cr_expect(m->enabled);
    cr_assert_eq(m->n_rules, 3);
    cr_expect_str_eq(m->rules[0].schema, "public");
    cr_expect_str_eq(m->rules[0].table, "customers");
    cr_expect_str_eq(m->rules[0].column, "email");
    cr_expect_eq(m->rules[0].fn.kind, MASK_EMAIL);
    cr_expect_eq(m->rules[1].fn.kind, MASK_PARTIAL);
    cr_expect_eq(m->rules[1].fn.suffix, 4);
    cr_expect_str_eq(m->rules[1].fn.text, "#");
    cr_expect_eq(m->hash_key_len, 20u, "the key is read from the environment at load");
    cr_expect(m->strict_predicates);
    cr_expect_eq(m->catalog_refresh_s, 30, "default");
    cr_expect(config_mask_applies(cfg, "app"));
    cr_expect_not(config_mask_applies(cfg, "raw"), "masking.databases limits where it applies");
    config_free(cfg);
}

/* A review: a hash key file every user could read was taken as it was. It is refused with
 * what to do; a file only its owner and group may read loads. */
Test(config, a_hash_key_file_every_user_can_read_is_refused)
{
    char path[] = "/tmp/lp-hash-key-XXXXXX", yaml[512];
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "0123456789abcdef0123\n", 21), 21);
    close(fd);
    snprintf(yaml, sizeof(yaml),
             "databases: {app: {host: h, user: u, pool: {mode: transaction}}}\n"
             "masking:\n  hash_key_file: %s\n  rules: [{column: public.t.k, function: hash}]\n",
             path);
    struct config_errors errs;
    cr_assert_eq(chmod(path, 0644), 0);
    struct config *cfg = parse(yaml, &errs);
    cr_expect_null(cfg);
    cr_assert_eq(errs.n, 1);
    char want[300];
    snprintf(want, sizeof(want),
             "t.yaml:3:18: masking.hash_key_file: %s can be read by every user (mode 0644): "
             "chmod o-rwx %s",
             path, path);
    cr_expect_str_eq(errs.msgs[0], want);
    config_errors_free(&errs);
    cr_assert_eq(chmod(path, 0640), 0);
    cfg = parse(yaml, &errs);
    cr_expect_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    cr_expect_eq(cfg ? cfg->masking.hash_key_len : 0, 20u);
    config_free(cfg);
    config_errors_free(&errs);
    unlink(path);
}

/* A hash key file that is no regular file (a FIFO nobody writes) is refused at once, with
 * file:line:column, rather than block the load. */
Test(config, a_hash_key_file_that_is_a_fifo_is_refused)
{
    char dir[] = "/tmp/lp-hash-fifo-XXXXXX", path[64], yaml[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    snprintf(yaml, sizeof(yaml),
             "databases: {app: {host: h, user: u, pool: {mode: transaction}}}\n"
             "masking:\n  hash_key_file: %s\n  rules: [{column: public.t.k, function: hash}]\n",
             path);
    struct config_errors errs;
    struct config *cfg = parse(yaml, &errs);
    cr_expect_null(cfg);
    cr_assert_eq(errs.n, 1);
    char want[200];
    snprintf(want, sizeof(want), "t.yaml:3:18: masking.hash_key_file: %s is not a regular file",
             path);
    cr_expect_str_eq(errs.msgs[0], want);
    config_errors_free(&errs);
    unlink(path);
    rmdir(dir);
}

Test(config, rls_policy_loads)
{
    struct config_errors errs;
    struct config *cfg =
        parse("listen: {tls: {cert: c, key: k, client_ca: ca}}\n"
              "databases:\n  app: {host: h, user: u}\n  raw: {host: h, user: u}\n"
              "groups:\n  eu: {role: reader, attributes: {region: eu}}\n"
              "users:\n  al: {password: x, groups: [eu], attributes: {tenant_id: '7'}}\n"
              "rls:\n  databases: [app]\n  switch_role: true\n"
              "  attributes: {tenant_id: attribute, region: attribute, who: user,\n"
              "               cn: cert.CN, locale: option}\n",
              &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    cr_expect(cfg->rls.enabled);
    cr_expect_str_eq(cfg->rls.prefix, "app", "the default prefix");
    cr_expect(config_rls_applies(cfg, "app"));
    cr_expect_not(config_rls_applies(cfg, "raw"), "rls.databases limits where it applies");
    cr_assert_eq(cfg->rls.n_attrs, 5);
    cr_expect_eq(cfg->rls.attrs[2].source, RLS_SRC_USER);
    cr_expect_eq(cfg->rls.attrs[3].source, RLS_SRC_CERT);
    cr_expect_eq(cfg->rls.attrs[4].source, RLS_SRC_OPTION);
    cr_expect_str_eq(config_find_group(cfg, "eu")->role, "reader");
    cr_expect_str_eq(config_find_user(cfg, "al")->attributes.items[0].value, "7");
    config_free(cfg);
}

/* Every user may log into every entry: one outside rls.databases (or masking.databases) that
 * reaches a protected server database would serve its rows unprotected (a red team logged
 * into such an alias as a tenant). lakeproxy warns of each at start and reload. */
Test(config, an_unprotected_entry_for_a_protected_database_is_found)
{
    struct config_errors errs;
    struct config *cfg =
        parse("databases:\n"
              "  app: {host: h, dbname: d, user: u}\n"
              "  app_tls: {host: H, dbname: d, user: u}\n"
              "  other: {host: h, dbname: e, user: u}\n"
              "  masked: {host: h, port: 5433, dbname: d, user: u, pool: {mode: transaction}}\n"
              "  masked_too: {host: h, port: 5433, dbname: d, user: v}\n"
              "users:\n  t: {password: x, attributes: {tenant_id: '1'}}\n"
              "rls:\n  databases: [app]\n  attributes: {tenant_id: attribute}\n"
              "masking:\n  databases: [masked]\n"
              "  rules: [{column: public.c.email, function: email}]\n",
              &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    size_t k = 0;
    const struct db_config *guarded;
    const char *what;
    const struct db_config *open = config_unprotected_alias(cfg, &k, &guarded, &what);
    cr_assert_not_null(open);
    cr_expect_str_eq(open->name, "app_tls");
    cr_expect_str_eq(guarded->name, "app");
    cr_expect_str_eq(what, "rls.databases");
    open = config_unprotected_alias(cfg, &k, &guarded, &what);
    cr_assert_not_null(open, "another port's entries are compared too");
    cr_expect_str_eq(open->name, "masked_too");
    cr_expect_str_eq(guarded->name, "masked");
    cr_expect_str_eq(what, "masking.databases");
    cr_expect_null(config_unprotected_alias(cfg, &k, &guarded, &what), "other has its own dbname");
    config_free(cfg);
    /* an entry outside both lists is reported for each */
    cfg = parse("databases:\n"
                "  app: {host: h, dbname: d, user: u, pool: {mode: transaction}}\n"
                "  raw: {host: h, dbname: d, user: u}\n"
                "users:\n  t: {password: x, attributes: {tenant_id: '1'}}\n"
                "rls:\n  databases: [app]\n  attributes: {tenant_id: attribute}\n"
                "masking:\n  databases: [app]\n"
                "  rules: [{column: public.c.email, function: email}]\n",
                &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    k = 0;
    cr_expect_str_eq(config_unprotected_alias(cfg, &k, &guarded, &what)->name, "raw");
    cr_expect_str_eq(what, "rls.databases");
    cr_expect_str_eq(config_unprotected_alias(cfg, &k, &guarded, &what)->name, "raw");
    cr_expect_str_eq(what, "masking.databases");
    cr_expect_null(config_unprotected_alias(cfg, &k, &guarded, &what));
    config_free(cfg);
    /* the loopback's names are one host */
    cfg = parse("databases:\n"
                "  app: {host: 127.0.0.1, dbname: d, user: u}\n"
                "  app_tls: {host: localhost, dbname: d, user: u}\n"
                "users:\n  t: {password: x, attributes: {tenant_id: '1'}}\n"
                "rls:\n  databases: [app]\n  attributes: {tenant_id: attribute}\n",
                &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    k = 0;
    open = config_unprotected_alias(cfg, &k, &guarded, &what);
    cr_expect(open && strcmp(open->name, "app_tls") == 0, "localhost is 127.0.0.1");
    config_free(cfg);
}

/* databases.X.allow names who may log into an entry: by user, by a configured group, or by
 * a Databricks token's group; an entry with it is no open alias of a protected database. */
Test(config, an_allow_list_admits_its_users_and_groups_only)
{
    struct config_errors errs;
    struct config *cfg =
        parse("databases:\n"
              "  app: {host: h, dbname: d, user: u}\n"
              "  etl: {host: h, dbname: d, user: u, allow: {users: [loader], groups: [ops]}}\n"
              "groups:\n  ops: {role: r}\n"
              "users:\n  t: {password: x, attributes: {tenant_id: '1'}}\n"
              "  loader: {password: x}\n  oncall: {password: x, groups: [ops]}\n"
              "rls:\n  databases: [app]\n  attributes: {tenant_id: attribute}\n",
              &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    const struct db_config *app = config_find_db(cfg, "app"), *etl = config_find_db(cfg, "etl");
    cr_expect(config_db_admits(cfg, app, "t", NULL), "no allow: every user");
    cr_expect(config_db_admits(cfg, etl, "loader", NULL));
    cr_expect(config_db_admits(cfg, etl, "oncall", NULL), "through its group ops");
    cr_expect_not(config_db_admits(cfg, etl, "t", NULL), "the tenant is not listed");
    cr_expect_not(config_db_admits(cfg, etl, "someone", NULL), "nor an auth_query user");
    char *ops = "ops", *dev = "dev";
    struct string_list token_ops = {&ops, 1}, token_dev = {&dev, 1};
    cr_expect(config_db_admits(cfg, etl, "ann@example.com", &token_ops), "a token's group");
    cr_expect_not(config_db_admits(cfg, etl, "ann@example.com", &token_dev));
    size_t k = 0;
    const struct db_config *guarded;
    const char *what;
    cr_expect_null(config_unprotected_alias(cfg, &k, &guarded, &what),
                   "etl reaches app's rows but only for whom it names");
    config_free(cfg);
    /* an allow: that names nobody is refused where it is written */
    cfg = parse("databases:\n  app: {host: h, user: u,\n    allow: {users: []}}\n", &errs);
    cr_assert_null(cfg);
    cr_assert_eq(errs.n, 1);
    cr_expect(strstr(errs.msgs[0], "t.yaml:3:12: databases.app.allow: names no users or groups"),
              "%s", errs.msgs[0]);
    config_errors_free(&errs);
}

Test(config, credential_providers_load)
{
    struct config_errors errs;
    struct config *cfg = parse("databases:\n"
                               "  a: {host: h, user: u, credentials: {provider: file, path: /t}}\n"
                               "  b: {host: h, user: u, credentials: {provider: command,\n"
                               "      command: [databricks, auth, token], timeout_ms: 2000}}\n"
                               "  c:\n    host: h\n    user: sp\n    credentials:\n"
                               "      provider: databricks\n      workspace: https://ws//\n"
                               "      client_id_env: CID\n      client_secret_file: /s\n"
                               "      endpoint: projects/p/branches/b/endpoints/e\n"
                               "      ttl_s: 900\n"
                               "  d: {host: h, user: u, password: p}\n",
                               &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    cr_expect_eq(config_find_db(cfg, "a")->cred.provider, CRED_FILE);
    cr_expect_eq(config_find_db(cfg, "a")->cred.lifetime_s, 0,
                 "a file token lives until it changes");
    const struct cred_config *b = &config_find_db(cfg, "b")->cred;
    cr_expect_eq(b->provider, CRED_COMMAND);
    cr_expect_eq(b->command.n, 3);
    cr_expect_str_eq(b->command.items[2], "token");
    cr_expect_eq(b->timeout_ms, 2000);
    cr_expect_eq(b->lifetime_s, 3600, "plain command output is assumed to live an hour");
    const struct cred_config *c = &config_find_db(cfg, "c")->cred;
    cr_expect_eq(c->provider, CRED_DATABRICKS);
    cr_expect_str_eq(c->workspace, "https://ws",
                     "trailing slashes dropped: API paths are appended to it (token auth too)");
    cr_expect_str_eq(c->endpoint, "projects/p/branches/b/endpoints/e");
    cr_expect_eq(c->ttl_s, 900);
    cr_expect_eq(c->refresh_percent, 80);
    cr_expect_eq(c->refresh_margin_s, 300);
    cr_expect_eq(config_find_db(cfg, "d")->cred.provider, CRED_STATIC);
    config_free(cfg);
}

Test(config, each_mistake_is_reported_at_its_line_and_column)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config_errors errs;
        struct config *cfg = parse(bad[i].text, &errs);
        cr_expect_null(cfg, "case %zu was accepted", i);
        config_free(cfg);
        cr_expect_geq(errs.n, 1, "case %zu: no error", i);
        if (errs.n)
            cr_expect_str_eq(errs.msgs[0], bad[i].error, "case %zu: got %s", i, errs.msgs[0]);
        config_errors_free(&errs);
    }
}

Test(config, all_errors_are_collected_not_just_the_first)
{
    struct config_errors errs;
    struct config *cfg =
        parse("listen:\n  port: x\n  hots: y\ndatabases:\n  app: {user: u}\n", &errs);
    cr_expect_null(cfg);
    cr_assert_eq(errs.n, 3);
    cr_expect(strstr(errs.msgs[0], "t.yaml:2:9: listen.port"));
    cr_expect(strstr(errs.msgs[1], "t.yaml:3:3: unknown key 'hots'"));
    cr_expect(strstr(errs.msgs[2], "missing required key 'host'"));
    config_errors_free(&errs);
}

Test(config, unreadable_file_names_the_file)
{
    struct config_errors errs = {0};
    cr_expect_null(config_load("/nonexistent/lakeproxy.yaml", &errs));
    cr_assert_eq(errs.n, 1);
    cr_expect_str_eq(errs.msgs[0], "/nonexistent/lakeproxy.yaml:1:1: cannot read: No such file or "
                                   "directory");
    config_errors_free(&errs);
}

/* Cuts the file path to size bytes, expects the configuration (yaml, or the file itself when
 * NULL) to load, and removes the file. */
static void expect_it_loads_cut_to(const char *path, off_t size, const char *yaml)
{
    struct config_errors errs = {0};
    cr_assert_eq(truncate(path, size), 0);
    struct config *cfg = yaml ? parse(yaml, &errs) : config_load(path, &errs);
    cr_expect_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    config_free(cfg);
    config_errors_free(&errs);
    unlink(path);
}

/* A configuration path that names a FIFO (or a device) is refused at once, rather than block
 * the start or a reload until something writes to it. */
Test(config, a_configuration_that_is_a_fifo_is_refused_at_once, .timeout = 10)
{
    char dir[] = "/tmp/lp-conf-fifo-XXXXXX", path[64], want[200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/lakeproxy.yaml", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    struct config_errors errs = {0};
    cr_expect_null(config_load(path, &errs));
    cr_assert_eq(errs.n, 1);
    snprintf(want, sizeof(want), "%s:1:1: cannot read: it is not a regular file", path);
    cr_expect_str_eq(errs.msgs[0], want);
    config_errors_free(&errs);
    unlink(path);
    rmdir(dir);
}

/* A configuration file is read whole or refused: one past the size limit (16 MiB) is refused
 * with the limit, never parsed as far as it was read. */
Test(config, a_configuration_past_the_size_limit_is_refused, .timeout = 20)
{
    char dir[] = "/tmp/lp-conf-big-XXXXXX", path[64], want[200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/lakeproxy.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    char line[64];
    memset(line, '#', sizeof(line) - 1); /* comment lines: valid YAML to the end */
    line[sizeof(line) - 1] = '\n';
    size_t n = (size_t)fprintf(f, "databases: {app: {host: h, user: u}}\n");
    for (; n <= (16u << 20); n += sizeof(line))
        fwrite(line, 1, sizeof(line), f);
    fclose(f);
    struct config_errors errs = {0};
    cr_expect_null(config_load(path, &errs));
    cr_assert_eq(errs.n, 1);
    snprintf(want, sizeof(want), "%s:1:1: cannot read: it is larger than %u bytes", path,
             16u << 20);
    cr_expect_str_eq(errs.msgs[0], want);
    config_errors_free(&errs);
    expect_it_loads_cut_to(path, 4096, NULL); /* and one under the limit loads */
    rmdir(dir);
}

/* A hash key file longer than the key's 1,023 bytes is refused, not cut short. */
Test(config, a_hash_key_file_past_its_limit_is_refused)
{
    char dir[] = "/tmp/lp-hash-big-XXXXXX", path[64], yaml[512], want[200];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 1024; i++)
        fputc('k', f);
    fclose(f);
    chmod(path, 0600);
    snprintf(yaml, sizeof(yaml),
             "databases: {app: {host: h, user: u, pool: {mode: transaction}}}\n"
             "masking:\n  hash_key_file: %s\n  rules: [{column: public.t.k, function: hash}]\n",
             path);
    struct config_errors errs;
    cr_expect_null(parse(yaml, &errs));
    cr_assert_eq(errs.n, 1);
    snprintf(want, sizeof(want), "t.yaml:3:18: masking.hash_key_file: %s is larger than 1023 bytes",
             path);
    cr_expect_str_eq(errs.msgs[0], want);
    config_errors_free(&errs);
    expect_it_loads_cut_to(path, 1023, yaml);
    rmdir(dir);
}

Test(config, lookups_by_name)
{
    struct config_errors errs;
    struct config *cfg = parse("databases:\n  a: {host: h, user: u}\n  b: {host: h2, user: u}\n"
                               "users:\n  x: {auth: trust}\n",
                               &errs);
    cr_assert_not_null(cfg);
    cr_expect_str_eq(config_find_db(cfg, "b")->host, "h2");
    cr_expect_null(config_find_db(cfg, "c"));
    cr_expect_not_null(config_find_user(cfg, "x"));
    cr_expect_null(config_find_user(cfg, "y"));
    config_free(cfg);
}

Test(config, a_reload_keeps_a_credential_only_when_its_source_is_unchanged)
{
    struct config_errors errs;
    const char *base = "databases:\n  a: {host: h, user: u, credentials: {provider: databricks,\n"
                       "      workspace: https://w, client_id: c, client_secret_env: S,\n"
                       "      instance: %s, timeout_ms: %d}}\n";
    char t1[512], t2[512], t3[512];
    snprintf(t1, sizeof(t1), base, "i1", 1000);
    snprintf(t2, sizeof(t2), base, "i1", 2000); /* timing only */
    snprintf(t3, sizeof(t3), base, "i2", 1000); /* another instance */
    struct config *c1 = parse(t1, &errs), *c2 = parse(t2, &errs), *c3 = parse(t3, &errs);
    cr_assert(c1 && c2 && c3);
    cr_expect(config_same_credentials(&c1->dbs[0], &c2->dbs[0]));
    cr_expect_not(config_same_credentials(&c1->dbs[0], &c3->dbs[0]));
    config_free(c1);
    config_free(c2);
    config_free(c3);
}

/* An entry whose only protection is its allow: list is warned of an alias open to all (the
 * same server database: a user outside the list reads it there); an entry under rls beside
 * it is not such an alias. (Red team 3) */
Test(config, an_open_alias_of_an_allow_only_entry_is_reported)
{
    struct config_errors errs = {0};
    struct config *cfg = parse("databases:\n"
                               "  payroll: {host: h, dbname: d, user: u, allow: {users: [alice]}}\n"
                               "  reports: {host: h, dbname: d, user: u}\n"
                               "users:\n  alice: {password: x}\n  bob: {password: y}\n",
                               &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    cr_expect_not(config_db_admits(cfg, config_find_db(cfg, "payroll"), "bob", NULL));
    size_t k = 0;
    const struct db_config *guarded;
    const char *what;
    const struct db_config *open = config_unprotected_alias(cfg, &k, &guarded, &what);
    cr_expect(open && strcmp(open->name, "reports") == 0,
              "bob reaches payroll's server database through reports unwarned");
    cr_expect(open && strcmp(what, "allow") == 0 && strcmp(guarded->name, "payroll") == 0);
    config_free(cfg);
    /* the usual set-up: the tenants' entry under rls beside the administrators' with allow: */
    cfg = parse("databases:\n"
                "  app: {host: h, dbname: d, user: u}\n"
                "  app_admin: {host: h, dbname: d, user: u, allow: {users: [alice]}}\n"
                "users:\n  alice: {password: x, attributes: {t: \"1\"}}\n"
                "rls: {prefix: app, databases: [app], attributes: {t: attribute}}\n",
                &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    k = 0;
    open = config_unprotected_alias(cfg, &k, &guarded, &what);
    cr_expect_null(open, "app is under rls: %s", open ? open->name : "");
    config_free(cfg);
    config_errors_free(&errs);
}

/* Two users: entries the same but for case, text with a token database or without one: the
 * number of errors that say so. */
static size_t case_twin_errors(bool tokens)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "databases:\n  app:\n    host: h\n    user: u\n%s"
             "users:\n  Ana@example.com: {auth: token}\n  ana@example.com: {auth: token}\n"
             "  bo: {password: b}\n",
             tokens ? "    client_auth: databricks_token\n"
                      "    credentials: {provider: databricks, workspace: https://w, "
                      "client_id: i, client_secret_env: S, instance: x}\n"
                    : "");
    struct config_errors errs;
    struct config *cfg = parse(text, &errs);
    size_t n = 0;
    for (size_t i = 0; i < errs.n; i++)
        n += strstr(errs.msgs[i], "the same name as users.") &&
             strstr(errs.msgs[i], "but for case: database \"app\" takes Databricks tokens");
    config_free(cfg);
    config_errors_free(&errs);
    return n;
}

/* A token's user name finds its users: entry ignoring case: two entries that differ only in
 * case would make which one applies (its from:, groups, attributes) a matter of chance. */
Test(config, entries_the_same_but_for_case_are_refused_beside_a_token_database)
{
    cr_expect_eq(case_twin_errors(true), 1);
    cr_expect_eq(case_twin_errors(false), 0, "without a token database, names keep their case");
}

/* The file at a fresh temporary path holding text, with mode; its path in out. */
static void temp_file(const char *text, mode_t mode, char *out, size_t outsz)
{
    snprintf(out, outsz, "/tmp/lp-config-XXXXXX");
    int fd = mkstemp(out);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* Every user of the machine could rewrite the policy: refused, saying how to fix it. */
Test(config, a_configuration_every_user_may_change_is_refused)
{
    char path[64];
    struct config_errors errs = {0};
    temp_file("databases:\n  app: {host: h, user: u}\n", 0666, path, sizeof(path));
    struct config *cfg = config_load(path, &errs);
    cr_expect_null(cfg);
    cr_assert_eq(errs.n, 1);
    cr_expect(strstr(errs.msgs[0], "can be changed by every user (mode 0666)") &&
                  strstr(errs.msgs[0], "chmod o-w"),
              "%s", errs.msgs[0]);
    config_errors_free(&errs);
    chmod(path, 0644);
    cfg = config_load(path, &errs);
    cr_expect_not_null(cfg, "0644 is refused");
    cr_expect(cfg && cfg->readable_by_all);
    config_free(cfg);
    unlink(path);
}

/* The secrets written in the file itself, named by their key; none when there are none. */
Test(config, inline_secrets_are_named_by_their_key)
{
    char key[100];
    struct config_errors errs;
    struct config *cfg = parse("databases:\n  app: {host: h, user: u}\n"
                               "users:\n  al: {auth: trust}\n  bo: {password: b}\n",
                               &errs);
    cr_assert_not_null(cfg);
    cr_expect_str_eq(config_inline_secret(cfg, key, sizeof(key)), "users.bo.password");
    config_free(cfg);
    cfg = parse("databases:\n  app: {host: h, user: u, password: p}\n", &errs);
    cr_assert_not_null(cfg);
    cr_expect_str_eq(config_inline_secret(cfg, key, sizeof(key)), "databases.app.password");
    config_free(cfg);
    cfg = parse("databases:\n  app: {host: h, user: u}\nusers:\n  al: {auth: trust}\n", &errs);
    cr_assert_not_null(cfg);
    cr_expect_null(config_inline_secret(cfg, key, sizeof(key)));
    config_free(cfg);
}

/* A file every user may read that holds a secret gets the warning (naming the key, never the
 * value); at 0640 it does not, nor a readable file without secrets. */
Test(config, a_readable_file_with_secrets_is_warned_about)
{
    char path[64], msg[1200];
    struct config_errors errs = {0};
    temp_file("databases:\n  app: {host: h, user: u, password: s3cr3t-value}\n", 0644, path,
              sizeof(path));
    struct config *cfg = config_load(path, &errs);
    cr_assert_not_null(cfg);
    const char *w = config_readable_secrets(cfg, msg, sizeof(msg));
    cr_expect(w && strstr(w, "holds secrets (databases.app.password") && !strstr(w, "s3cr3t"), "%s",
              w ? w : "(none)");
    config_free(cfg);
    chmod(path, 0640);
    cfg = config_load(path, &errs);
    cr_assert_not_null(cfg);
    cr_expect_null(config_readable_secrets(cfg, msg, sizeof(msg)), "0640 warned about");
    config_free(cfg);
    unlink(path);
}

/* A file in a directory where every user may replace it (0777, no sticky bit) is refused like
 * a file every user may change; with the sticky bit (as /tmp) it is not. */
Test(config, a_configuration_in_a_directory_every_user_may_change_is_refused)
{
    char dir[] = "/tmp/lp-config-dir-XXXXXX", path[80];
    struct config_errors errs = {0};
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/lakeproxy.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("databases:\n  app: {host: h, user: u}\n", f);
    fclose(f);
    chmod(path, 0640);
    chmod(dir, 0777);
    struct config *cfg = config_load(path, &errs);
    cr_expect_null(cfg);
    cr_expect(errs.n == 1 && strstr(errs.msgs[0], "its directory") &&
                  strstr(errs.msgs[0], "can be changed by every user (mode 0777)"),
              "%s", errs.n ? errs.msgs[0] : "(accepted)");
    config_errors_free(&errs);
    config_free(cfg);
    chmod(dir, 01777);
    cfg = config_load(path, &errs);
    cr_expect_not_null(cfg, "a sticky directory is refused");
    config_free(cfg);
    config_errors_free(&errs);
    unlink(path);
    rmdir(dir);
}
