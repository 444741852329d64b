/* metrics_ops._linescan, its tables: the (visitor, event) hash table with a count per pair of rates, the events
 * and pairs of rates seen, and the spread of a day's visitors (see _linescan.c). */
#include "_linescan.h"

static uint64_t hash_bytes(const char *p, size_t n, uint64_t h) {
    const uint64_t m = 0x9E3779B97F4A7C15ULL;
    h ^= n * m;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * m;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * m;
    return h ^ (h >> 32);
}

int ls_grow(void **buf, size_t *cap, size_t need, size_t item) {
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(*buf, cap2 * item);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = p;
    *cap = cap2;
    return 0;
}

static size_t arena_add(CounterObject *self, const char *p, size_t n) {
    if (ls_grow((void **)&self->arena, &self->arena_cap, self->arena_len + n + 1, 1) < 0)
        return (size_t)-1;
    size_t at = self->arena_len;
    memcpy(self->arena + at, p, n);
    self->arena_len += n;
    return at;
}

static int rehash_events(CounterObject *self) {
    size_t cap = self->event_cap ? self->event_cap * 2 : 64;
    uint32_t *index = calloc(cap, sizeof(uint32_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->n_events; i++) {
        size_t at = self->events[i].hash & (cap - 1);
        while (index[at])
            at = (at + 1) & (cap - 1);
        index[at] = (uint32_t)(i + 1);
    }
    free(self->event_index);
    self->event_index = index;
    self->event_cap = cap;
    return 0;
}

long ls_event_id(CounterObject *self, const char *p, size_t n) {
    if ((self->n_events + 1) * 2 > self->event_cap && rehash_events(self) < 0)
        return -1;
    uint64_t h = hash_bytes(p, n, 14695981039346656037ULL);
    size_t mask = self->event_cap - 1, at = h & mask;
    for (; self->event_index[at]; at = (at + 1) & mask) {
        Event *e = &self->events[self->event_index[at] - 1];
        if (e->hash == h && e->len == n && memcmp(self->arena + e->key, p, n) == 0)
            return (long)(self->event_index[at] - 1);
    }
    if (ls_grow((void **)&self->events, &self->cap_events, self->n_events + 1, sizeof(Event)) < 0)
        return -1;
    size_t key = arena_add(self, p, n);
    if (key == (size_t)-1)
        return -1;
    self->events[self->n_events] = (Event){key, (uint32_t)n, h};
    self->event_index[at] = (uint32_t)(self->n_events + 1);
    return (long)self->n_events++;
}

static uint64_t pair_hash(int c_has, double c, int s_has, double s) {
    uint64_t w[3] = {0, 0, (uint64_t)(c_has * 2 + s_has)};
    memcpy(&w[0], &c, sizeof c);
    memcpy(&w[1], &s, sizeof s);
    return hash_bytes((const char *)w, sizeof w, 14695981039346656037ULL);
}

static int rehash_pairs(CounterObject *self) {
    size_t cap = self->pair_cap ? self->pair_cap * 2 : 64;
    uint32_t *index = calloc(cap, sizeof(uint32_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->n_pairs; i++) {
        Pair *q = &self->pairs[i];
        size_t at = pair_hash(q->c_has, q->c, q->s_has, q->s) & (cap - 1);
        while (index[at])
            at = (at + 1) & (cap - 1);
        index[at] = (uint32_t)(i + 1);
    }
    free(self->pair_index);
    self->pair_index = index;
    self->pair_cap = cap;
    return 0;
}

/* A pair of rates' id: a hash table, as a day may hold a distinct pair per line (a search through every pair
 * seen made that day quadratic: 80,000 distinct pairs took 9 s). */
long ls_pair_id(CounterObject *self, int c_has, double c, int s_has, double s) {
    if (!c_has)
        c = 0.0;
    if (!s_has)
        s = 0.0;
    if (self->n_pairs) { /* most lines repeat the pair of the line before */
        Pair *q = &self->pairs[self->last_pair];
        if (q->c_has == c_has && q->s_has == s_has && memcmp(&q->c, &c, sizeof c) == 0 &&
            memcmp(&q->s, &s, sizeof s) == 0)
            return (long)self->last_pair;
    }
    if ((self->n_pairs + 1) * 2 > self->pair_cap && rehash_pairs(self) < 0)
        return -1;
    size_t mask = self->pair_cap - 1, at = pair_hash(c_has, c, s_has, s) & mask;
    for (; self->pair_index[at]; at = (at + 1) & mask) {
        size_t i = self->pair_index[at] - 1;
        Pair *q = &self->pairs[i];
        if (q->c_has == c_has && q->s_has == s_has && memcmp(&q->c, &c, sizeof c) == 0 &&
            memcmp(&q->s, &s, sizeof s) == 0)
            return (long)(self->last_pair = i);
    }
    if (ls_grow((void **)&self->pairs, &self->cap_pairs, self->n_pairs + 1, sizeof(Pair)) < 0)
        return -1;
    self->pairs[self->n_pairs] = (Pair){c_has, s_has, c, s, 0, 0};
    self->pair_index[at] = (uint32_t)(self->n_pairs + 1);
    return (long)(self->last_pair = self->n_pairs++);
}

static int rehash(CounterObject *self) {
    size_t cap = self->index_cap ? self->index_cap * 2 : 1024;
    uint64_t *index = calloc(cap, sizeof(uint64_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->n_entries; i++) {
        uint64_t h = self->entries[i].hash;
        size_t at = h & (cap - 1);
        while (index[at])
            at = (at + 1) & (cap - 1);
        index[at] = (h & 0xFFFFFFFF00000000ULL) | (uint64_t)(i + 1);
    }
    free(self->index);
    self->index = index;
    self->index_cap = cap;
    return 0;
}

static size_t slot_at(size_t entry, uint32_t pair, size_t cap) {
    uint64_t h = ((uint64_t)entry * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)pair * 0xC2B2AE3D27D4EB4FULL);
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static int rehash_slots(CounterObject *self) {
    size_t cap = self->slot_cap ? self->slot_cap * 2 : 64;
    uint32_t *index = calloc(cap, sizeof(uint32_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < self->n_extra; i++) {
        size_t at = slot_at(self->extra[i].entry, self->extra[i].pair, cap);
        while (index[at])
            at = (at + 1) & (cap - 1);
        index[at] = (uint32_t)(i + 1);
    }
    free(self->slot_index);
    self->slot_index = index;
    self->slot_cap = cap;
    return 0;
}

/* An entry's count for a pair other than its first: found by (entry, pair) in slot_index, a new slot linked in
 * at the head of the entry's list (a walk of the list per line made one visitor sending a distinct pair of rates
 * per line quadratic: 80,000 lines took 40 s). */
static int add_slot(CounterObject *self, size_t entry, uint32_t pair) {
    if ((self->n_extra + 1) * 2 > self->slot_cap && rehash_slots(self) < 0)
        return -1;
    size_t mask = self->slot_cap - 1, at = slot_at(entry, pair, self->slot_cap);
    for (; self->slot_index[at]; at = (at + 1) & mask) {
        Slot *s = &self->extra[self->slot_index[at] - 1];
        if (s->entry == entry && s->pair == pair) {
            s->n++;
            return 0;
        }
    }
    if (ls_grow((void **)&self->extra, &self->cap_extra, self->n_extra + 1, sizeof(Slot)) < 0)
        return -1;
    Entry *e = &self->entries[entry];
    self->extra[self->n_extra] = (Slot){pair, 1, e->first.next, (uint32_t)entry};
    e->first.next = (int32_t)self->n_extra;
    self->slot_index[at] = (uint32_t)(++self->n_extra);
    return 0;
}

uint64_t ls_key_hash(const char *vid, size_t vlen, uint32_t ev) {
    return hash_bytes(vid, vlen, 14695981039346656037ULL ^ ((uint64_t)ev * 0x9E3779B97F4A7C15ULL));
}

/* Count one line; the index has room (see flush). */
static int add_line(CounterObject *self, const Pending *line) {
    uint64_t h = line->hash, tag = h & 0xFFFFFFFF00000000ULL;
    size_t mask = self->index_cap - 1, at = h & mask;
    for (;;) {
        uint64_t slot = self->index[at];
        if (slot == 0)
            break;
        if ((slot & 0xFFFFFFFF00000000ULL) == tag) {
            size_t i = (size_t)(slot & 0xFFFFFFFFULL) - 1;
            Entry *e = &self->entries[i];
            if (e->hash == h && e->event == line->event && e->vlen == line->vlen &&
                memcmp(self->arena + e->key, line->vid, line->vlen) == 0) {
                if (e->first.pair == line->pair) {
                    e->first.n++;
                    return 0;
                }
                return add_slot(self, i, line->pair);
            }
        }
        at = (at + 1) & mask;
    }
    if (ls_grow((void **)&self->entries, &self->cap_entries, self->n_entries + 1, sizeof(Entry)) < 0)
        return -1;
    size_t key = arena_add(self, line->vid, line->vlen);
    if (key == (size_t)-1)
        return -1;
    self->entries[self->n_entries] = (Entry){h, key, line->vlen, line->event, {line->pair, 1, -1, 0}};
    self->index[at] = tag | (uint64_t)(++self->n_entries);
    return 0;
}

/* Count the lines waiting: the index slot of a line AHEAD lines on, and the entry of one AHEAD / 2 on, are
 * fetched into the cache while a line is counted (a day's table is larger than the cache: a miss per line). */
int ls_flush(CounterObject *self) {
    size_t n = self->queued;
    self->queued = 0;
    while ((self->n_entries + n) * 2 > self->index_cap)
        if (rehash(self) < 0)
            return -1;
    size_t mask = self->index_cap - 1;
    for (size_t i = 0; i < n; i++) {
        if (i + AHEAD < n)
            __builtin_prefetch(&self->index[self->queue[i + AHEAD].hash & mask]);
        if (i + AHEAD / 2 < n) {
            uint64_t slot = self->index[self->queue[i + AHEAD / 2].hash & mask];
            if (slot)
                __builtin_prefetch(&self->entries[(slot & 0xFFFFFFFFULL) - 1]);
        }
        if (add_line(self, &self->queue[i]) < 0)
            return -1;
    }
    return 0;
}

/* A spread cell's place: every part mixed into every bit (n * constant ^ event * 31 ^ kind gave many events times
 * many kinds a few thousand places: 200,000 cells took 28 s). */
static size_t spread_at(int64_t n, uint32_t event, int32_t kind, size_t cap) {
    uint64_t h = ((uint64_t)n * 0x9E3779B97F4A7C15ULL ^ event) * 0xC2B2AE3D27D4EB4FULL;
    h = (h ^ (h >> 31) ^ (uint32_t)kind) * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

int ls_spread_add(SpreadTable *t, uint32_t event, int32_t kind, int64_t n) {
    if ((t->used + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        Spread *cells = malloc(cap * sizeof(Spread));
        if (cells == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < cap; i++)
            cells[i].kind = -1;
        for (size_t i = 0; i < t->cap; i++) {
            if (t->cells[i].kind < 0)
                continue;
            Spread *c = &t->cells[i];
            size_t at = spread_at(c->n, c->event, c->kind, cap);
            while (cells[at].kind >= 0)
                at = (at + 1) & (cap - 1);
            cells[at] = *c;
        }
        free(t->cells);
        t->cells = cells;
        t->cap = cap;
    }
    size_t at = spread_at(n, event, kind, t->cap);
    for (; t->cells[at].kind >= 0; at = (at + 1) & (t->cap - 1)) {
        Spread *c = &t->cells[at];
        if (c->n == n && c->event == event && c->kind == kind) {
            c->m++;
            return 0;
        }
    }
    t->cells[at] = (Spread){n, 1, event, kind};
    t->used++;
    return 0;
}

/* spread(kinds): ({(event, kind, n): m}, [(visitor, event, kind, n)]): m visitors who each sent n events of
 * that event, all of one kind; and the entries of the visitors with two kinds or more for an event. */
