/* config.h: the immutable configuration lakeproxy builds from its YAML file. */
#ifndef LAKEPROXY_CONFIG_H
#define LAKEPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mask.h"
#include "netrule.h"

/* listen.takeover_socket must fit a sockaddr_un's sun_path (108 bytes on Linux). */
#define TAKEOVER_SOCKET_MAX 108

enum pool_mode { POOL_SESSION, POOL_TRANSACTION };

/* Server-side TLS, with libpq's sslmode meanings. */
enum tls_mode { TLS_DISABLE, TLS_PREFER, TLS_REQUIRE, TLS_VERIFY_FULL };

/* How a client proves who it is to the proxy. */
enum auth_method {
    AUTH_SCRAM, /* SCRAM-SHA-256 against users.<name>.password_scram or .password */
    AUTH_TRUST, /* no password: local demos only */
    AUTH_TOKEN, /* no password: a Databricks identity, logging in with its own token only
                   (databases with client_auth: databricks_token); its groups and attributes */
};

/* How the clients of one database prove who they are (databases.X.client_auth). */
enum client_auth {
    CLIENT_AUTH_PASSWORD,         /* users:, else auth_query (default) */
    CLIENT_AUTH_DATABRICKS_TOKEN, /* their own Databricks OAuth token, checked at the workspace */
};

struct pool_config {
    enum pool_mode mode; /* pool.mode: session | transaction (default session) */
    int size;            /* pool.size: most server connections per pool (default 20) */
    int min;             /* pool.min: pre-warmed connections (default 0) */
    int max_wait_ms;    /* pool.max_wait_ms: a client waits this long for a server (default 5000) */
    int idle_timeout_s; /* pool.idle_timeout_s: close idle servers after this (default 600, 0 =
                           never) */
    int lifetime_s; /* pool.lifetime_s: close servers older than this when idle (default 3000, 0 =
                       never) */
    int connect_timeout_ms; /* pool.connect_timeout_ms: server connect + login limit (default 5000)
                             */
    int reserve;            /* pool.reserve: extra servers for clients waiting reserve_timeout_ms
                               (default 0) */
    int reserve_timeout_ms; /* pool.reserve_timeout_ms: (default 3000) */
    int check_after_s;      /* pool.check_after_s: a server idle this long answers an empty
                               query before it serves a client (default 30, 0 = never) */
    int idle_transaction_timeout_s; /* pool.idle_transaction_timeout_s: close a client idle
                                       inside a transaction this long (default 0 = never) */
    int query_timeout_s;            /* pool.query_timeout_s: close a client whose statement runs
                                       this long, cancelling it (default 0 = never) */
    int client_idle_timeout_s;      /* pool.client_idle_timeout_s: close a client idle between
                                       statements this long (default 0 = never) */
};

/* TCP liveness of every connection, to clients and to servers (limits.tcp_*). */
struct tcp_config {
    int keepalive_idle_s;     /* tcp_keepalive_idle_s: probe after this long quiet (default 60;
                                 0: no keepalive) */
    int keepalive_interval_s; /* tcp_keepalive_interval_s: between probes (default 10) */
    int keepalive_count;      /* tcp_keepalive_count: unanswered probes before the connection
                                 is dropped (default 6) */
    int user_timeout_ms;      /* tcp_user_timeout_ms: sent data unacknowledged this long drops
                                 the connection (TCP_USER_TIMEOUT; default 0: the kernel's) */
};

/* A YAML list of strings. */
struct string_list {
    char **items;
    size_t n;
};

/* Where the password towards the server comes from (databases.X.credentials.provider). */
enum cred_provider {
    CRED_STATIC,     /* databases.X.password, fixed (the default) */
    CRED_FILE,       /* a token file, re-read when it changes */
    CRED_COMMAND,    /* a command's stdout: plain token or JSON with an expiry */
    CRED_DATABRICKS, /* OAuth M2M at the workspace, then a Lakebase database credential */
};

struct cred_config {
    enum cred_provider provider;  /* provider: static | file | command | databricks */
    char *path;                   /* file: the token file */
    struct string_list command;   /* command: argv, run without a shell */
    char *shell;                  /* command: a /bin/sh -c line, when a shell is wanted */
    char *workspace;              /* databricks: https://<workspace host> */
    char *client_id;              /* databricks: service principal's client id ... */
    char *client_id_env;          /* ... or the environment variable holding it */
    char *client_secret_env;      /* databricks: environment variable holding the secret ... */
    char *client_secret_file;     /* ... or a file holding it (never the YAML itself) */
    char *instance;               /* databricks provisioned: instance name ... */
    struct string_list instances; /* ... or several */
    char *endpoint;               /* databricks autoscaling: projects/P/branches/B/endpoints/E */
    int ttl_s;            /* autoscaling: requested token lifetime, 300..3600 (0: default) */
    char *ca_file;        /* databricks: CA bundle for the workspace (default: system) */
    int timeout_ms;       /* one fetch (command run or HTTPS exchange) limit, default 10000 */
    int lifetime_s;       /* assumed lifetime of a token that states no expiry (default
                             3600 for command, 0 = until the file changes for file) */
    int refresh_percent;  /* refresh once this % of the lifetime has passed (default 80) */
    int refresh_margin_s; /* ... or this long before expiry, if earlier (default 300) */
};

/* databases.X.allow: the users, and the groups (users.X.groups, or a Databricks token's), that
 * may log into an entry; both empty (no allow:) lets every authenticated user in. */
struct db_allow {
    struct string_list users;
    struct string_list groups;
};

struct db_config {
    char *name;        /* the key under databases: what clients put in their connection string */
    char *host;        /* host: server host name or address (required) */
    int port;          /* port: default 5432 */
    char *dbname;      /* dbname: database on the server (default: name) */
    char *user;        /* user: the login the proxy uses towards the server (required) */
    char *password;    /* password: static credential towards the server (may be NULL) */
    enum tls_mode tls; /* tls: disable | prefer | require | verify-full (default prefer) */
    char *ca_file;     /* ca_file: CA bundle for verify-full (default: system store) */
    struct pool_config pool;
    struct cred_config cred;      /* credentials: rotating passwords (default: static password) */
    enum client_auth client_auth; /* client_auth: password | databricks_token */
    struct db_allow allow;        /* allow: who may log into this entry (default: every user) */
};

/* A YAML mapping of strings to strings (attributes: { tenant_id: "42" }). */
struct kv {
    char *key;
    char *value;
};

struct kv_list {
    struct kv *items;
    size_t n;
};

struct user_config {
    char *name;            /* the key under users: */
    enum auth_method auth; /* auth: scram | trust (default scram) */
    char *password_scram;  /* password_scram: "SCRAM-SHA-256$iter:salt$stored:server" */
    char *password;        /* password: plain text, the proxy derives a SCRAM verifier (demos) */
    char *role;            /* role: the PostgreSQL role assumed for this user (rls.switch_role) */
    struct string_list groups; /* groups: names under groups:, in order of precedence */
    struct kv_list attributes; /* attributes: name -> value, injected by rls */
    struct net_rules from;     /* from: the addresses it may connect from (none: anywhere) */
};

/* groups: attributes and a role shared by several users. */
struct group_config {
    char *name;
    char *role;
    struct kv_list attributes;
};

/* Where an injected attribute's value comes from (rls.attributes.<name>). */
enum rls_source {
    RLS_SRC_ATTRIBUTE,   /* attribute: users.X.attributes, else the first group's that has it */
    RLS_SRC_USER,        /* user: the authenticated user name */
    RLS_SRC_DATABASE,    /* database: the database name the client asked for */
    RLS_SRC_CLIENT_ADDR, /* client_addr: the client's IP address */
    RLS_SRC_APP_NAME,    /* application_name: as the client set it (client-controlled) */
    RLS_SRC_CERT,        /* cert.<FIELD>: a subject field of the client's TLS certificate */
    RLS_SRC_OPTION,      /* option: client-settable at startup: options=-c <prefix>.<name>=v */
};

struct rls_attr {
    char *name; /* without the prefix: tenant_id is injected as <prefix>.tenant_id */
    enum rls_source source;
    int cert_nid; /* RLS_SRC_CERT: OpenSSL NID of the subject field */
};

/* rls: row-level-security attributes injected into every transaction, and the guard. */
struct rls_config {
    bool enabled;                 /* the rls: section is present */
    char *prefix;                 /* prefix: protected namespace (default "app") */
    struct string_list databases; /* databases: where it applies (default: all) */
    struct rls_attr *attrs;       /* attributes: name -> source */
    size_t n_attrs;
    bool switch_role;   /* switch_role: assume each user's role (default false) */
    char *default_role; /* default_role: for users with no role of their own */
};

/* stats: per-query statistics and the query log. */
struct stats_config {
    bool enabled;       /* enabled: aggregates for SHOW QUERIES / SHOW PUSHDOWN (default true) */
    char *log;          /* log: JSON Lines file, or "stderr"; NULL: no query log */
    int sample_percent; /* sample_percent: share of queries logged (default 100) */
    int slow_ms;        /* slow_ms: queries at least this slow are always logged (0: off) */
    int queue;          /* queue: log records waiting for the writer at most (default 4096) */
    int max_queries;    /* max_queries: fingerprints kept (default 5000) */
};

/* auth_query: look up the verifier of users not listed under users: on the server. */
struct auth_query_config {
    bool enabled;
    char *query; /* query: default "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename =
                    $1" */
    char *database;        /* database: key of a databases: entry whose server to ask (required when
                              enabled) */
    char *user;            /* user: login for the look-up (default: that database's user) */
    char *password;        /* password: for the look-up login (default: that database's password) */
    struct net_rules from; /* from: the addresses users it finds may connect from (none: any) */
};

/* One masking.rules entry: a column, its function, and who sees it unmasked. */
struct mask_rule {
    char *schema, *table, *column;    /* column: "schema.table.column" */
    struct mask_fn fn;                /* function: see mask.h */
    uint8_t strength;                 /* mask_strength(&fn) */
    uint32_t same_as;                 /* the first rule whose function masks alike */
    struct string_list unless_users;  /* unless.users: exempt users */
    struct string_list unless_groups; /* unless.groups: members of these groups are exempt */
    struct string_list unless_roles;  /* unless.roles: users (or their groups) with this role */
    struct kv_list unless_attrs;      /* unless.attributes: name -> value, from users.X /
                                         groups.X attributes (never from the client) */
};

/* masking: result columns rewritten for every client a rule is not exempted for. */
struct mask_config {
    bool enabled;            /* the masking: section is present with rules */
    struct mask_rule *rules; /* rules: list */
    size_t n_rules;
    struct string_list databases;       /* databases: where it applies (default: all) */
    struct string_list allow_functions; /* allow_functions: non-built-in functions masked
                                           clients may call (default: none) */
    bool strict_predicates;             /* strict_predicates: refuse masked columns in WHERE,
                                           ORDER BY ... too (default false) */
    int catalog_refresh_s;              /* catalog_refresh_s: re-read tables, views and
                                           functions this often (default 30) */
    int max_tests_per_second;           /* max_tests_per_second: comparisons of masked columns
                                           with constants one user may run per second, bursts
                                           of twice that (default 100, 0: no limit) */
    char *hash_key_env;                 /* hash_key_env: environment variable with the hash key */
    char *hash_key_file;                /* hash_key_file: file with the hash key */
    uint8_t *hash_key;                  /* the key itself, read at load (never logged) */
    size_t hash_key_len;
};

struct config {
    char *path;            /* file it was loaded from */
    bool readable_by_all;  /* the file's mode lets every user of the machine read it */
    char *listen_host;     /* listen.host: default 127.0.0.1 */
    int listen_port;       /* listen.port: default 6432 */
    char *tls_cert;        /* listen.tls.cert: PEM certificate; with tls_key enables client TLS */
    char *tls_key;         /* listen.tls.key */
    char *tls_client_ca;   /* listen.tls.client_ca: CA (PEM) that signs client certificates;
                              set: a certificate a client presents is verified */
    char *tls_client_crl;  /* listen.tls.client_crl: revoked client certificates (PEM CRLs
                              of client_ca), read again at each reload; NULL: none */
    int tls_client_cert;   /* listen.tls.client_cert: 0 optional (default), 1 require */
    int tls_client_tls;    /* listen.tls.client_tls: 0 optional (default), 1 require (TCP
                              clients without TLS are refused; the Unix socket is not TCP) */
    char *takeover_socket; /* listen.takeover_socket: Unix socket where a new lakeproxy
                              started with --takeover asks for the listening sockets (NULL: off) */
    char *unix_socket_dir; /* listen.unix_socket_dir: clients may also connect to the Unix
                              socket DIR/.s.PGSQL.PORT, as to PostgreSQL's (NULL: off) */
    char *unix_socket_mode_text;                /* listen.unix_socket_mode: octal, as written */
    int unix_socket_mode;                       /* ... as a number: default 0777 */
    char unix_socket_path[TAKEOVER_SOCKET_MAX]; /* DIR/.s.PGSQL.PORT ("" when off) */
    int max_clients;                            /* limits.max_clients: default 1000 */
    size_t max_message_size;                    /* limits.max_message_size: bytes, default 16 MiB */
    size_t max_message_memory; /* limits.max_message_memory: bytes all clients may hold at once
                                  in messages larger than 256 KiB being read whole (msgbudget.h);
                                  default 256 MiB, or one largest message when that is more */
    int login_timeout_s;       /* limits.login_timeout_s: startup and authentication must end
                                  within this (default 60; a slow or silent client is closed) */
    int shutdown_timeout_s;    /* limits.shutdown_timeout_s: SIGTERM waits this long for open
                                  transactions (default 30) */
    struct tcp_config tcp;     /* limits.tcp_*: keepalive and user timeout of every TCP
                                  connection, to clients and to servers */
    bool core_dumps;           /* limits.core_dumps: may the process dump core (default false:
                                  no core file, no ptrace by its own user; tokens stay out) */
    char *log_level;           /* log.level: error | warning | info | debug (default info) */
    struct db_config *dbs;
    size_t n_dbs;
    struct user_config *users;
    size_t n_users;
    struct group_config *groups;
    size_t n_groups;
    struct rls_config rls;
    struct mask_config masking;
    struct stats_config stats;
    struct auth_query_config auth_query;
    struct string_list admin_users; /* admin.users: who may use the admin console */
    char *admin_http_host;          /* admin.http "host:port": /metrics and /healthz (NULL: off) */
    int admin_http_port;
};

/* Errors collected while loading: each one is "file:line:column: message". */
struct config_errors {
    char **msgs;
    size_t n;
};

/* Parses the YAML file at path. Returns NULL and fills errs (at least one) on failure. */
struct config *config_load(const char *path, struct config_errors *errs);

/* Same, from text in memory; name is used as the file name in error messages. */
struct config *config_parse_string(const char *text, size_t len, const char *name,
                                   struct config_errors *errs);

void config_free(struct config *cfg);
void config_errors_free(struct config_errors *errs);

/* Equal strings, or both NULL. */
bool config_str_eq(const char *a, const char *b);

/* Do a and b take their server password from the same place (provider and its settings,
 * and the login name)? A reload that keeps it keeps the current token. */
bool config_same_credentials(const struct db_config *a, const struct db_config *b);

/* Do a and b inject the same settings (prefix, attribute names, role switching) into database
 * db's server connections? When not, those connections may carry a setting nobody resets. */
bool config_same_rls_shape(const struct config *a, const struct config *b, const char *db);

/* Look-ups by name; NULL when absent. */
const struct db_config *config_find_db(const struct config *cfg, const char *name);
const struct user_config *config_find_user(const struct config *cfg, const char *name);

/* Compares two user names ignoring case in all of Unicode (Åsa and åsa are one), after NFC
 * normalization; byte for byte when either is not UTF-8. <0, 0, >0 as strcmp. */
int config_name_casecmp(const char *a, const char *b);

/* The users: entry of a Databricks token's user name, matched ignoring case (as the workspace
 * does: two entries the same but for case are refused at load when a database takes tokens). */
const struct user_config *config_find_token_user(const struct config *cfg, const char *name);
const struct group_config *config_find_group(const struct config *cfg, const char *name);
/* Is db one of cfg's own entries (rather than another configuration's)? */
bool config_holds_db(const struct config *cfg, const struct db_config *db);
/* Does rls apply to clients of database db (a key under databases:)? */
bool config_rls_applies(const struct config *cfg, const char *db);
/* Does masking apply to clients of database db? */
bool config_mask_applies(const struct config *cfg, const char *db);
/* May user (with extra_groups, a token's, besides its configured ones; may be NULL) log into
 * db? (databases.X.allow) */
bool config_db_admits(const struct config *cfg, const struct db_config *db, const char *user,
                      const struct string_list *extra_groups);

/* An entry under databases: that reaches the same server database (host, port, dbname) as
 * another under rls: or masking:, or with an allow: list, while not itself protected the same
 * way, and open to every user (no allow:), so it would serve that database's rows unprotected
 * to anyone. The first such pair from step k on (NULL when none): the returned entry is the
 * open one, *guarded the protected one, *what the list it is missing from ("rls.databases",
 * "masking.databases", or "allow" for guarded's allow: list); *k is advanced past the pair. */
const struct db_config *config_unprotected_alias(const struct config *cfg, size_t *k,
                                                 const struct db_config **guarded,
                                                 const char **what);
/* How a client proves who it is (config_login_path). */
enum login_path {
    LOGIN_UNSET,    /* (a client before start_auth; config_login_path never answers it) */
    LOGIN_TOKEN,    /* its own Databricks token (the database's client_auth: databricks_token) */
    LOGIN_TRUST,    /* nothing: its users: entry has auth: trust */
    LOGIN_PASSWORD, /* SCRAM against its users: entry's password */
    LOGIN_LOOKUP,   /* SCRAM or md5 against the verifier auth_query finds on the server */
    LOGIN_NONE,     /* no way in (unknown name, or an auth: token identity asking for a
                       password login): a mock SCRAM exchange that fails as a wrong password */
};

/* How user would log into db (NULL: no such entry), or into the admin console when console
 * (which only users: entries open, never auth_query), under cfg; *entry gets the index of its
 * users: entry for LOGIN_TRUST and LOGIN_PASSWORD. */
enum login_path config_login_path(const struct config *cfg, const struct db_config *db,
                                  bool console, const char *user, size_t *entry);

/* May user, logging in by path, connect from address a? Its users: entry's from: list, or
 * for a user auth_query looks up, auth_query.from, must match a; no list: anywhere. */
bool config_may_connect_from(const struct config *cfg, enum login_path path, const char *user,
                             const struct netaddr *a);

/* The name of the setting config_may_connect_from applied ("users.X.from" or
 * "auth_query.from"), in out. */
void config_from_setting(const struct config *cfg, enum login_path path, const char *user,
                         char *out, size_t outsz);

/* The first secret written in the file itself (a database's or auth_query's password, a
 * user's password or verifier) as its key ("users.alice.password"), into out; NULL if none. */
const char *config_inline_secret(const struct config *cfg, char *out, size_t outsz);

/* The warning for a file every user may read that holds a secret (not a refusal: it may be so
 * on purpose), into out; NULL when there is none to give. */
const char *config_readable_secrets(const struct config *cfg, char *out, size_t outsz);

/* May user open the admin console (database "lakeproxy")? */
bool config_is_admin(const struct config *cfg, const char *user);

struct stat;
/* Why the file path, of status *st, must not be read (NULL when it may be): it is no regular
 * file ("is not a regular file": a FIFO would block the read), or it holds a secret (a token,
 * a client secret, the hash key, a TLS key) that every user of the machine may read or change
 * ("can be read by every user (mode 0644): chmod o-rwx PATH"). */
const char *config_file_refusal(const char *path, const struct stat *st, bool secret, char *why,
                                size_t whysz);

/* Reads the regular file path, at most max bytes, into a NUL-ended heap buffer (free it with
 * config_file_free); NULL with err ("cannot read PATH: why", "PATH is not a regular file",
 * "PATH is larger than MAX bytes") when it cannot be read whole, or is no regular file (a FIFO
 * or a device would block the event loop). secret: also refused when every user of the
 * machine may open it, and wiped when freed. st (may be NULL) gets its stat. */
char *config_read_file(const char *path, size_t max, bool secret, size_t *len, struct stat *st,
                       char *err, size_t errsz);
/* Frees what config_read_file returned (wiping its len bytes first when secret). */
void config_file_free(char *text, size_t len, bool secret);

#endif
