/* spell.h: spells the once-a-second janitor times: how long a state (a client idle inside a
 * transaction, a statement running, a client idle between statements) has lasted, without a
 * clock read on the path of any message. The janitor looks at each connection once a round;
 * the state's owner bumps a counter (a "mark") whenever what it watches moves on, and a
 * changed mark or owner starts a new spell. So a spell is found a round or two late at most,
 * never early. */
#ifndef LAKEPROXY_SPELL_H
#define LAKEPROXY_SPELL_H

#include <stdbool.h>
#include <stdint.h>

struct spell {
    bool on;          /* a spell is being timed */
    int64_t since_ms; /* when the janitor first saw it (monotime_ms) */
    uint64_t who;     /* the client it belongs to ... */
    uint64_t mark;    /* ... and its owner's counter then */
};

/* One janitor round's look at sp: `holds` says whether the state holds now, who and mark
 * identify it. True when this spell has lasted limit_s seconds (sp then starts over). */
bool spell_over(struct spell *sp, bool holds, uint64_t who, uint64_t mark, int64_t now_ms,
                int limit_s);

#endif
