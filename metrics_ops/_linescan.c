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
 *
 * The parts: _linejson.c (the reader of a line), _linetable.c (the tables), _linescan.h (what they share); this
 * file: the Python type and the module.
 */
#include "_linescan.h"

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
    free(self->slot_index);
    free(self->pairs);
    free(self->pair_index);
    free(self->events);
    free(self->event_index);
    free(self->filter);
    free(self->back);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int hand_back(CounterObject *self, const char *p, size_t n) {
    if (ls_grow((void **)&self->back, &self->back_cap, self->back_len + n + 1, 1) < 0)
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
            int got = ls_line(self, p, stop);
            if (got < 0 || (got == 0 && hand_back(self, p, (size_t)(stop - p)) < 0)) {
                failed = 1;
                break;
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (!failed && ls_flush(self) < 0) /* before the block is released: the lines waiting point into it */
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
        PyObject *t = NULL;
        if (c && s) /* "N" hands both over, on failure too */
            t = Py_BuildValue("(NNLL)", c, s, (long long)q->counted, (long long)q->other);
        else {
            Py_XDECREF(c);
            Py_XDECREF(s);
        }
        if (t == NULL) {
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

/* An entry's kind over its pairs of a kind >= 0 and its lines (*n): -1 none, -2 two kinds or more. */
static long entry_kind(CounterObject *self, Entry *e, const long *kinds, int64_t *n) {
    long kind = -1;
    *n = 0;
    for (Slot *s = &e->first;; s = &self->extra[s->next]) {
        long k = kinds[s->pair];
        if (k >= 0) {
            kind = kind >= 0 && k != kind ? -2 : kind == -2 ? -2 : k;
            *n += s->n;
        }
        if (s->next < 0)
            return kind;
    }
}

static int append_slots(PyObject *list, CounterObject *self, Entry *e, PyObject *names, const long *kinds) {
    for (Slot *s = &e->first;; s = &self->extra[s->next]) {
        if (kinds[s->pair] >= 0 && append_entry(list, self, e, names, kinds[s->pair], s->n) < 0)
            return -1;
        if (s->next < 0)
            return 0;
    }
}

/* A visitor's lines over all events, for a spread by visitor: its kind (-1 none yet, -2 two or more). */
typedef struct {
    size_t key;
    uint32_t vlen, used;
    long kind;
    int64_t n;
} Visitor;

static Visitor *visitor_of(CounterObject *self, Visitor *table, size_t cap, Entry *e) {
    const char *vid = self->arena + e->key;
    size_t at = ls_key_hash(vid, e->vlen, 0) & (cap - 1);
    for (; table[at].used; at = (at + 1) & (cap - 1)) {
        Visitor *v = &table[at];
        if (v->vlen == e->vlen && memcmp(self->arena + v->key, vid, e->vlen) == 0)
            return v;
    }
    table[at] = (Visitor){e->key, e->vlen, 1, -1, 0};
    return &table[at];
}

/* The spread by visitor (grouped by nothing): visitors' kinds over all their events; the spread's event is the
 * empty key. Those of two kinds or more go to shared, entry by entry. */
static int spread_by_visitor(CounterObject *self, const long *kinds, SpreadTable *spread, PyObject *shared,
                             PyObject *names) {
    size_t cap = 16;
    while (cap < self->n_entries * 2)
        cap *= 2;
    Visitor *table = calloc(cap, sizeof(Visitor));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int64_t n;
    for (size_t i = 0; i < self->n_entries; i++) {
        long k = entry_kind(self, &self->entries[i], kinds, &n);
        if (k == -1)
            continue;
        Visitor *v = visitor_of(self, table, cap, &self->entries[i]);
        v->kind = v->kind == -1 ? k : v->kind != k ? -2 : k;
        v->n += n;
    }
    int r = 0;
    for (size_t i = 0; i < cap && r == 0; i++)
        if (table[i].used && table[i].kind >= 0)
            r = ls_spread_add(spread, 0, (int32_t)table[i].kind, table[i].n);
    for (size_t i = 0; i < self->n_entries && r == 0; i++) {
        Entry *e = &self->entries[i];
        if (entry_kind(self, e, kinds, &n) != -1 && visitor_of(self, table, cap, e)->kind == -2)
            r = append_slots(shared, self, e, names, kinds);
    }
    free(table);
    return r;
}

/* spread(kinds, by_event): ({(event, kind, n): m}, [(visitor, event, kind, n)]): m visitors who each sent n
 * events of that event, all of one kind; and the entries of the visitors with two kinds or more for an event.
 * Not by event: the same by visitor over all events, the event the empty key (). */
static PyObject *Counter_spread(CounterObject *self, PyObject *args) {
    PyObject *arg;
    int by_event = 1;
    if (!PyArg_ParseTuple(args, "O|p", &arg, &by_event))
        return NULL;
    long *kinds = read_kinds(self, arg);
    if (kinds == NULL)
        return NULL;
    SpreadTable table = {NULL, 0, 0};
    PyObject *names = by_event ? event_names(self) : PyList_New(0), *spread = NULL;
    PyObject *shared = names ? PyList_New(0) : NULL;
    if (shared == NULL)
        goto fail;
    if (!by_event) { /* every event's name is the empty key */
        PyObject *unit = PyTuple_New(0);
        for (size_t i = 0; unit != NULL && i < (self->n_events ? self->n_events : 1); i++)
            if (PyList_Append(names, unit) < 0)
                Py_CLEAR(unit);
        if (unit == NULL)
            goto fail;
        Py_DECREF(unit);
        if (spread_by_visitor(self, kinds, &table, shared, names) < 0)
            goto fail;
    }
    for (size_t i = 0; by_event && i < self->n_entries; i++) {
        Entry *e = &self->entries[i];
        int64_t n;
        long kind = entry_kind(self, e, kinds, &n);
        if (kind >= 0 && ls_spread_add(&table, e->event, (int32_t)kind, n) < 0)
            goto fail;
        if (kind == -2 && append_slots(shared, self, e, names, kinds) < 0)
            goto fail;
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
    {"spread", (PyCFunction)Counter_spread, METH_VARARGS,
     "spread(kinds, by_event=True) -> ({(event, kind, n): visitors}, [(visitor, event, kind, n)] of visitors with "
     "two kinds); not by event: by visitor over all events, the event ()"},
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
