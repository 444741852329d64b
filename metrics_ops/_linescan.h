/* Shared by the parts of metrics_ops._linescan (see _linescan.c): the counter's tables and the calls between
 * the parts. */
#ifndef LINESCAN_H
#define LINESCAN_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t pair;
    int64_t n;
    int32_t next; /* index into extra, -1: none */
    uint32_t entry; /* in extra: the entry it belongs to */
} Slot;

typedef struct {
    uint64_t hash;
    size_t key; /* offset of the visitor's bytes in the arena */
    uint32_t vlen;
    uint32_t event; /* event id */
    Slot first;
} Entry;

typedef struct {
    int c_has, s_has;
    double c, s;
    int64_t counted, other;
} Pair;

typedef struct {
    size_t key;
    uint32_t len;
    uint64_t hash;
} Event;

/* A line read, waiting to be counted: lines are counted a batch at a time, the table's memory fetched ahead. */
typedef struct {
    uint64_t hash;
    const char *vid;
    uint32_t vlen, event, pair;
} Pending;

#define BATCH 128
#define AHEAD 8

typedef struct {
    PyObject_HEAD
    char *arena;
    size_t arena_len, arena_cap;
    Entry *entries;
    size_t n_entries, cap_entries;
    uint64_t *index; /* open addressing: (high half of the hash << 32) | (entry index + 1); 0 empty */
    size_t index_cap;
    Slot *extra;
    size_t n_extra, cap_extra;
    uint32_t *slot_index; /* open addressing over extra by (entry, pair): slot + 1, 0 empty */
    size_t slot_cap;
    Pair *pairs;
    size_t n_pairs, cap_pairs;
    uint32_t *pair_index; /* open addressing: pair id + 1, 0 empty (a day may hold a million distinct pairs) */
    size_t pair_cap, last_pair;
    Event *events;
    size_t n_events, cap_events;
    uint32_t *event_index; /* open addressing: event id + 1, 0 empty */
    size_t event_cap;
    char *filter;
    Py_ssize_t filter_len;
    int has_filter;
    long long lines;
    Pending queue[BATCH];
    size_t queued;
    /* the hand-back buffer of one scan */
    char *back;
    size_t back_len, back_cap;
} CounterObject;

typedef struct {
    int64_t n, m;
    uint32_t event;
    int32_t kind; /* -1: an empty cell */
} Spread;

typedef struct {
    Spread *cells;
    size_t cap, used;
} SpreadTable;

/* _linetable.c: the tables */
int ls_grow(void **buf, size_t *cap, size_t need, size_t item);
long ls_event_id(CounterObject *self, const char *p, size_t n);
long ls_pair_id(CounterObject *self, int c_has, double c, int s_has, double s);
uint64_t ls_key_hash(const char *vid, size_t vlen, uint32_t ev);
int ls_flush(CounterObject *self);
int ls_spread_add(SpreadTable *t, uint32_t event, int32_t kind, int64_t n);
/* _linejson.c: one line read, 1 counted, 0 handed back, -1 an error (memory) */
int ls_line(CounterObject *self, const char *p, const char *end);

#endif
