/* metrics_ops._linescan: a day's stored lines counted at C speed (see metrics_ops/linecount.py).
 *
 * Counter.scan(block) reads each line of a block of whole lines with a strict subset of JSON: a line it is not
 * sure orjson reads the same way (an escape in a key of the line or of metadata, in visitor_id, event or
 * received_at; an invalid escape or a lone surrogate anywhere; invalid UTF-8, a control character, a number with
 * more than 18 digits or an exponent of 3 digits or more, nesting deeper than MAX_DEPTH, a line that is not one
 * object, visitor_id or event not a string, a rate that is not a number or null, a metadata object with a
 * top-level "test_run" key, a received_at string outside ["0002", "9999")) is handed back, whole, in the bytes
 * it returns: the caller reads those the reference way (metrics_ops.tally._count_block), which decides every
 * damaged line.
 * Duplicate keys: the last one counts, as in orjson. Rates are read by strtod (correctly rounded, as orjson).
 *
 * Every other line is counted in a hash table keyed by (visitor_id, event), each entry holding its count per
 * distinct pair of rates; lines of another event than the filter are counted per pair of rates only (what the
 * rates are worth is decided by the caller once per pair: metrics_ops.estimate.weight).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64
#define MAX_DIGITS 18

/* ---------------------------------------------------------------------------------------------- tables */

typedef struct {
    uint32_t pair;
    int64_t n;
    int32_t next; /* index into extra, -1: none */
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
    Pair *pairs;
    size_t n_pairs, cap_pairs;
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

static int grow(void **buf, size_t *cap, size_t need, size_t item) {
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
    if (grow((void **)&self->arena, &self->arena_cap, self->arena_len + n + 1, 1) < 0)
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

static long event_id(CounterObject *self, const char *p, size_t n) {
    if ((self->n_events + 1) * 2 > self->event_cap && rehash_events(self) < 0)
        return -1;
    uint64_t h = hash_bytes(p, n, 14695981039346656037ULL);
    size_t mask = self->event_cap - 1, at = h & mask;
    for (; self->event_index[at]; at = (at + 1) & mask) {
        Event *e = &self->events[self->event_index[at] - 1];
        if (e->hash == h && e->len == n && memcmp(self->arena + e->key, p, n) == 0)
            return (long)(self->event_index[at] - 1);
    }
    if (grow((void **)&self->events, &self->cap_events, self->n_events + 1, sizeof(Event)) < 0)
        return -1;
    size_t key = arena_add(self, p, n);
    if (key == (size_t)-1)
        return -1;
    self->events[self->n_events] = (Event){key, (uint32_t)n, h};
    self->event_index[at] = (uint32_t)(self->n_events + 1);
    return (long)self->n_events++;
}

static long pair_id(CounterObject *self, int c_has, double c, int s_has, double s) {
    if (!c_has)
        c = 0.0;
    if (!s_has)
        s = 0.0;
    for (size_t i = self->n_pairs; i-- > 0;) { /* a day has a few pairs of rates: the last ones first */
        Pair *q = &self->pairs[i];
        if (q->c_has == c_has && q->s_has == s_has && memcmp(&q->c, &c, sizeof c) == 0 &&
            memcmp(&q->s, &s, sizeof s) == 0)
            return (long)i;
        if (self->n_pairs - i > 64)
            break;
    }
    for (size_t i = 0; i + 64 < self->n_pairs; i++) {
        Pair *q = &self->pairs[i];
        if (q->c_has == c_has && q->s_has == s_has && memcmp(&q->c, &c, sizeof c) == 0 &&
            memcmp(&q->s, &s, sizeof s) == 0)
            return (long)i;
    }
    if (grow((void **)&self->pairs, &self->cap_pairs, self->n_pairs + 1, sizeof(Pair)) < 0)
        return -1;
    self->pairs[self->n_pairs] = (Pair){c_has, s_has, c, s, 0, 0};
    return (long)self->n_pairs++;
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

static int add_slot(CounterObject *self, size_t entry, uint32_t pair) {
    Entry *e = &self->entries[entry];
    int32_t *link = &e->first.next;
    while (*link >= 0) {
        Slot *s = &self->extra[*link];
        if (s->pair == pair) {
            s->n++;
            return 0;
        }
        link = &s->next;
    }
    if (grow((void **)&self->extra, &self->cap_extra, self->n_extra + 1, sizeof(Slot)) < 0)
        return -1;
    self->extra[self->n_extra] = (Slot){pair, 1, -1};
    link = &e->first.next; /* it may have pointed into the old array */
    while (*link >= 0)
        link = &self->extra[*link].next;
    *link = (int32_t)self->n_extra++;
    return 0;
}

static uint64_t key_hash(const char *vid, size_t vlen, uint32_t ev) {
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
    if (grow((void **)&self->entries, &self->cap_entries, self->n_entries + 1, sizeof(Entry)) < 0)
        return -1;
    size_t key = arena_add(self, line->vid, line->vlen);
    if (key == (size_t)-1)
        return -1;
    self->entries[self->n_entries] = (Entry){h, key, line->vlen, line->event, {line->pair, 1, -1}};
    self->index[at] = tag | (uint64_t)(++self->n_entries);
    return 0;
}

/* Count the lines waiting: the index slot of a line AHEAD lines on, and the entry of one AHEAD / 2 on, are
 * fetched into the cache while a line is counted (a day's table is larger than the cache: a miss per line). */
static int flush(CounterObject *self) {
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

/* ---------------------------------------------------------------------------------------------- the parser */

typedef struct {
    const char *p, *end;
} Cursor;

static inline void ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r'))
        c->p++;
}

static int hex4(const unsigned char *p, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = p[i];
        unsigned d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                   : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : 16;
        if (d == 16)
            return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

/* An escape of JSON at *pp (the backslash), past it on success: a surrogate only as a pair (high, then low). */
static int escape(const unsigned char **pp, const unsigned char *end) {
    const unsigned char *p = *pp;
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        *pp = p + 2;
        return 1;
    case 'u':
        break;
    default:
        return 0;
    }
    unsigned v, w;
    if (end - p < 6 || !hex4(p + 2, &v))
        return 0;
    if (v < 0xD800 || v > 0xDFFF) {
        *pp = p + 6;
        return 1;
    }
    if (v > 0xDBFF || end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &w) || w < 0xDC00 || w > 0xDFFF)
        return 0; /* a lone surrogate */
    *pp = p + 12;
    return 1;
}

/* A string without control characters, valid UTF-8 (no surrogates, nothing beyond U+10FFFF), its escapes valid.
 * At the opening quote; on success the cursor is past the closing quote and *s, *n its contents (as written).
 * 1: a plain string (its bytes are its text), 2: it holds an escape, 0: not sure it is a valid string. */
static int string(Cursor *c, const char **s, size_t *n) {
    const unsigned char *p = (const unsigned char *)c->p + 1, *end = (const unsigned char *)c->end;
    const unsigned char *start = p;
    int escaped = 0;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time while none is a quote, a backslash, a control character or not ASCII */
        const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                                       _mm_cmplt_epi8(v, space)); /* signed: bytes >= 0x80 too */
            int bits = _mm_movemask_epi8(hit);
            if (bits) {
                p += __builtin_ctz((unsigned)bits);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end)
            return 0;
        unsigned char b = *p;
        if (b == '"')
            break;
        if (b == '\\') {
            int got = escape(&p, end);
            if (!got)
                return 0;
            escaped = 1;
            continue;
        }
        if (b < 0x80) /* a control character */
            return 0;
        if (b >= 0xC2 && b <= 0xDF) {
            if (end - p < 2 || (p[1] & 0xC0) != 0x80)
                return 0;
            p += 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
                return 0;
            if (b == 0xE0 && p[1] < 0xA0)
                return 0; /* overlong */
            if (b == 0xED && p[1] >= 0xA0)
                return 0; /* a surrogate */
            p += 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
                return 0;
            if (b == 0xF0 && p[1] < 0x90)
                return 0; /* overlong */
            if (b == 0xF4 && p[1] >= 0x90)
                return 0; /* beyond U+10FFFF */
            p += 4;
        } else {
            return 0;
        }
    }
    *s = (const char *)start;
    *n = (size_t)(p - start);
    c->p = (const char *)p + 1;
    return 1 + escaped;
}

/* A number of the JSON grammar with at most MAX_DIGITS digits and an exponent of at most 2 digits. */
static int number(Cursor *c) {
    const char *p = c->p, *end = c->end;
    int digits = 0;
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return 0;
    if (*p == '0') {
        p++;
        digits++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        p++;
        const char *f = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == f)
            return 0;
        digits += (int)(p - f);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *x = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == x || p - x > 2)
            return 0;
    }
    if (digits > MAX_DIGITS)
        return 0;
    c->p = p;
    return 1;
}

static int value(Cursor *c, int depth);

static int literal(Cursor *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

/* An object's members, at the '{'. test_run: set when a top-level key is "test_run" (NULL: not looked for). */
static int object(Cursor *c, int depth, int *test_run) {
    if (depth > MAX_DEPTH)
        return 0;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
    for (;;) {
        const char *k;
        size_t kn;
        int got = c->p < c->end && *c->p == '"' ? string(c, &k, &kn) : 0;
        if (!got || (got == 2 && test_run != NULL))
            return 0;
        if (test_run != NULL && kn == 8 && memcmp(k, "test_run", 8) == 0)
            *test_run = 1;
        ws(c);
        if (c->p >= c->end || *c->p != ':')
            return 0;
        c->p++;
        ws(c);
        if (!value(c, depth + 1))
            return 0;
        ws(c);
        if (c->p >= c->end)
            return 0;
        if (*c->p == '}') {
            c->p++;
            return 1;
        }
        if (*c->p != ',')
            return 0;
        c->p++;
        ws(c);
    }
}

static int array(Cursor *c, int depth) {
    if (depth > MAX_DEPTH)
        return 0;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == ']') {
        c->p++;
        return 1;
    }
    for (;;) {
        if (!value(c, depth + 1))
            return 0;
        ws(c);
        if (c->p >= c->end)
            return 0;
        if (*c->p == ']') {
            c->p++;
            return 1;
        }
        if (*c->p != ',')
            return 0;
        c->p++;
        ws(c);
    }
}

static int value(Cursor *c, int depth) {
    if (c->p >= c->end)
        return 0;
    const char *s;
    size_t n;
    switch (*c->p) {
    case '"':
        return string(c, &s, &n) != 0;
    case '{':
        return object(c, depth, NULL);
    case '[':
        return array(c, depth);
    case 't':
        return literal(c, "true", 4);
    case 'f':
        return literal(c, "false", 5);
    case 'n':
        return literal(c, "null", 4);
    default:
        return number(c);
    }
}

/* A rate: a number (read by strtod) or null (as missing). */
static int rate(Cursor *c, int *has, double *v) {
    if (c->p < c->end && *c->p == 'n') {
        *has = 0;
        return literal(c, "null", 4);
    }
    const char *start = c->p;
    if (!number(c))
        return 0;
    /* the texts of rates repeat: the last few read are kept */
    static char seen[4][32];
    static size_t seen_len[4];
    static double seen_value[4];
    static unsigned next;
    size_t n = (size_t)(c->p - start);
    if (n >= sizeof seen[0])
        return 0;
    for (int i = 0; i < 4; i++) {
        if (seen_len[i] == n && memcmp(seen[i], start, n) == 0) {
            *v = seen_value[i];
            *has = 1;
            return 1;
        }
    }
    unsigned at = next++ & 3;
    memcpy(seen[at], start, n);
    seen[at][n] = 0;
    seen_len[at] = n;
    seen_value[at] = *v = strtod(seen[at], NULL);
    *has = 1;
    return 1;
}

/* Whether the string s (n bytes) sorts before the 4 bytes of edge, as Python compares str. */
static int below(const char *s, size_t n, const char *edge) {
    int order = memcmp(s, edge, n < 4 ? n : 4);
    return order < 0 || (order == 0 && n < 4);
}

#define KEY(lit) (kn == sizeof(lit) - 1 && memcmp(k, lit, sizeof(lit) - 1) == 0)

/* One line (without its newline): 1 counted, 0 handed back, -1 error (memory). */
static int line(CounterObject *self, const char *p, const char *end) {
    Cursor cur = {p, end}, *c = &cur;
    const char *vid = NULL, *ev = NULL;
    size_t vlen = 0, elen = 0;
    int c_has = 0, s_has = 0;
    double cr = 0.0, sr = 0.0;
    ws(c);
    if (c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}')
        return 0; /* no visitor_id */
    for (;;) {
        const char *k, *s;
        size_t kn, n;
        if (c->p >= c->end || *c->p != '"' || string(c, &k, &kn) != 1)
            return 0;
        ws(c);
        if (c->p >= c->end || *c->p != ':')
            return 0;
        c->p++;
        ws(c);
        if (c->p >= c->end)
            return 0;
        if (KEY("visitor_id")) {
            if (*c->p != '"' || string(c, &vid, &vlen) != 1)
                return 0;
        } else if (KEY("event")) {
            if (*c->p != '"' || string(c, &ev, &elen) != 1)
                return 0;
        } else if (KEY("client_rate")) {
            if (!rate(c, &c_has, &cr))
                return 0;
        } else if (KEY("server_rate")) {
            if (!rate(c, &s_has, &sr))
                return 0;
        } else if (KEY("metadata") && *c->p == '{') {
            int test_run = 0;
            if (!object(c, 1, &test_run) || test_run)
                return 0;
        } else if (KEY("received_at") && *c->p == '"') {
            if (string(c, &s, &n) != 1)
                return 0;
            /* Python compares str by code point: the same order as their UTF-8 bytes */
            if (below(s, n, "0002") || !below(s, n, "9999"))
                return 0;
        } else if (!value(c, 1)) {
            return 0;
        }
        ws(c);
        if (c->p >= c->end)
            return 0;
        if (*c->p == '}') {
            c->p++;
            break;
        }
        if (*c->p != ',')
            return 0;
        c->p++;
        ws(c);
    }
    ws(c);
    if (c->p != c->end || vid == NULL || ev == NULL)
        return 0;
    long pair = pair_id(self, c_has, cr, s_has, sr);
    if (pair < 0)
        return -1;
    self->lines++;
    if (self->has_filter && (elen != (size_t)self->filter_len || memcmp(ev, self->filter, elen) != 0)) {
        self->pairs[pair].other++;
        return 1;
    }
    self->pairs[pair].counted++;
    long id = event_id(self, ev, elen);
    if (id < 0)
        return -1;
    self->queue[self->queued++] = (Pending){key_hash(vid, vlen, (uint32_t)id), vid, (uint32_t)vlen, (uint32_t)id,
                                            (uint32_t)pair};
    return self->queued == BATCH && flush(self) < 0 ? -1 : 1;
}

/* ---------------------------------------------------------------------------------------------- the type */

static int Counter_init(CounterObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"event", NULL};
    PyObject *event = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &event))
        return -1;
    if (event != Py_None) {
        char *buf;
        Py_ssize_t n;
        if (PyBytes_AsStringAndSize(event, &buf, &n) < 0)
            return -1;
        free(self->filter);
        self->filter = malloc(n + 1);
        if (self->filter == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(self->filter, buf, n);
        self->filter_len = n;
        self->has_filter = 1;
    }
    return 0;
}

static void Counter_dealloc(CounterObject *self) {
    free(self->arena);
    free(self->entries);
    free(self->index);
    free(self->extra);
    free(self->pairs);
    free(self->events);
    free(self->event_index);
    free(self->filter);
    free(self->back);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int hand_back(CounterObject *self, const char *p, size_t n) {
    if (grow((void **)&self->back, &self->back_cap, self->back_len + n + 1, 1) < 0)
        return -1;
    memcpy(self->back + self->back_len, p, n);
    self->back[self->back_len + n] = '\n';
    self->back_len += n + 1;
    return 0;
}

static PyObject *Counter_scan(CounterObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = view.buf, *end = p + view.len;
    int failed = 0;
    self->back_len = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop > p) { /* an empty line is no line */
            int got = line(self, p, stop);
            if (got < 0 || (got == 0 && hand_back(self, p, (size_t)(stop - p)) < 0)) {
                failed = 1;
                break;
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (!failed && flush(self) < 0) /* before the block is released: the lines waiting point into it */
        failed = 1;
    self->queued = 0;
    PyBuffer_Release(&view);
    if (failed)
        return PyErr_NoMemory();
    return PyBytes_FromStringAndSize(self->back ? self->back : "", (Py_ssize_t)self->back_len);
}

static PyObject *rate_object(int has, double v) {
    if (!has)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(v);
}

static PyObject *Counter_pairs(CounterObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *out = PyList_New((Py_ssize_t)self->n_pairs);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < self->n_pairs; i++) {
        Pair *q = &self->pairs[i];
        PyObject *c = rate_object(q->c_has, q->c), *s = rate_object(q->s_has, q->s);
        PyObject *t = (c && s) ? Py_BuildValue("(NNLL)", c, s, (long long)q->counted, (long long)q->other) : NULL;
        if (t == NULL) {
            Py_XDECREF(c);
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    return out;
}

/* The event names as str, by event id (NULL on error). */
static PyObject *event_names(CounterObject *self) {
    PyObject *names = PyList_New((Py_ssize_t)self->n_events);
    if (names == NULL)
        return NULL;
    for (size_t i = 0; i < self->n_events; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(self->arena + self->events[i].key, self->events[i].len, NULL);
        if (s == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyList_SET_ITEM(names, (Py_ssize_t)i, s);
    }
    return names;
}

/* kinds: a list of ints, one per pair (its weight class; -1 leaves its lines out). */
static long *read_kinds(CounterObject *self, PyObject *kinds) {
    if (!PyList_Check(kinds) || (size_t)PyList_GET_SIZE(kinds) != self->n_pairs) {
        PyErr_SetString(PyExc_ValueError, "kinds: a list with one int per pair of rates");
        return NULL;
    }
    long *out = malloc((self->n_pairs + 1) * sizeof(long));
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (size_t i = 0; i < self->n_pairs; i++) {
        out[i] = PyLong_AsLong(PyList_GET_ITEM(kinds, (Py_ssize_t)i));
        if (out[i] == -1 && PyErr_Occurred()) {
            free(out);
            return NULL;
        }
    }
    return out;
}

static int append_entry(PyObject *list, CounterObject *self, Entry *e, PyObject *names, long kind, int64_t n) {
    PyObject *vid = PyUnicode_DecodeUTF8(self->arena + e->key, e->vlen, NULL);
    if (vid == NULL)
        return -1;
    PyObject *ev = PyList_GET_ITEM(names, e->event);
    Py_INCREF(ev);
    PyObject *t = Py_BuildValue("(NNlL)", vid, ev, kind, (long long)n);
    if (t == NULL)
        return -1;
    int r = PyList_Append(list, t);
    Py_DECREF(t);
    return r;
}

/* entries(kinds): [(visitor, event, kind, n)] for every counted (visitor, event, pair) of a kind >= 0. */
static PyObject *Counter_entries(CounterObject *self, PyObject *arg) {
    long *kinds = read_kinds(self, arg);
    if (kinds == NULL)
        return NULL;
    PyObject *names = event_names(self), *out = names ? PyList_New(0) : NULL;
    if (out == NULL)
        goto fail;
    for (size_t i = 0; i < self->n_entries; i++) {
        Entry *e = &self->entries[i];
        for (Slot *s = &e->first;; s = &self->extra[s->next]) {
            if (kinds[s->pair] >= 0 && append_entry(out, self, e, names, kinds[s->pair], s->n) < 0)
                goto fail;
            if (s->next < 0)
                break;
        }
    }
    free(kinds);
    Py_DECREF(names);
    return out;
fail:
    free(kinds);
    Py_XDECREF(names);
    Py_XDECREF(out);
    return NULL;
}

/* The spread of a day as it is counted: m visitors per (event, kind, n). */
typedef struct {
    int64_t n, m;
    uint32_t event;
    int32_t kind; /* -1: an empty cell */
} Spread;

typedef struct {
    Spread *cells;
    size_t cap, used;
} SpreadTable;

static int spread_add(SpreadTable *t, uint32_t event, int32_t kind, int64_t n) {
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
            size_t at = ((uint64_t)c->n * 0x9E3779B97F4A7C15ULL ^ c->event * 31u ^ (uint32_t)c->kind) & (cap - 1);
            while (cells[at].kind >= 0)
                at = (at + 1) & (cap - 1);
            cells[at] = *c;
        }
        free(t->cells);
        t->cells = cells;
        t->cap = cap;
    }
    size_t at = ((uint64_t)n * 0x9E3779B97F4A7C15ULL ^ event * 31u ^ (uint32_t)kind) & (t->cap - 1);
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
static PyObject *Counter_spread(CounterObject *self, PyObject *arg) {
    long *kinds = read_kinds(self, arg);
    if (kinds == NULL)
        return NULL;
    SpreadTable table = {NULL, 0, 0};
    PyObject *names = event_names(self), *spread = NULL;
    PyObject *shared = names ? PyList_New(0) : NULL;
    if (shared == NULL)
        goto fail;
    for (size_t i = 0; i < self->n_entries; i++) {
        Entry *e = &self->entries[i];
        long kind = -1;
        int64_t n = 0;
        int mixed = 0;
        for (Slot *s = &e->first;; s = &self->extra[s->next]) {
            long k = kinds[s->pair];
            if (k >= 0) {
                if (kind >= 0 && k != kind)
                    mixed = 1;
                kind = k;
                n += s->n;
            }
            if (s->next < 0)
                break;
        }
        if (kind < 0)
            continue;
        if (!mixed) {
            if (spread_add(&table, e->event, (int32_t)kind, n) < 0)
                goto fail;
            continue;
        }
        for (Slot *s = &e->first;; s = &self->extra[s->next]) {
            if (kinds[s->pair] >= 0 && append_entry(shared, self, e, names, kinds[s->pair], s->n) < 0)
                goto fail;
            if (s->next < 0)
                break;
        }
    }
    spread = PyDict_New();
    if (spread == NULL)
        goto fail;
    for (size_t i = 0; i < table.cap; i++) {
        Spread *c = &table.cells[i];
        if (c->kind < 0)
            continue;
        PyObject *key = Py_BuildValue("(OiL)", PyList_GET_ITEM(names, c->event), (int)c->kind, (long long)c->n);
        PyObject *m = key ? PyLong_FromLongLong(c->m) : NULL;
        int r = m ? PyDict_SetItem(spread, key, m) : -1;
        Py_XDECREF(key);
        Py_XDECREF(m);
        if (r < 0)
            goto fail;
    }
    free(table.cells);
    free(kinds);
    Py_DECREF(names);
    return Py_BuildValue("(NN)", spread, shared);
fail:
    free(table.cells);
    free(kinds);
    Py_XDECREF(names);
    Py_XDECREF(spread);
    Py_XDECREF(shared);
    return NULL;
}

static PyObject *Counter_get_lines(CounterObject *self, void *closure) {
    return PyLong_FromLongLong(self->lines);
}

static PyMethodDef Counter_methods[] = {
    {"scan", (PyCFunction)Counter_scan, METH_O,
     "scan(block) -> bytes: count the lines of a block of whole lines; the lines handed back (each ending with a "
     "newline) for the reference way"},
    {"pairs", (PyCFunction)Counter_pairs, METH_NOARGS,
     "pairs() -> [(client_rate, server_rate, counted lines, lines of other events)], None for a missing rate"},
    {"entries", (PyCFunction)Counter_entries, METH_O,
     "entries(kinds) -> [(visitor, event, kind, n)]: the counts of the pairs of a kind >= 0"},
    {"spread", (PyCFunction)Counter_spread, METH_O,
     "spread(kinds) -> ({(event, kind, n): visitors}, [(visitor, event, kind, n)] of visitors with two kinds)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Counter_getset[] = {
    {"lines", (getter)Counter_get_lines, NULL, "lines counted (every line not handed back)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "metrics_ops._linescan.Counter",
    .tp_basicsize = sizeof(CounterObject),
    .tp_itemsize = 0,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One day's lines counted by (visitor_id, event) and pair of rates (event: only lines of that event)",
    .tp_methods = Counter_methods,
    .tp_getset = Counter_getset,
    .tp_init = (initproc)Counter_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_linescan", "Stored lines counted at C speed (metrics_ops.linecount).", -1, NULL,
};

PyMODINIT_FUNC PyInit__linescan(void) {
    if (PyType_Ready(&CounterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CounterType);
    if (PyModule_AddObject(m, "Counter", (PyObject *)&CounterType) < 0) {
        Py_DECREF(&CounterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
