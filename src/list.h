/* list.h: intrusive doubly linked list; an object's state is the list it sits on. */
#ifndef LAKEPROXY_LIST_H
#define LAKEPROXY_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct list {
    struct list *next, *prev;
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define list_entry(ptr, type, member) container_of(ptr, type, member)
#define list_for_each_safe(pos, tmp, head)                                                         \
    for (pos = (head)->next, tmp = pos->next; pos != (head); pos = tmp, tmp = pos->next)

static inline void list_init(struct list *l)
{
    l->next = l->prev = l;
}
static inline bool list_empty(const struct list *l)
{
    return l->next == l;
}

static inline void list_append(struct list *head, struct list *item)
{
    item->prev = head->prev;
    item->next = head;
    head->prev->next = item;
    head->prev = item;
}

/* Removes item from whatever list holds it and leaves it self-linked (safe to remove twice). */
static inline void list_del(struct list *item)
{
    item->prev->next = item->next;
    item->next->prev = item->prev;
    list_init(item);
}

static inline struct list *list_pop_first(struct list *head)
{
    if (list_empty(head))
        return NULL;
    struct list *first = head->next;
    list_del(first);
    return first;
}

static inline size_t list_count(const struct list *head)
{
    size_t n = 0;
    for (const struct list *p = head->next; p != head; p = p->next)
        n++;
    return n;
}

/* list_count, but counting no further than cap (the length of a long list, up to what the
 * caller needs to know). */
static inline size_t list_count_upto(const struct list *head, size_t cap)
{
    size_t n = 0;
    for (const struct list *p = head->next; p != head && n < cap; p = p->next)
        n++;
    return n;
}

#endif
