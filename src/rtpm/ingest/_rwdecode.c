/* Native fast path of the remote write 1.0 decoder (ingest/remote_write.py).
 *
 * decode(data, known, fresh, index, series, refs, ts_ms, values, lo, hi, add, slow) reads a
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
 *     fields as its labels key. When that key is in known or fresh (series the pure path has
 *     already validated), its samples are appended to refs/ts_ms/values (inside [lo, hi]) or handed
 *     to add(labels, t, value, i) (outside the window: the pure path records why).
 *   - Every other TimeSeries (unknown labels, exemplars, histograms, other layouts, malformed
 *     contents) is handed to slow(raw_bytes, i), in request order, so the batch is exactly the one
 *     the pure path builds.
 *
 * The labels key and dictionaries are the pure path's own (known/fresh: key -> validated Labels;
 * index: Labels -> ref in the batch; series: the batch's Labels list).
 * Nothing here allocates more than one object per sample beyond the columns' ints and floats, and
 * every read is bounded by the enclosing message's length.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

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

/* The Labels of a labels key already validated by the pure path, or NULL (no error set). */
static PyObject *
known_labels(PyObject *key, PyObject *known, PyObject *fresh)
{
    PyObject *labels = PyDict_GetItemWithError(known, key);
    if (labels != NULL && PyObject_IsTrue(labels) == 1)
        return labels;
    if (PyErr_Occurred())
        return NULL;
    labels = PyDict_GetItemWithError(fresh, key);
    if (labels != NULL && PyObject_IsTrue(labels) == 1)
        return labels;
    return NULL;
}

/* The batch ref of the series with labels key `key` if the pure path has validated it (known or
 * fresh), added to the batch (index, series) if new there; a new reference, or NULL with no error
 * set when the key is not known, or NULL with an error. ref_of is not consulted or filled: index
 * gives the same ref (one hash of the Labels, by PyDict_SetDefault), and the pure path's
 * _series_of falls back to it the same way. */
static PyObject *
series_ref(PyObject *key, PyObject *known, PyObject *fresh, PyObject *index, PyObject *series)
{
    PyObject *labels = known_labels(key, known, fresh);
    if (labels == NULL)
        return NULL;
    Py_INCREF(labels);
    PyObject *new_ref = PyLong_FromSsize_t(PyList_GET_SIZE(series));
    PyObject *ref = new_ref == NULL ? NULL : PyDict_SetDefault(index, labels, new_ref);
    if (ref != NULL) {
        Py_INCREF(ref);
        if (ref == new_ref && PyList_Append(series, labels) < 0)
            Py_CLEAR(ref);
    }
    Py_XDECREF(new_ref);
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

static PyObject *
rw_decode(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *known, *fresh, *index, *series, *refs, *ts_col, *value_col, *add, *slow;
    long long lo, hi;
    if (!PyArg_ParseTuple(args, "y*O!O!O!O!O!O!O!LLOO", &buf, &PyDict_Type, &known,
                          &PyDict_Type, &fresh, &PyDict_Type, &index, &PyList_Type, &series, &PyList_Type, &refs,
                          &PyList_Type, &ts_col, &PyList_Type, &value_col, &lo, &hi, &add, &slow))
        return NULL;
    const uint8_t *data = (const uint8_t *)buf.buf;
    const uint8_t *data_end = data + buf.len;
    Py_ssize_t count;
    if (!scan_request(data, data_end, &count)) {
        PyBuffer_Release(&buf);
        Py_RETURN_FALSE;
    }
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
            PyObject *key = PyBytes_FromStringAndSize((const char *)start, labels_end - start);
            if (key == NULL)
                goto error;
            ref = series_ref(key, known, fresh, index, series);
            Py_DECREF(key);
            if (ref == NULL && PyErr_Occurred())
                goto error;
        }
        if (ref == NULL) {
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
                PyObject *r = PyObject_CallFunction(add, "OLdn", labels, (long long)t, v, i);
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
    PyBuffer_Release(&buf);
    Py_RETURN_TRUE;
error:
    Py_XDECREF(last_ts);
    PyBuffer_Release(&buf);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode", rw_decode, METH_VARARGS,
     "decode(data, known, fresh, index, series, refs, ts_ms, values, lo, hi, add, slow) -> bool\n\n"
     "The remote write 1.0 fast path (see ingest/remote_write.py); False if the request's top level\n"
     "is not plain timeseries fields (nothing was done: use the pure path)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rtpm.ingest._rwdecode", "Native remote write 1.0 decoding (optional).", -1, methods,
};

PyMODINIT_FUNC
PyInit__rwdecode(void)
{
    return PyModule_Create(&module);
}
