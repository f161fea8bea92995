/* objects.h: the types of lakeproxy's live objects (worker, pool, server, client) and the
 * lists that name their states. All mutable state hangs off a struct worker. */
#ifndef LAKEPROXY_OBJECTS_H
#define LAKEPROXY_OBJECTS_H

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "auth.h"
#include "buf.h"
#include "config.h"
#include "list.h"
#include "mask.h"
#include "maskrules.h"
#include "msgbudget.h"
#include "prepared.h"
#include "recent.h"
#include "spell.h"
#include "sqlkey.h"

/* Above this many bytes queued towards one side, stop reading the other side. */
#define RELAY_HIGH_WATER (256 * 1024)
/* Resume reading once the queue has drained to this. */
#define RELAY_LOW_WATER (64 * 1024)
#define MAX_TRACKED_PARAMS 32
/* Refused statements whose stand-in's error has not come back yet, per server. */
#define MAX_REFUSALS 8

struct param {
    char *name;
    char *value;
};

/* A small name -> value set (ParameterStatus values, startup parameters). */
struct param_set {
    struct param items[MAX_TRACKED_PARAMS];
    size_t n;
    /* params_text_readable of these settings, once known (every change forgets it) */
    bool readable_known, readable;
    unsigned version; /* changes with every change: a reader's copy is current while equal */
};

/* Streaming position in one direction of a relay: bytes of the current message still to copy. */
struct relay {
    size_t pass_left;
};

struct worker {
    struct event_base *base;
    struct evdns_base *dns;
    struct config *cfg;
    SSL_CTX *client_tls; /* NULL when listen.tls is not configured */
    struct evconnlistener *listener;
    struct evconnlistener *unix_listener; /* listen.unix_socket_dir (NULL: off or stopped) */
    struct stat unix_file;                /* its socket file, removed when accepting stops */
    char unix_path[TAKEOVER_SOCKET_MAX];  /* that file's path, as at start (a reload keeps it) */
    int unix_mode;                        /* ... and its permissions, as at start */
    bool unix_lent;      /* its socket file is not this process's to remove: lent to a process
                            taking over (SOCKETS sent), or borrowed from the one taken over (until
                            it confirms that it stopped accepting) */
    char listen_at[300]; /* listen.host:listen.port as at start (a reload that
                            changes them is warned about against this) */
    struct list pools;
    struct list clients;            /* every client, whatever its state */
    struct list cancellers;         /* in-flight cancel requests towards servers */
    struct list creds;              /* rotating credentials, one per database entry that has one */
    struct string_list secret_envs; /* every variable a configuration since start named as a
                                       secret: hidden from credential commands */
    struct list authq_waiting;      /* auth_query look-ups waiting for a turn (authquery.c) */
    struct event *authq_fill;       /* starts waiting look-ups on a loop turn of their own */
    struct msgbudget msgbudget;     /* memory lent to clients for large messages (msgbudget.h) */
    struct event *share_ev;         /* lends it and raises read limits (msgshare.c) */
    struct list share_raise;        /* clients lent a share whose read limit is yet to be raised */
    uint64_t large_stalls;          /* holders closed for sending nothing (msgshare.c) */
    int authq_running;              /* look-ups under way: at most AUTHQ_MAX_RUNNING */
    int n_clients;
    int n_over_limit; /* of them, connections past limits.max_clients that may only cancel */
    uint64_t next_id;
    struct scram_verifier *user_verifiers; /* parallel to cfg->users (SCRAM users) */
    struct scram_verifier mock_verifier;   /* answers unknown users without telling them so */
    uint8_t mock_salt_key[SCRAM_KEY_LEN];  /* ... each with a salt of its own (auth.h) */
    struct event *sig_int, *sig_term, *sig_hup, *sig_usr1;
    struct config **retired; /* replaced by a reload but still used by a removed database's pool */
    size_t n_retired;
    bool draining;                 /* SIGTERM: no new clients, open transactions finish */
    bool last_flush;               /* the shutdown's time limit passed: the loop runs on briefly
                                      for cancels and FATALs to go out, then exits */
    bool handed_over;              /* a new process took the listening sockets over: no new
                                      clients, connected ones are served until they leave */
    struct takeover_ctl *takeover; /* listen.takeover_socket (NULL: off) */
    struct event *janitor;         /* once a second: idle timeout, lifetime, pool.min */
    struct event *drain_timer;
    struct guard_cache *guard;  /* RLS guard verdicts by statement text */
    struct sqlkey_memo *shapes; /* text keys and keyword-scan facts of statements run lately
                                   (pipeline_text_facts), by shape: the statistics' keys too */
    uint64_t cfg_gen;           /* 1 for the first configuration, +1 at each reload */
    struct stats *stats;        /* per-query aggregates (NULL: stats.enabled false) */
    struct statslog *qlog;      /* the query log's writer (NULL: no stats.log) */
    uint64_t rng;               /* xorshift state for log sampling */
    uint64_t refusals;          /* statements the RLS guard refused */
    uint64_t queries_untracked; /* queries statistics could not follow (qtrack.c's cap) */
    uint64_t queries_skipped;   /* statements PostgreSQL skipped after an error: no calls */
    struct evhttp *http;        /* admin.http: /metrics and /healthz (NULL: off) */
    struct evhttp_bound_socket *http_socket; /* its listening socket (NULL: not accepting) */
    struct tablesizes *sizes;   /* table row counts for the pushdown report (tablesize.c) */
    struct event *accept_pause; /* resumes accepting after running out of descriptors */
    int spare_fd; /* held open (/dev/null) to be given up for refusing connections when out of
                     descriptors; -1 when none */
    char refuse_marker[40];        /* the word in the stand-in for a refused statement */
    struct maskcat *maskcats;      /* masking catalog per database entry (maskcat.c) */
    uint64_t maskcat_reads;        /* catalog reads completed, all databases: each read's version */
    struct masksql_cache *masksql; /* masking guard verdicts by statement text */
    uint64_t masked_values;        /* values the masking rewrote */
    uint64_t mask_epoch;           /* bumped by a reload that changes the masking section */
    struct mask_buckets *mask_buckets; /* masked-column tests per user per second (policy.c) */
    uint64_t mask_refusals;            /* statements and results masking refused */
    struct tokenauth *tokenauth;       /* clients' own Databricks tokens: checks and cache */
};

struct pool {
    struct list node; /* worker->pools */
    struct worker *w;
    const struct db_config *db;
    struct list idle;       /* SV_IDLE: ready, unused */
    struct list active;     /* SV_ACTIVE, SV_RESETTING, SV_SETTING */
    struct list connecting; /* SV_CONNECTING */
    struct list waiting;    /* clients in CL_WAITING, oldest first */
    int n_servers;          /* all of the above */
    unsigned generation;    /* bumped when a reload changes how to reach the server, or at
                               RECONNECT: servers of an older one retire when released */
    const char *retire_why; /* why it was last bumped (a static string, logged at retiring) */
    uint32_t stmt_epoch;    /* bumped when a server's statement went stale (0A000 to its Bind):
                               later Parses get proxy names of their own (stmt_proxy_name) */
    int64_t stmt_stale_logged_ms;              /* when that was last logged */
    struct evdns_getaddrinfo_request *recheck; /* reload: resolving the host name again */
    bool paused;                               /* PAUSE: no server is handed out until RESUME */
    bool disabled;                             /* DISABLE: new logins refused until ENABLE */
    char last_error[640];        /* why the last server login failed ("" after a success) */
    bool auth_retry;             /* a 28P01 started a credential refresh and one more login */
    bool auth_retry_waiting;     /* ... and that refresh has not ended yet: no logins meanwhile */
    bool auth_fell_back;         /* a 28P01 put the previous token back (credentials_fall_back) */
    unsigned rejected_gen;       /* the credential generation the server refused */
    struct event *retry_timer;   /* connect retry after a failure, with backoff */
    struct event *no_cred_timer; /* tells waiters that no valid credential can be had */
    struct event *reserve_timer; /* the oldest waiter will have waited pool.reserve_timeout_ms */
    struct event *hand_out;      /* activated when servers go idle while clients wait */
    bool hand_out_pending;       /* ... and not run yet: idle servers are promised to waiters */
    int backoff_ms;
    int64_t lifetime_retired_ms; /* when a server was last retired at its lifetime (0: never) */
    struct {
        uint64_t queries, xacts, waits, wait_us;
    } stats;
    struct stats_hist *latency; /* query latency as clients saw it (NULL: stats off) */
    uint64_t latency_sum_us;
    struct param_set params; /* ParameterStatus of the first server login: told to clients
                                that log in while every server is busy (transaction mode) */
    SSL_CTX *tls;            /* server-side TLS context, NULL for tls: disable */
};

enum server_state {
    SV_CONNECTING, /* TCP, TLS, login: pool->connecting */
    SV_IDLE,       /* pool->idle */
    SV_SETTING,    /* applying a client's parameters: pool->active, linked */
    SV_ACTIVE,     /* relaying for its client: pool->active */
    SV_RESETTING,  /* running DISCARD ALL after its client left: pool->active */
    SV_CHECKING,   /* long idle: answering an empty query before it serves its client
                      (pool.check_after_s): pool->active, linked */
    SV_READBACK,   /* its client's transaction is over: reading back the settings a carried
                      SET or RESET changed before it goes back to the pool: pool->active,
                      linked */
};

/* LS_CANCEL_SENT: a cancel connection waits for PostgreSQL to close it (the signal is sent). */
enum login_step { LS_TCP, LS_SSL_REPLY, LS_TLS, LS_AUTH, LS_PARAMS, LS_CANCEL_SENT };

struct server {
    struct list node; /* the pool list of its state */
    struct pool *pool;
    struct client *client;
    enum server_state state;
    enum login_step step;
    struct bufferevent *bev;
    struct event *timer;
    uint64_t id;
    uint64_t unnamed_of; /* the client whose unnamed statement this server holds (0: none) */
    bool unnamed_maybe;  /* an unnamed statement may be there (closed before the next client) */
    struct client *unnamed_owner; /* the client whose current unnamed statement it was last
                                     prepared with (the pair of client.unnamed_home) */
    uint32_t be_pid, be_key;
    bool tls;
    bool closing;
    bool paused;           /* reading stopped: the client's output is above RELAY_HIGH_WATER */
    bool draining_left;    /* reading the replies owed to a client that left (server.c) */
    bool close_at_unlink;  /* lakeproxy ended its client with statements queued behind the one
                              cancelled: closed, not drained, so that they never run */
    struct ending *ending; /* lakeproxy is ending its client once the message half relayed to it
                              is whole (server_end_statement) */
    size_t drain_bytes;    /* ... so far: past DRAIN_MAX the server is closed instead */
    bool reset_answered;   /* the last CommandComplete of a reset was DISCARD ALL's (server.c) */
    bool reset_held; /* ... with a cancel of that client's on its way: reset once it has arrived
                        and the owed replies are in (server.c hold_reset) */
    const char *internal_fail; /* why internal_inspect gave up (logged when it closes) */
    bool ext_open;             /* extended-protocol messages sent since the last Sync */
    bool cancel_only;          /* a throwaway connection that carries one CancelRequest */
    uint32_t cancel_pid, cancel_key;
    uint64_t cancel_requester; /* the client connection that asked: closed once delivered */
    int cancels_pending;       /* cancel requests for this backend on their way: it serves no other
                                  client until they have arrived (they would cancel its query) */
    bool cancel_adrift; /* a cancel request for it went unanswered: it may still arrive, so the
                           server serves no other client (retire_reason) */
    char err_state[6];  /* SQLSTATE of an error during login, SET or reset */
    char err_msg[256];
    char txn;      /* last ReadyForQuery status: 'I', 'T' or 'E' */
    int in_flight; /* Query/Sync/FunctionCall sent whose ReadyForQuery has not arrived */
    /* The extended-protocol batch being sent (since the last Sync) has a Bind of a statement
     * that may open a transaction block (STMT_OPENS), or of one whose text is unknown. */
    bool batch_opens;
    /* ... and the last batch sent (a Query, a Sync or a FunctionCall) may have (server.c
     * loss_for_client: lost with its server, it is not one failed statement). */
    bool sent_batch_opens;
    struct param_set reported; /* ParameterStatus as the server last reported it */
    struct param_set applied;  /* parameters the proxy SET for the current client */
    struct scram_client scram;
    struct relay relay;
    time_t created;
    time_t last_used;
    struct spell idle_txn;        /* its client idle inside a transaction block (who: the client,
                                     mark: its msgs_in): pool.idle_transaction_timeout_s */
    struct spell running;         /* a statement of its client's running (mark: readies):
                                     pool.query_timeout_s */
    uint64_t readies;             /* ReadyForQuery messages relayed to clients */
    int64_t created_ms;           /* server_now_ms() at login */
    int jitter_permille;          /* 0-200: this server's lifetime is shortened by as much */
    unsigned generation;          /* the pool's generation when it connected */
    struct sockaddr_storage peer; /* the server's address (peer_len 0 until connected) */
    socklen_t peer_len;
    bool addr_stale;                 /* its host name resolves elsewhere now (reload): retire */
    unsigned cred_gen;               /* generation of the credential it logged in with */
    struct server_stmts stmts;       /* transaction pooling: statements prepared here */
    struct reply_queue replies;      /* transaction pooling: replies owed, in order */
    bool stmts_unknown;              /* a client ran DEALLOCATE/DISCARD: retire at release */
    int internal_pending;            /* ReadyForQuery still owed for the proxy's own messages */
    uint32_t carried;                /* settings (params_settable_bit) a carried SET or RESET may
                                        have changed since it was linked: read back (SV_READBACK)
                                        when the client's transaction is over */
    uint32_t carried_reset;          /* those whose last carried change was a RESET, or that
                                        may have been RESET to the server's default where the
                                        client has a startup value of them: reported back at
                                        that default, SET to it before (reset_blind), or, in
                                        session pooling, not reported and named by a RESET's
                                        CommandComplete tag (the read-back tells a RESET from a
                                        SET) */
    bool restoring;                  /* the read-back's second round (session pooling: the
                                        startup values set again) runs: its rows are not read */
    uint32_t carried_restored;       /* those the read-back found RESET to a startup value the
                                        server does not hold: told to the client, and in session
                                        pooling set again */
    uint32_t carried_open;           /* those changed by statements whose transaction has not
                                        ended: it ends at the 'I' that answers the last of them */
    int carried_open_zs;             /* ReadyForQuery messages owed up to and including the one
                                        that answers the last statement that carried (an earlier
                                        statement's 'I' leaves carried_open as it is) */
    struct param_set carried_before; /* the client's values of those before that (restored
                                        when the statement in flight is lost) */
    uint32_t carried_absent;         /* those it had no value of then */
    bool rls_set;                    /* carries some client's RLS attributes and role */
    bool parsed_shared;     /* a shared statement was prepared here since the last ReadyForQuery
                               (PostgreSQL reports changed settings only before one) */
    struct buf rls_applied; /* the RLS prefix last applied here with success (empty:
                               unknown); an identical one need not be sent again */
    struct buf rls_pending; /* the RLS prefix in flight */
    struct buf link_msgs;   /* server_link builds its messages here, reused */
    bool retire_after;      /* a client left session state here: no other client */
    bool text_unsafe;       /* reported a setting the RLS guard cannot parse under */
    bool copy_in;           /* in copy-in, the client's CopyDone still to come: the
                               server ignores the client's Syncs until then */
    bool copy_active;       /* the server is in copy-in (CopyInResponse seen, its
                               CommandComplete or ErrorResponse not yet) */
    uint32_t copy_assumed;  /* Syncs of this copy taken as ignored by the server */
    bool unsure;            /* the replies owed cannot be counted: never another client's */
    bool skip_till_sync;    /* an error in the extended protocol: the server skips the
                               client's messages up to its next Sync (none is sent) */
    struct {
        uint32_t seq; /* the number its stand-in carries */
        char reason[320];
    } refusals[MAX_REFUSALS]; /* refused statements, oldest first, awaiting their error */
    int n_refusals;
    uint32_t refusal_seq;      /* the last stand-in number used here */
    struct mask_plan mplan;    /* masking: what to do with each column of the current
                                  result of a masked client (maskwire.c) */
    bool mplan_set;            /* a RowDescription set mplan; rows may follow */
    uint16_t mplan_cap;        /* columns mplan.cols and mplan_fns have room for */
    struct mask_fn *mplan_fns; /* copies of the functions mplan uses (a reload may free
                                  the configuration mid-result) */
    uint8_t mplan_key[1024];   /* copy of the hash key */
    struct buf mask_out;       /* a rewritten DataRow */
    bool mask_wait;            /* a RowDescription waits for the masking catalog */
    bool mask_waited;          /* ... and has waited for one read already */
    uint64_t mask_class;       /* the masking class of the clients it serves (0: none yet):
                                  with masking on, a server serves one class only */
};

enum client_state {
    CL_LOGIN,   /* startup and authentication */
    CL_WAITING, /* authenticated, queued for a server: pool->waiting */
    CL_ACTIVE,  /* linked to a server */
    CL_IDLE,    /* transaction pooling: logged in, between transactions, no server */
    CL_CLOSING, /* error sent, flushing before close */
    CL_ADMIN,   /* logged in to the admin console */
};

enum client_step {
    CS_STARTUP,
    CS_TLS,
    CS_LOOKUP,
    CS_SCRAM_FIRST,
    CS_SCRAM_FINAL,
    CS_MD5,
    CS_TOKEN,  /* client_auth databricks_token: a PasswordMessage holding its token */
    CS_CANCEL, /* its CancelRequest is on its way: nothing more is read, closed once delivered */
    CS_DONE
};

struct client {
    struct list node;      /* worker->clients */
    struct list wait_node; /* pool->waiting while CL_WAITING */
    struct worker *w;
    struct pool *pool;
    struct server *server;
    enum client_state state;
    enum client_step step;
    struct bufferevent *bev;
    struct event *timer;        /* wait-for-server timeout */
    struct event *login_timer;  /* startup + authentication must finish in time */
    struct event *cancel_timer; /* a kept cancel's short wait (client.c: send_wanted_cancel_soon) */
    uint64_t id;
    uint64_t msgs_in;    /* messages it sent while linked to a server (counted at their header) */
    struct spell idle;   /* idle between statements (mark: msgs_in): pool.client_idle_timeout_s */
    char addr[64];       /* "host:port", or "unix" */
    struct netaddr peer; /* its address, for users.X.from */
    bool on_unix_socket; /* accepted on listen.unix_socket (AF_UNIX) */
    bool over_limit;     /* accepted past limits.max_clients: a CancelRequest only (client.c) */
    bool session_pooled; /* it asked for a server in session pooling: what it does may stay on
                            that server for its session, and nowhere else (worker.c) */
    bool stmts_apart;    /* named a setting PostgreSQL parses by that lakeproxy does not track:
                            its prepared statements are shared with no other client */
    /* a statement that may change a setting PostgreSQL parses statements by (DateStyle,
     * search_path, ...: stmt_context_settings) was sent in the current extended-protocol batch
     * (its named Parses get names of their own: stmt_context_of), or in a batch the server
     * has not answered yet (its named statements wait: pipeline_stmt_must_wait) */
    bool ctx_doubt_batch, ctx_doubt_sent;
    bool stmt_wait; /* reading stopped until the statement records are settled (same) */
    char *user;
    char *database;
    struct param_set wanted;         /* session parameters the client asked for at startup,
                                        and later by SET (ParameterStatus, carried changes) */
    struct param_set at_startup;     /* wanted as the startup packet gave it: RESET returns
                                        a setting to this value, as PostgreSQL does */
    uint32_t startup_unreported;     /* settings given at startup that the server does not
                                        report (statement_timeout, ...): in session pooling a
                                        RESET of them shows only in a CommandComplete */
    uint32_t reset_blind;            /* settings SET to the server's default where the client
                                        started with another value: a RESET of them changes
                                        nothing the server reports, so they are read back at
                                        the end of each transaction that linked a server
                                        (transaction pooling; set again at that link) or whose
                                        CommandComplete tags may mean a RESET (session) */
    uint32_t cancel_pid, cancel_key; /* what the proxy handed out in BackendKeyData */
    bool tls;
    bool ssl_asked, gss_asked; /* SSLRequest, GSSENCRequest answered: each once, as PostgreSQL
                                  does (client.c: handle_startup_packet) */
    bool cert_verified;        /* over TLS, with a certificate that verified against client_ca */
    bool paused;               /* reading stopped: the server's output is above RELAY_HIGH_WATER */
    bool closing;
    bool scram_mock; /* unknown user: the SCRAM exchange runs only to fail at its end */
    bool sent_ready;
    struct scram_server scram;
    uint8_t md5_salt[4];
    char *md5_stored;                   /* "md5..." from auth_query, for an md5 exchange */
    struct authq *authq;                /* auth_query look-up in flight */
    struct tokenauth_wait *token_check; /* its Databricks token being checked */
    uint64_t auth_cfg_gen;      /* the configuration generation authentication started under */
    uint64_t tls_cfg_gen;       /* the one whose listen.tls its TLS handshake started under */
    enum login_path login_path; /* how it proved who it is (a reload that changes it closes it) */
    struct string_list token_groups; /* the groups its Databricks token's identity is in */
    char *token_workspace;           /* the workspace that vouched for its token */
    struct relay relay;
    struct msgbudget_claim msg_claim; /* its share of w->msgbudget for a large message */
    struct list share_node;           /* w->share_raise while its raised limit is pending */
    size_t share_seen;                /* its input's length at the last check of a holder */
    int share_idle_s;                 /* seconds a holder's input has not grown */
    int share_held_s;                 /* seconds it has held its share */
    const uint8_t *taken;             /* a read its fast path holds while it asks for a server: */
    size_t taken_n;                   /* client_pump relays it, if that happens at once */
    int64_t wait_start_us;            /* when it last asked its pool for a server (monotime) */
    int64_t wait_armed_us;            /* when the wait its timer measures began: the timer
                                         fires pool.max_wait_ms after (pool.c) */
    int64_t wait_counted_us;   /* of its wait since then, what its pool's statistics count (-1:
                                  none yet: a server that fails its check makes it wait again) */
    bool settings_lost;        /* a server was lost during lakeproxy's settings for it since
                                  it last asked its pool (it asked again; a second loss fails
                                  it: server.c settings_lost) */
    struct client_stmts stmts; /* transaction pooling: the client's named statements */
    const char *inspect_err;   /* why the message inspector refused a message */
    const char *query_text;    /* the text of the Query being inspected, while it is (else
                                  NULL), and its shape in the worker's memo */
    struct sqlkey_shape query_shape;
    bool rls;                     /* under row-level security: attributes injected, guard on */
    struct param_set rls_options; /* attributes it set at startup (source option) */
    struct param_set cert;        /* its TLS certificate's subject fields ("CN" -> ...) */
    struct buf rls_prefix;        /* its RLS injection messages, built for configuration */
    uint64_t rls_prefix_gen;      /* generation rls_prefix_gen (0: not built) */
    struct qtrack *qt;            /* its queries in flight, for statistics (qtrack.c) */
    struct client_mask mask;      /* masking rules that apply to it (mask.n_applied 0: none) */
    uint64_t mask_gen;            /* the configuration generation mask was built for */
    uint64_t mask_class;          /* its masking class under mask (client_mask_class) */
    bool mask_wait;               /* a statement waits for the masking catalog */
    uint64_t mask_wait_until;     /* ... until its reads_ended reaches this (0: no wait) */
    bool queue_wait;              /* reading stopped: replies owed fill its server's queue
                                     (REPLY_QUEUE_MAX) until the server answers some */
    bool reset_pending;           /* a statement that may RESET a setting it gave at startup
                                     is in the batch it is sending (pipeline.c) */
    bool reset_barrier;           /* such a batch went to the server: what follows waits
                                     until the server owes it nothing and its settings were
                                     read back (client.c: reset_barrier_holds) */
    bool reset_wait;              /* reading stopped at that barrier */
    bool cancel_wait; /* reading stopped: its next statement waits until the cancel request on its
                         way to its server has arrived, so that it cannot be the one cancelled */
    bool binds_may_reset;         /* session pooling, which does not track statements: it
                                     prepared one that may RESET, so any Bind may run it */
    bool cancel_wanted;           /* a cancel request came while it waited for a server with a
                                     query to run: sent to the server once that query runs */
    bool cancel_query_sent;       /* that query (a Query, or a batch to its Sync) has gone to the
                                     server: the cancel goes before the next statement does */
    bool leaving;                 /* it closed its side with whole messages still to relay:
                                     they go to a server, then it closes (client.c) */
    uint16_t mask_tests;          /* masked-column tests of the statement just checked */
    uint16_t unnamed_tests;       /* ... of its unnamed prepared statement */
    struct masklike mask_like;    /* parameters of the statement just checked that are LIKE
                                     patterns on masked columns (checked at each Bind) */
    struct masklike unnamed_like; /* ... of its unnamed prepared statement */
    uint8_t *unnamed_parse;       /* its unnamed statement: the Parse body after the name, kept
                                     to prepare it again on the server a Bind lands on */
    size_t unnamed_len;
    size_t unnamed_cap;           /* ... and the room held for it (pipeline.c unnamed_room) */
    uint8_t unnamed_effects;      /* STMT_* flags of its unnamed statement */
    char unnamed_deallocates[64]; /* its unnamed statement is a lone DEALLOCATE of this name,
                                     one of its own statements when run ("": it is not) */
    char dealloc_portal[64];      /* the portal last bound from such a DEALLOCATE (cut to 63
                                     bytes), when dealloc_bound, and the name it deallocates */
    char dealloc_of[64];
    bool dealloc_bound;
    struct recent plain_parses;  /* unnamed Parse bodies (after the name) lately read with
                                    neither row-level security nor masking on, which passed
                                    those checks; values: their STMT_* flags */
    struct server *unnamed_home; /* the server its current unnamed statement was last prepared
                                    on (its unnamed_owner is this client), or NULL */
};

/* Is c under a policy, row-level security or masking (its statements checked per server and
 * per rule), rather than plain? */
static inline bool client_under_policy(const struct client *c)
{
    return c->rls || c->mask.n_applied > 0;
}

/* The keyword-scan facts of text (TEXT_* bits, pipeline.h) when it is the Query being
 * inspected, whose shape the worker's memo knew them for: true, else false (scan it). */
static inline bool client_query_facts(const struct client *c, const char *text, uint32_t *facts)
{
    if (text != c->query_text || !c->query_shape.has_facts)
        return false;
    *facts = c->query_shape.facts;
    return true;
}

#endif
