/* spell.c: the janitor's timing of spells (spell.h). Pure: the caller passes the time. */
#include "spell.h"

bool spell_over(struct spell *sp, bool holds, uint64_t who, uint64_t mark, int64_t now_ms,
                int limit_s)
{
    if (!holds) {
        sp->on = false;
        return false;
    }
    if (!sp->on || sp->who != who || sp->mark != mark) {
        sp->on = true;
        sp->since_ms = now_ms;
        sp->who = who;
        sp->mark = mark;
        return false;
    }
    if (now_ms - sp->since_ms < (int64_t)limit_s * 1000)
        return false;
    sp->on = false;
    return true;
}
