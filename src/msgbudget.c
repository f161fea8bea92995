/* msgbudget.c: the worker's budget for clients' large messages, lent whole and in order. */
#include "msgbudget.h"

void msgbudget_init(struct msgbudget *b, size_t total)
{
    b->total = total;
    b->lent = 0;
    b->n_waiting = 0;
    list_init(&b->waiting);
}

void msgbudget_claim_init(struct msgbudget_claim *c)
{
    list_init(&c->node);
    c->held = c->want = 0;
}

/* Does a share of want fit now? Alone, any share fits (see msgbudget_next_lent). */
static bool fits(const struct msgbudget *b, size_t want)
{
    return b->lent == 0 || (b->lent <= b->total && want <= b->total - b->lent);
}

static void lend(struct msgbudget *b, struct msgbudget_claim *c, size_t want)
{
    c->held = want;
    c->want = 0;
    b->lent += want;
}

bool msgbudget_ask(struct msgbudget *b, struct msgbudget_claim *c, size_t want)
{
    b->lent -= c->held;
    b->n_waiting -= c->want > 0;
    c->held = 0;
    c->want = 0;
    list_del(&c->node);
    if (want == 0)
        return false;
    if (list_empty(&b->waiting) && fits(b, want)) {
        lend(b, c, want);
        return true;
    }
    c->want = want;
    list_append(&b->waiting, &c->node);
    b->n_waiting++;
    return false;
}

struct msgbudget_claim *msgbudget_next_lent(struct msgbudget *b)
{
    if (list_empty(&b->waiting))
        return NULL;
    struct msgbudget_claim *c = list_entry(b->waiting.next, struct msgbudget_claim, node);
    if (!fits(b, c->want))
        return NULL;
    list_del(&c->node);
    b->n_waiting--;
    lend(b, c, c->want);
    return c;
}

void msgbudget_resize(struct msgbudget *b, size_t total)
{
    b->total = total;
}
