/* test_operations.c: what admins do to a running lakeproxy: SIGHUP reloads without dropping
 * a connection (and refuses a broken file), SIGTERM lets open transactions finish. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct proxy px;
static char yaml[8192];

static void start_txn_one(void)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 300, NULL);
    proxy_start_yaml(&px, port, yaml);
}
static void stop_proxy(void)
{
    proxy_stop(&px);
}

TestSuite(operations, .init = start_txn_one, .fini = stop_proxy, .timeout = 60);

static PGconn *alice(void)
{
    PGconn *c = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_assert(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* Does the proxy log contain s? */
static bool log_has(const char *s)
{
    FILE *f = fopen(px.log, "r");
    char line[1024];
    bool found = false;
    cr_assert(f);
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

Test(operations, reload_with_a_bigger_pool_lets_a_waiting_client_in)
{
    PGconn *a = alice(), *b = alice();
    free(query_value(a, "BEGIN")); /* holds the only server */
    PGresult *r = PQexec(b, "SELECT 1");
    cr_expect_neq(PQresultStatus(r), PGRES_TUPLES_OK, "pool.size 1 is busy: b must time out");
    PQclear(r);
    PQfinish(b);

    char *two = strdup(yaml);
    char *size = strstr(two, "size: 1\n");
    cr_assert(size);
    size[6] = '2';
    proxy_reload_yaml(&px, two);
    free(two);
    cr_expect(log_has("configuration reloaded"));

    b = alice();
    char *v = query_value(b, "SELECT 'served while a holds a transaction'");
    cr_expect_str_eq(v, "served while a holds a transaction");
    free(v);
    v = query_value(a, "SELECT 'a kept its transaction through the reload'");
    cr_expect_str_eq(v, "a kept its transaction through the reload");
    free(v);
    cr_expect_eq(PQtransactionStatus(a), PQTRANS_INTRANS);
    free(query_value(a, "COMMIT"));
    PQfinish(a);
    PQfinish(b);
}

Test(operations, broken_file_on_reload_is_refused_and_the_old_one_kept)
{
    PGconn *a = alice();
    proxy_reload_yaml(&px, "databases:\n  app: {host: h, user: u, sise: 3}\n");
    cr_expect(log_has("unknown key 'sise'"), "the error must be logged with its position");
    cr_expect(log_has("reload refused"));
    char *v = query_value(a, "SELECT 'still connected'");
    cr_expect_str_eq(v, "still connected");
    free(v);
    PGconn *b = alice(); /* new logins still use the old configuration */
    PQfinish(b);
    PQfinish(a);
}

Test(operations, sigterm_lets_an_open_transaction_finish_then_exits_zero)
{
    PGconn *a = alice(), *idle = alice();
    free(query_value(a, "BEGIN"));
    free(query_value(a, "CREATE TEMP TABLE drained (a int)"));
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    cr_assert(wait_file_line(px.log, "received SIGTERM", 10000), "no drain");
    /* a new client is not accepted any more */
    PGconn *late = proxy_connect(&px, "alice", "alice-secret", "app", NULL);
    cr_expect(PQstatus(late) == CONNECTION_BAD, "a draining proxy accepted a new client");
    PQfinish(late);
    /* the open transaction finishes normally */
    free(query_value(a, "INSERT INTO drained VALUES (1)"));
    char *v = query_value(a, "SELECT count(*) FROM drained");
    cr_expect_str_eq(v, "1");
    free(v);
    PGresult *r = PQexec(a, "COMMIT");
    cr_expect_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(a));
    PQclear(r);
    proxy_expect_exit_0(&px, 3000); /* its last transaction ended */
    PQfinish(a);
    PQfinish(idle);
}

/* Sends SIGTERM to lakeproxy, then sig every 200 us until it exits; expects exit status 0. */
static void stop_with_signals_coming(int sig)
{
    kill(px.pid, SIGTERM);
    int st = 0;
    pid_t gone = 0;
    for (int i = 0; i < 5000 && gone != px.pid; i++) {
        kill(px.pid, sig);
        usleep(200);
        gone = waitpid(px.pid, &st, WNOHANG);
    }
    cr_assert_eq(gone, px.pid, "lakeproxy did not exit");
    px.pid = 0;
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d (killed by signal %d)", st,
              WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* SIGHUPs that keep coming while lakeproxy stops (systemctl reload racing a stop) never kill
 * it: it exits 0 after its drain, whatever the moment a reload request lands. */
Test(operations, reloads_during_the_exit_do_not_kill_lakeproxy)
{
    stop_with_signals_coming(SIGHUP);
}

/* A SIGTERM repeated while lakeproxy stops (an impatient admin, a supervisor's retry) is the
 * same request again: it still exits 0, never killed by it in its last steps. */
Test(operations, a_repeated_sigterm_still_exits_0)
{
    stop_with_signals_coming(SIGTERM);
}

/* A transaction still open at limits.shutdown_timeout_s (1 s here) running a statement: the
 * client is told why (57P01 naming the limit) and its statement is cancelled, not left to
 * commit after lakeproxy has exited; lakeproxy exits 0. */
static void start_with_a_short_shutdown(void)
{
    int port = free_port();
    proxy_default_yaml(yaml, sizeof(yaml), port, "transaction", 1, 300,
                       "limits:\n  shutdown_timeout_s: 1\n");
    proxy_start_yaml(&px, port, yaml);
}

Test(operations, the_shutdown_limit_cancels_a_running_statement_and_says_why,
     .init = start_with_a_short_shutdown)
{
    PGconn *adm = pg_admin("lp_test");
    pg_owned_table(adm, "ops_shutdown_limit", "v int");
    PGconn *a = alice();
    cr_assert(PQsendQuery(a, "INSERT INTO ops_shutdown_limit SELECT 1 FROM pg_sleep(4)"));
    usleep(300 * 1000);
    cr_assert_eq(kill(px.pid, SIGTERM), 0);
    struct outcome o;
    outcome_of(a, &o);
    cr_expect_str_eq(o.state, "57P01", "%s", o.msg);
    cr_expect(strstr(o.msg, "limits.shutdown_timeout_s") && strstr(o.msg, "cancel"), "%s", o.msg);
    proxy_expect_exit_0(&px, 5000);
    PQfinish(a);
    usleep(4500 * 1000); /* (past the statement's own end) */
    cr_expect_eq(pg_long(adm, "SELECT count(*) FROM ops_shutdown_limit"), 0,
                 "the statement committed after the 57P01");
    PQfinish(adm);
}

/* Sends SIGHUP and waits until the log says the n-th reload is done. */
static void reload_and_wait(int n)
{
    proxy_reload(&px);
    for (int i = 0; i < 500 && file_count_lines(px.log, "configuration reloaded") < n; i++)
        usleep(10 * 1000);
    cr_assert_geq(file_count_lines(px.log, "configuration reloaded"), n, "reload %d not seen", n);
}

/* A configuration file every user may read, with passwords in it, is warned about at each
 * load, naming a secret's key (never its value) and the fix; one readable by its owner and
 * group only is not. */
Test(operations, a_configuration_every_user_may_read_with_passwords_is_warned_about)
{
    const char *warning = "can be read by every user of the machine and holds secrets "
                          "(databases.app.password";
    int at_start = file_count_lines(px.log, warning);
    cr_assert_eq(chmod(px.conf, 0640), 0);
    reload_and_wait(1);
    cr_expect_eq(file_count_lines(px.log, warning), at_start, "0640 was warned about");
    cr_assert_eq(chmod(px.conf, 0644), 0);
    reload_and_wait(2);
    cr_expect_eq(file_count_lines(px.log, warning), at_start + 1, "no warning; see %s", px.log);
    cr_expect_eq(file_count_lines(px.log, "server-secret"), 0, "a password in the log");
}
