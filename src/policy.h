/* policy.h: the RLS policy on the wire. Client messages of a client under row-level
 * security pass the guard; a refused statement is replaced on the server by a stand-in that
 * fails the same way a refused statement would (so the server's transaction state stays
 * true: a refused statement inside BEGIN aborts that transaction), and the stand-in's error
 * is rewritten into the client's 42501 with the guard's reason. */
#ifndef LAKEPROXY_POLICY_H
#define LAKEPROXY_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "objects.h"

enum policy_result {
    POLICY_PASS,    /* send the client's message as it is */
    POLICY_STANDIN, /* the stand-in was written to the server in its place: drop it */
    POLICY_FAILED,  /* malformed, or too many refusals in flight: *err says why */
};

/* For a whole Query ('Q'), Parse ('P') or FunctionCall ('F') message of client c (c->rls).
 * A stand-in for 'Q' and 'F' is a simple Query, for 'P' an unnamed Parse: the caller does
 * the bookkeeping of the message type it replaced. */
enum policy_result policy_check_client_msg(struct client *c, uint8_t type, uint32_t len,
                                           const uint8_t *body, const char **err);

/* What running sql does to a server, for client c under RLS or masking (STMT_* flags of
 * prepared.h): STMT_RETIRES when it leaves state that outlives the transaction (the guard's
 * retire verdict), STMT_CARRIES when, under RLS, it makes session-level changes lakeproxy
 * carries with the client (the guard's carry verdict). */
uint8_t policy_statement_effects(struct client *c, const char *sql);

/* A run of a statement that carries (its Bind) under transaction pooling: the client's
 * settings take its changes, and its server's record of them says unknown. False when the
 * client's settings are full. */
bool policy_carry(struct client *c, const char *sql);

/* Server side: does this ErrorResponse answer a stand-in? Then the client's error has been
 * written in its place and true is returned (drop the server's). */
bool policy_rewrite_error(struct server *s, const uint8_t *body, uint32_t len);

/* Takes tests masked-column tests from c's user's budget (masking.max_tests_per_second);
 * false when the budget has fewer left. */
bool policy_mask_charge(struct client *c, int tests);
/* The message for a client out of budget. */
void policy_mask_budget_message(struct client *c, char *out, size_t outsz);

/* Fills the worker's stand-in marker with fresh randomness. */
void policy_init_marker(struct worker *w);

#endif
