/* Native fast path of the remote write 1.0 decoder (ingest/remote_write.py).
 *
 * decode(data, table, fresh, index, series, refs, ts_ms, values, lo, hi, add, slow) reads a
 * decompressed WriteRequest by hand (protobuf wire format, Prometheus's remote.proto/types.proto)
 * and does what RemoteWriteDecoder._decode's in-place path does, for every TimeSeries at once:
 *
 *   - A request whose top level is anything but well-formed `timeseries` fields (field 1, length
 *     delimited; so metadata, unknown fields and every malformed body) is not touched: decode()
 *     returns False and the caller runs the pure-Python path, which gives the answer and the error
 *     messages of a complete parse.
 *   - A TimeSeries made of its Label fields (field 1) followed by one or more Samples (field 2),
 *     each Sample exactly {value (fixed64, optional), timestamp (varint, 0 <= t < 2**63)} in that
 *     order, with every Label's length a minimal varint, has the canonical encoding of its Label
 *     fields as its labels key. When that key is in `table` (a KnownSeries: the decoder's series
 *     validated in earlier requests, the same entries as its `_known` dict) or in `fresh` (validated
 *     earlier in this request), its samples are appended to refs/ts_ms/values (inside [lo, hi]) or
 *     handed to add(labels, t, value, i) (outside the window: the pure path records why).
 *   - Every other TimeSeries (unknown labels, exemplars, histograms, other layouts, malformed
 *     contents) is handed to slow(raw_bytes, i), in request order, so the batch holds exactly the
 *     samples and series the pure path gives.
 *
 * Speed: KnownSeries is a hash table of labels keys (keyed SipHash, CPython's own, so hash floods
 * are no better than against a dict) whose entries point at slots, one per distinct Labels; a slot
 * remembers the series' ref in the batch being built, so a known series costs one hash of its key
 * bytes and no hash of its Labels tuple. Such series are put in the batch's `index` (Labels -> ref)
 * only when Python code may read it during the call (before any callback, or once a series came
 * through `fresh`); at the end `index` may lack them. WriteBatch uses its index only to keep one
 * ref per series while a batch is built, and nothing builds on a decoded batch.
 *
 * Every read is bounded by the enclosing message's length; the GIL is held throughout.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Bumped with every change of what decode(), parse_v2() or KnownSeries take or give. */
#define RWDECODE_API_VERSION 3

/* Reads a varint at *p (< end). Returns 0 on a truncated or over-long (> max_bytes) varint. */
static inline int
read_varint(const uint8_t **p, const uint8_t *end, int max_bytes, uint64_t *out)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    int shift = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (q >= end)
            return 0;
        uint8_t b = *q++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *p = q;
            *out = v;
            return 1;
        }
        shift += 7;
    }
    return 0;
}

/* One Sample message [p, end) in the layout described above: value (optional) then timestamp. */
static inline int
read_sample(const uint8_t *p, const uint8_t *end, double *value, int64_t *ts)
{
    uint64_t t;
    *value = 0.0;
    if (p < end && *p == 0x09) {
        if (end - p < 9)
            return 0;
        memcpy(value, p + 1, 8); /* little-endian IEEE 754, as on every platform CPython runs on here */
        p += 9;
    }
    if (p >= end || *p != 0x10)
        return 0;
    p++;
    if (!read_varint(&p, end, 9, &t) || p != end || t > (uint64_t)INT64_MAX)
        return 0;
    *ts = (int64_t)t;
    return 1;
}

/* The series [p, end): sets *labels_end and *n_samples if it has the layout the fast path reads. */
static int
scan_series(const uint8_t *p, const uint8_t *end, const uint8_t **labels_end, Py_ssize_t *n_samples)
{
    uint64_t len;
    while (p < end && *p == 0x0A) {
        const uint8_t *start = ++p;
        if (!read_varint(&p, end, 5, &len))
            return 0;
        if (p - start > 1 && p[-1] == 0) /* a non-minimal length: not the canonical key */
            return 0;
        if (len > (uint64_t)(end - p))
            return 0;
        p += len;
    }
    *labels_end = p;
    Py_ssize_t n = 0;
    while (p < end) {
        if (*p != 0x12)
            return 0;
        p++;
        if (!read_varint(&p, end, 5, &len) || len > (uint64_t)(end - p))
            return 0;
        double v;
        int64_t t;
        if (!read_sample(p, p + len, &v, &t))
            return 0;
        p += len;
        n++;
    }
    *n_samples = n;
    return n > 0;
}

/* The top level: only field-1 (timeseries) length-delimited fields, all inside the buffer. */
static int
scan_request(const uint8_t *p, const uint8_t *end, Py_ssize_t *count)
{
    uint64_t len;
    Py_ssize_t n = 0;
    while (p < end) {
        if (*p != 0x0A)
            return 0;
        p++;
        if (!read_varint(&p, end, 5, &len) || len > (uint64_t)(end - p))
            return 0;
        p += len;
        n++;
    }
    *count = n;
    return 1;
}

/* ---- KnownSeries: labels key -> slot (one per distinct Labels) ---- */

typedef struct {
    Py_hash_t hash;
    PyObject *key; /* bytes; NULL: an empty entry */
    Py_ssize_t slot;
} Entry;

typedef struct {
    PyObject *labels;
    uint64_t gen;  /* the decode call whose batch holds this series (as `ref`) */
    PyObject *ref; /* owned while gen is the current call's */
    int indexed;   /* ref is in that batch's index dict */
} Slot;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    Py_ssize_t cap, used;
    Slot *slots;
    Py_ssize_t nslots, slots_cap;
    PyObject *slot_of; /* dict: Labels -> int slot */
    uint64_t gen;
    int busy;
} KnownSeries;

static Py_hash_t
hash_bytes(const void *p, Py_ssize_t n)
{
    return PyHash_GetFuncDef()->hash(p, n);
}

static Entry *
find_entry(KnownSeries *t, const char *key, Py_ssize_t n, Py_hash_t h)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = (size_t)t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        Entry *e = &t->entries[i];
        if (e->key == NULL)
            return e;
        if (e->hash == h && PyBytes_GET_SIZE(e->key) == n && memcmp(PyBytes_AS_STRING(e->key), key, n) == 0)
            return e;
    }
}

static int
grow_entries(KnownSeries *t)
{
    Py_ssize_t cap = t->cap ? t->cap * 2 : 1024;
    Entry *fresh = PyMem_Calloc((size_t)cap, sizeof(Entry));
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Entry *old = t->entries;
    Py_ssize_t old_cap = t->cap;
    t->entries = fresh;
    t->cap = cap;
    for (Py_ssize_t i = 0; i < old_cap; i++) {
        if (old[i].key != NULL) {
            Entry *e = find_entry(t, PyBytes_AS_STRING(old[i].key), PyBytes_GET_SIZE(old[i].key), old[i].hash);
            *e = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

static void
known_series_reset(KnownSeries *t)
{
    for (Py_ssize_t i = 0; i < t->cap; i++)
        Py_CLEAR(t->entries[i].key);
    PyMem_Free(t->entries);
    t->entries = NULL;
    t->cap = t->used = 0;
    for (Py_ssize_t i = 0; i < t->nslots; i++) {
        Py_CLEAR(t->slots[i].labels);
        Py_CLEAR(t->slots[i].ref);
    }
    PyMem_Free(t->slots);
    t->slots = NULL;
    t->nslots = t->slots_cap = 0;
    if (t->slot_of != NULL)
        PyDict_Clear(t->slot_of);
}

static PyObject *
known_series_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "KnownSeries() takes no arguments");
        return NULL;
    }
    KnownSeries *t = (KnownSeries *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    t->slot_of = PyDict_New();
    if (t->slot_of == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static int
known_series_traverse(KnownSeries *t, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < t->nslots; i++) {
        Py_VISIT(t->slots[i].labels);
        Py_VISIT(t->slots[i].ref);
    }
    Py_VISIT(t->slot_of);
    return 0;
}

static int
known_series_clear_gc(KnownSeries *t)
{
    known_series_reset(t);
    Py_CLEAR(t->slot_of);
    return 0;
}

static void
known_series_dealloc(KnownSeries *t)
{
    PyObject_GC_UnTrack(t);
    known_series_clear_gc(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int
check_idle(KnownSeries *t)
{
    if (t->busy) {
        PyErr_SetString(PyExc_RuntimeError, "KnownSeries changed during decode()");
        return -1;
    }
    return 0;
}

/* The slot of `labels` (a new one for Labels not seen since the last clear). */
static Py_ssize_t
slot_for(KnownSeries *t, PyObject *labels)
{
    PyObject *found = PyDict_GetItemWithError(t->slot_of, labels);
    if (found != NULL)
        return PyLong_AsSsize_t(found);
    if (PyErr_Occurred())
        return -1;
    if (t->nslots == t->slots_cap) {
        Py_ssize_t cap = t->slots_cap ? t->slots_cap * 2 : 1024;
        Slot *grown = PyMem_Realloc(t->slots, (size_t)cap * sizeof(Slot));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->slots = grown;
        t->slots_cap = cap;
    }
    PyObject *n = PyLong_FromSsize_t(t->nslots);
    if (n == NULL)
        return -1;
    int rc = PyDict_SetItem(t->slot_of, labels, n);
    Py_DECREF(n);
    if (rc < 0)
        return -1;
    Slot *s = &t->slots[t->nslots];
    Py_INCREF(labels);
    s->labels = labels;
    s->gen = 0;
    s->ref = NULL;
    s->indexed = 0;
    return t->nslots++;
}

static PyObject *
known_series_add(KnownSeries *t, PyObject *args)
{
    PyObject *key, *labels;
    if (!PyArg_ParseTuple(args, "O!O:add", &PyBytes_Type, &key, &labels) || check_idle(t) < 0)
        return NULL;
    if (!PyTuple_Check(labels)) {
        PyErr_SetString(PyExc_TypeError, "labels must be a tuple (Labels)");
        return NULL;
    }
    Py_ssize_t slot = slot_for(t, labels);
    if (slot < 0)
        return NULL;
    if ((t->used + 1) * 2 > t->cap && grow_entries(t) < 0)
        return NULL;
    Py_hash_t h = hash_bytes(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
    Entry *e = find_entry(t, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), h);
    if (e->key == NULL) {
        Py_INCREF(key);
        e->key = key;
        e->hash = h;
        t->used++;
    }
    e->slot = slot;
    Py_RETURN_NONE;
}

static PyObject *
known_series_clear(KnownSeries *t, PyObject *Py_UNUSED(ignored))
{
    if (check_idle(t) < 0)
        return NULL;
    known_series_reset(t);
    Py_RETURN_NONE;
}

static Py_ssize_t
known_series_len(KnownSeries *t)
{
    return t->used;
}

static PyMethodDef known_series_methods[] = {
    {"add", (PyCFunction)known_series_add, METH_VARARGS, "add(key: bytes, labels: Labels): remember a validated series"},
    {"clear", (PyCFunction)known_series_clear, METH_NOARGS, "clear(): forget every series"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods known_series_as_sequence = {
    .sq_length = (lenfunc)known_series_len,
};

static PyTypeObject KnownSeriesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtpm.ingest._rwdecode.KnownSeries",
    .tp_doc = "Labels keys of validated series -> their Labels, for decode() (see the module's source).",
    .tp_basicsize = sizeof(KnownSeries),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = known_series_new,
    .tp_dealloc = (destructor)known_series_dealloc,
    .tp_traverse = (traverseproc)known_series_traverse,
    .tp_clear = (inquiry)known_series_clear_gc,
    .tp_methods = known_series_methods,
    .tp_as_sequence = &known_series_as_sequence,
};

/* ---- decode ---- */

typedef struct {
    KnownSeries *table; /* or NULL */
    PyObject *fresh, *index, *series;
    Py_ssize_t *pending; /* slots given a ref in this call */
    Py_ssize_t npending, pending_cap, flushed;
    int mixed; /* Python code may read index: every series goes through it from now on */
} Call;

/* Put the series added through slots into index, before Python code may read it. */
static int
flush(Call *c)
{
    for (; c->flushed < c->npending; c->flushed++) {
        Slot *s = &c->table->slots[c->pending[c->flushed]];
        if (!s->indexed) {
            if (PyDict_SetItem(c->index, s->labels, s->ref) < 0)
                return -1;
            s->indexed = 1;
        }
    }
    c->mixed = 1;
    return 0;
}

/* The batch ref of `labels` through index (added to the batch if new there); a new reference. */
static PyObject *
indexed_ref(Call *c, PyObject *labels)
{
    PyObject *new_ref = PyLong_FromSsize_t(PyList_GET_SIZE(c->series));
    PyObject *ref = new_ref == NULL ? NULL : PyDict_SetDefault(c->index, labels, new_ref);
    if (ref != NULL) {
        Py_INCREF(ref);
        if (ref == new_ref && PyList_Append(c->series, labels) < 0)
            Py_CLEAR(ref);
    }
    Py_XDECREF(new_ref);
    return ref;
}

/* The batch ref of a known slot; a new reference. */
static PyObject *
slot_ref(Call *c, Py_ssize_t k)
{
    Slot *s = &c->table->slots[k];
    if (s->gen == c->table->gen) {
        Py_INCREF(s->ref);
        return s->ref;
    }
    if (c->npending == c->pending_cap) {
        Py_ssize_t cap = c->pending_cap ? c->pending_cap * 2 : 1024;
        Py_ssize_t *grown = PyMem_Realloc(c->pending, (size_t)cap * sizeof(Py_ssize_t));
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        c->pending = grown;
        c->pending_cap = cap;
    }
    PyObject *ref;
    if (c->mixed) {
        ref = indexed_ref(c, s->labels);
    } else {
        ref = PyLong_FromSsize_t(PyList_GET_SIZE(c->series));
        if (ref != NULL && PyList_Append(c->series, s->labels) < 0)
            Py_CLEAR(ref);
    }
    if (ref == NULL)
        return NULL;
    s = &c->table->slots[k]; /* (no Python code ran: the slots array did not move) */
    s->gen = c->table->gen;
    Py_XSETREF(s->ref, ref);
    Py_INCREF(ref);
    s->indexed = c->mixed; /* else flush() puts it in index if Python code may read it */
    c->pending[c->npending++] = k;
    return ref;
}

/* The batch ref of the series with labels key [key, key + n), a new reference; NULL with no error
 * set when the key is not known. */
static PyObject *
series_ref(Call *c, const char *key, Py_ssize_t n)
{
    if (c->table != NULL && c->table->used) {
        Py_hash_t h = hash_bytes(key, n);
        Entry *e = find_entry(c->table, key, n, h);
        if (e->key != NULL)
            return slot_ref(c, e->slot);
    }
    if (PyDict_GET_SIZE(c->fresh) == 0)
        return NULL;
    PyObject *k = PyBytes_FromStringAndSize(key, n);
    if (k == NULL)
        return NULL;
    PyObject *labels = PyDict_GetItemWithError(c->fresh, k);
    Py_DECREF(k);
    if (labels == NULL || PyObject_IsTrue(labels) != 1)
        return NULL;
    Py_INCREF(labels);
    PyObject *ref = flush(c) < 0 ? NULL : indexed_ref(c, labels);
    Py_DECREF(labels);
    return ref;
}

static int
append_new(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

static void
end_call(Call *c)
{
    if (c->table != NULL) {
        for (Py_ssize_t i = 0; i < c->npending; i++)
            Py_CLEAR(c->table->slots[c->pending[i]].ref);
        c->table->busy = 0;
    }
    PyMem_Free(c->pending);
}

static PyObject *
rw_decode(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer buf;
    PyObject *table, *fresh, *index, *series, *refs, *ts_col, *value_col, *add, *slow;
    long long lo, hi;
    if (!PyArg_ParseTuple(args, "y*OO!O!O!O!O!O!LLOO:decode", &buf, &table, &PyDict_Type, &fresh, &PyDict_Type,
                          &index, &PyList_Type, &series, &PyList_Type, &refs, &PyList_Type, &ts_col, &PyList_Type,
                          &value_col, &lo, &hi, &add, &slow))
        return NULL;
    Call c = {NULL, fresh, index, series, NULL, 0, 0, 0, 0};
    if (table != Py_None) {
        if (!PyObject_TypeCheck(table, &KnownSeriesType)) {
            PyBuffer_Release(&buf);
            PyErr_SetString(PyExc_TypeError, "table must be a KnownSeries or None");
            return NULL;
        }
        c.table = (KnownSeries *)table;
        if (check_idle(c.table) < 0) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    const uint8_t *data = (const uint8_t *)buf.buf;
    const uint8_t *data_end = data + buf.len;
    Py_ssize_t count;
    if (!scan_request(data, data_end, &count)) {
        PyBuffer_Release(&buf);
        Py_RETURN_FALSE;
    }
    if (c.table != NULL) {
        c.table->busy = 1;
        c.table->gen++;
    }
    /* A batch that already has series: every series goes through its index. */
    c.mixed = PyDict_GET_SIZE(index) != 0 || PyList_GET_SIZE(series) != 0;
    PyObject *last_ts = NULL; /* the int object of the last timestamp (most requests have few) */
    int64_t last_t = 0;
    const uint8_t *p = data;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t len;
        p++; /* the 0x0A tag, checked by scan_request */
        read_varint(&p, data_end, 5, &len);
        const uint8_t *start = p, *end = p + len;
        p = end;
        const uint8_t *labels_end;
        Py_ssize_t n_samples;
        PyObject *ref = NULL;
        if (scan_series(start, end, &labels_end, &n_samples)) {
            ref = series_ref(&c, (const char *)start, labels_end - start);
            if (ref == NULL && PyErr_Occurred())
                goto error;
        }
        if (ref == NULL) {
            if (c.table != NULL && flush(&c) < 0)
                goto error;
            c.mixed = 1;
            PyObject *r = PyObject_CallFunction(slow, "y#n", (const char *)start, (Py_ssize_t)(end - start), i);
            if (r == NULL)
                goto error;
            Py_DECREF(r);
            continue;
        }
        const uint8_t *q = labels_end;
        while (q < end) {
            q++; /* 0x12 */
            read_varint(&q, end, 5, &len);
            double v;
            int64_t t;
            read_sample(q, q + len, &v, &t);
            q += len;
            if (lo <= t && t <= hi) {
                if (last_ts == NULL || t != last_t) {
                    Py_XDECREF(last_ts);
                    last_ts = PyLong_FromLongLong(t);
                    if (last_ts == NULL) {
                        Py_DECREF(ref);
                        goto error;
                    }
                    last_t = t;
                }
                if (PyList_Append(refs, ref) < 0 || PyList_Append(ts_col, last_ts) < 0 ||
                    append_new(value_col, PyFloat_FromDouble(v)) < 0) {
                    Py_DECREF(ref);
                    goto error;
                }
            } else {
                Py_ssize_t k = PyLong_AsSsize_t(ref);
                PyObject *labels = (k >= 0 && k < PyList_GET_SIZE(series)) ? PyList_GET_ITEM(series, k) : NULL;
                if (labels == NULL) {
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_RuntimeError, "remote write decoder: series ref out of range");
                    Py_DECREF(ref);
                    goto error;
                }
                Py_INCREF(labels);
                PyObject *r = NULL;
                if (c.table == NULL || flush(&c) == 0) {
                    c.mixed = 1;
                    r = PyObject_CallFunction(add, "OLdn", labels, (long long)t, v, i);
                }
                Py_DECREF(labels);
                if (r == NULL) {
                    Py_DECREF(ref);
                    goto error;
                }
                Py_DECREF(r);
            }
        }
        Py_DECREF(ref);
    }
    Py_XDECREF(last_ts);
    end_call(&c);
    PyBuffer_Release(&buf);
    Py_RETURN_TRUE;
error:
    Py_XDECREF(last_ts);
    end_call(&c);
    PyBuffer_Release(&buf);
    return NULL;
}

/* ---- remote write 2.0: parse_v2 ---- */

/* Skips nothing: every field parse_v2 does not read makes it give up (the pure path decides). */

/* The packed or single uint32 labels_refs values at [p, end) appended to refs; 0 if one is over
 * 32 bits (upb truncates those; the pure path gives its answer). */
static int
read_refs(const uint8_t *p, const uint8_t *end, PyObject *refs)
{
    while (p < end) {
        uint64_t v;
        if (!read_varint(&p, end, 10, &v) || v > 0xFFFFFFFFu)
            return 0;
        if (append_new(refs, PyLong_FromUnsignedLong((unsigned long)v)) < 0)
            return -1;
    }
    return 1;
}

/* One v2 Sample: value (1), timestamp (2), start_timestamp (3, read and dropped), any order, last
 * wins (proto3). 1 ok, 0 give up. */
static int
read_sample_v2(const uint8_t *p, const uint8_t *end, double *value, int64_t *ts)
{
    uint64_t v;
    *value = 0.0;
    *ts = 0;
    while (p < end) {
        uint8_t tag = *p++;
        if (tag == 0x09) {
            if (end - p < 8)
                return 0;
            memcpy(value, p, 8);
            p += 8;
        } else if (tag == 0x10 || tag == 0x18) {
            if (!read_varint(&p, end, 10, &v))
                return 0;
            if (tag == 0x10)
                *ts = (int64_t)v;
        } else {
            return 0;
        }
    }
    return 1;
}

/* A v2 Metadata: type (1), help_ref (3), unit_ref (4). 1 ok, 0 give up. */
static int
read_metadata_v2(const uint8_t *p, const uint8_t *end, uint64_t out[3])
{
    out[0] = out[1] = out[2] = 0;
    while (p < end) {
        uint8_t tag = *p++;
        int k = tag == 0x08 ? 0 : tag == 0x18 ? 1 : tag == 0x20 ? 2 : -1;
        uint64_t v;
        if (k < 0 || !read_varint(&p, end, 10, &v))
            return 0;
        if (k == 0 ? (v > 0x7FFFFFFF) : (v > 0xFFFFFFFFu)) /* enum values as int32; refs as uint32 */
            return 0;
        out[k] = v;
    }
    return 1;
}

/* One TimeSeries [p, end): a new (refs, ts_ms, values, metadata or None) tuple; the series' bytes
 * when it has histograms or exemplars (the pure path parses those); Py_None to give up; NULL on
 * an error. */
static PyObject *
series_v2(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *start = p;
    PyObject *refs = PyList_New(0), *stamps = PyList_New(0), *values = PyList_New(0), *md = NULL, *out = NULL;
    int complex = 0, rc;
    if (refs == NULL || stamps == NULL || values == NULL)
        goto done;
    while (p < end) {
        uint8_t tag = *p++;
        uint64_t len, v;
        if (tag == 0x08) { /* an unpacked labels_refs value */
            if (!read_varint(&p, end, 10, &v) || v > 0xFFFFFFFFu)
                goto give_up;
            if (append_new(refs, PyLong_FromUnsignedLong((unsigned long)v)) < 0)
                goto done;
            continue;
        }
        if (tag != 0x0A && tag != 0x12 && tag != 0x1A && tag != 0x22 && tag != 0x2A)
            goto give_up;
        if (!read_varint(&p, end, 5, &len) || len > (uint64_t)(end - p))
            goto give_up;
        const uint8_t *f = p, *f_end = p + len;
        p = f_end;
        if (tag == 0x0A) {
            rc = read_refs(f, f_end, refs);
            if (rc < 0)
                goto done;
            if (rc == 0)
                goto give_up;
        } else if (tag == 0x12) {
            double value;
            int64_t t;
            if (!read_sample_v2(f, f_end, &value, &t))
                goto give_up;
            if (append_new(stamps, PyLong_FromLongLong(t)) < 0 || append_new(values, PyFloat_FromDouble(value)) < 0)
                goto done;
        } else if (tag == 0x2A) {
            uint64_t m[3];
            if (md != NULL || !read_metadata_v2(f, f_end, m)) /* repeated metadata merges: the pure path */
                goto give_up;
            md = Py_BuildValue("(KKK)", (unsigned long long)m[0], (unsigned long long)m[1], (unsigned long long)m[2]);
            if (md == NULL)
                goto done;
        } else {
            complex = 1; /* histograms (3) or exemplars (4) */
        }
    }
    if (complex) {
        out = PyBytes_FromStringAndSize((const char *)start, end - start);
        goto done;
    }
    PyObject *refs_tuple = PyList_AsTuple(refs);
    if (refs_tuple == NULL)
        goto done;
    out = PyTuple_Pack(4, refs_tuple, stamps, values, md != NULL ? md : Py_None);
    Py_DECREF(refs_tuple);
    goto done;
give_up:
    Py_INCREF(Py_None);
    out = Py_None;
done:
    Py_XDECREF(refs);
    Py_XDECREF(stamps);
    Py_XDECREF(values);
    Py_XDECREF(md);
    return out;
}

static PyObject *
rw_parse_v2(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*:parse_v2", &buf))
        return NULL;
    const uint8_t *p = (const uint8_t *)buf.buf, *end = p + buf.len;
    PyObject *symbols = PyList_New(0), *series = PyList_New(0), *result = NULL;
    if (symbols == NULL || series == NULL)
        goto done;
    while (p < end) {
        uint8_t tag = *p++;
        uint64_t len;
        if ((tag != 0x22 && tag != 0x2A) || !read_varint(&p, end, 5, &len) || len > (uint64_t)(end - p))
            goto give_up;
        const uint8_t *f = p;
        p += len;
        if (tag == 0x22) {
            PyObject *sym = PyUnicode_DecodeUTF8((const char *)f, (Py_ssize_t)len, "strict");
            if (sym == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                    goto done;
                PyErr_Clear(); /* upb refuses it too: the pure path says so */
                goto give_up;
            }
            if (append_new(symbols, sym) < 0)
                goto done;
        } else {
            PyObject *item = series_v2(f, p);
            if (item == NULL)
                goto done;
            if (item == Py_None) {
                Py_DECREF(item);
                goto give_up;
            }
            if (append_new(series, item) < 0)
                goto done;
        }
    }
    result = PyTuple_Pack(2, symbols, series);
    goto done;
give_up:
    Py_INCREF(Py_None);
    result = Py_None;
done:
    Py_XDECREF(symbols);
    Py_XDECREF(series);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", rw_decode, METH_VARARGS,
     "decode(data, table, fresh, index, series, refs, ts_ms, values, lo, hi, add, slow) -> bool\n\n"
     "The remote write 1.0 fast path (see ingest/remote_write.py and this module's source); False if\n"
     "the request's top level is not plain timeseries fields (nothing was done: use the pure path)."},
    {"parse_v2", rw_parse_v2, METH_VARARGS,
     "parse_v2(data) -> (symbols, series) | None\n\n"
     "A remote write 2.0 Request read by hand: symbols as str, and per TimeSeries a tuple (labels_refs,\n"
     "timestamps, values, (type, help_ref, unit_ref) or None), or its bytes when it has histograms or\n"
     "exemplars; None for anything else (unknown or repeated fields, bad UTF-8, malformed): use upb."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rtpm.ingest._rwdecode",
    .m_doc = "Native remote write 1.0 decoding (optional: the pure-Python path works without it).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__rwdecode(void)
{
    if (PyType_Ready(&KnownSeriesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* What remote_write.py checks before using the module: an editable install keeps a module built
     * from an older source until it is rebuilt (pip install -e .), and that one is not used. */
    if (PyModule_AddIntConstant(m, "API_VERSION", RWDECODE_API_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&KnownSeriesType);
    if (PyModule_AddObject(m, "KnownSeries", (PyObject *)&KnownSeriesType) < 0) {
        Py_DECREF(&KnownSeriesType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
