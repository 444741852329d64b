/* metrics_ops._linescan, its reader: one line read with a strict subset of JSON, or handed back (see
 * _linescan.c for what it hands back). */
#include "_linescan.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64
#define MAX_DIGITS 18

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

/* The steps objects and arrays share; each returns 0 (not this subset), 1 (closed, past the close) or 2 (an item
 * follows, at its first byte). opened: at the '{' or '['; next_item: after an item's value. */
static int opened(Cursor *c, int depth, char close) {
    if (depth > MAX_DEPTH)
        return 0;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 1;
    }
    return 2;
}

static int next_item(Cursor *c, char close) {
    ws(c);
    if (c->p >= c->end)
        return 0;
    if (*c->p == close) {
        c->p++;
        return 1;
    }
    if (*c->p != ',')
        return 0;
    c->p++;
    ws(c);
    return 2;
}

/* An object's members, at the '{'. test_run: set when a top-level key is "test_run" (NULL: not looked for). */
static int object(Cursor *c, int depth, int *test_run) {
    int at = opened(c, depth, '}');
    while (at == 2) {
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
        at = value(c, depth + 1) ? next_item(c, '}') : 0;
    }
    return at;
}

static int array(Cursor *c, int depth) {
    int at = opened(c, depth, ']');
    while (at == 2)
        at = value(c, depth + 1) ? next_item(c, ']') : 0;
    return at;
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
int ls_line(CounterObject *self, const char *p, const char *end) {
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
    long pair = ls_pair_id(self, c_has, cr, s_has, sr);
    if (pair < 0)
        return -1;
    self->lines++;
    if (self->has_filter && (elen != (size_t)self->filter_len || memcmp(ev, self->filter, elen) != 0)) {
        self->pairs[pair].other++;
        return 1;
    }
    self->pairs[pair].counted++;
    long id = ls_event_id(self, ev, elen);
    if (id < 0)
        return -1;
    self->queue[self->queued++] = (Pending){ls_key_hash(vid, vlen, (uint32_t)id), vid, (uint32_t)vlen, (uint32_t)id,
                                            (uint32_t)pair};
    return self->queued == BATCH && ls_flush(self) < 0 ? -1 : 1;
}
