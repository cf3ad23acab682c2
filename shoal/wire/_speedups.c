/* The wire's hot loops in C: an optional build of what _frames.py,
 * _codec.py and _chunks.py do in Python (docs/decisions.md, "The wire's hot
 * loops in C").
 *
 * Rules:
 *
 * 1. Python is the reference. Every function here does what a named Python
 *    function does, for the common case only, and hands anything else to
 *    that function: an unusual message, a failed check, any exception. So
 *    errors, their messages and every other observable behaviour come from
 *    the Python code, by construction.
 * 2. Nothing here parses msgpack: bodies are decoded and messages packed by
 *    msgpack's own C code, as in Python. The only bytes read here are the
 *    4-byte frame lengths, each checked against the bounds of its buffer.
 * 3. SPEEDUPS_ABI changes with any change of what the functions take or
 *    return; the loader (_native.py) refuses a build of another ABI, so a
 *    stale build left in a checkout is never used.
 * 4. setup() is called once, by _codec.py at import, with the Python objects
 *    used here; until it is, the codec functions raise RuntimeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define SPEEDUPS_ABI 4
#define HEADER_SIZE 4

/* Set by setup(); strong references kept for the interpreter's life. */
static PyObject *unpackb;       /* msgpack.unpackb */
static PyObject *unpack_kwnames; /* ("ext_hook",): msgpack >= 1.0's defaults do the rest */
static PyObject *py_ext_hook;   /* _terms.ext_hook: every ext but a cached pid */
static PyObject *pid_from_ext;  /* _terms._pid_from_ext: payload bytes -> Pid */
static PyObject *pid_ext;       /* _terms._pid_ext: Pid -> ExtType */
static PyObject *finish;        /* _codec._finish: decode_body after the unpack */
static PyObject *py_decode;     /* _codec.py_decode_body: the whole reference */
static PyObject *scalars;       /* _terms.SCALAR_TYPES */
static PyObject *plain;         /* _codec.PLAIN_TYPES: messages(), taken as they come */
static PyTypeObject *pid_type;
static PyTypeObject *call_type;
static PyTypeObject *reply_type;
static PyObject *call_slots[5];  /* member descriptors, in wire order */
static PyObject *reply_slots[3];
static PyObject *code_call;     /* 16 */
static PyObject *code_reply;    /* 17 */
static PyObject *c_ext_hook;    /* this module's ext_hook, passed to unpackb */

/* ---- frames ---------------------------------------------------------- */

/* A frame size limit: an int (a caller passes anything else to the
 * reference); above 2**63 takes every size, below 0 none, as Python's
 * comparison does. 0 when read, -1 with an error set. */
static int
frame_limit(const char *who, PyObject *value, unsigned long long *limit, int *takes_none)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s(): limit must be an int", who);
        return -1;
    }
    int overflow = 0;
    long long signed_limit = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (signed_limit == -1 && PyErr_Occurred())
        return -1;
    *takes_none = overflow < 0 || (overflow == 0 && signed_limit < 0);
    *limit = overflow > 0 ? ~0ULL : *takes_none ? 0 : (unsigned long long)signed_limit;
    return 0;
}

/* What starts at data[pos] (end: the data's length): a whole frame whose
 * body has *size bytes, a part of one (more bytes needed), or a frame whose
 * length is zero or above the limit (*size: that length). */
enum { FRAME_WHOLE, FRAME_PART, FRAME_BAD };

static int
frame_at(const unsigned char *data, Py_ssize_t pos, Py_ssize_t end,
         unsigned long long limit, int takes_none, unsigned long long *size)
{
    if (end - pos < HEADER_SIZE)
        return FRAME_PART;
    const unsigned char *h = data + pos;
    *size = ((unsigned long long)h[0] << 24) | ((unsigned long long)h[1] << 16) |
            ((unsigned long long)h[2] << 8) | (unsigned long long)h[3];
    if (*size == 0 || takes_none || *size > limit)
        return FRAME_BAD;
    /* end - pos - HEADER_SIZE >= 0 here; compared unsigned, no overflow */
    if (*size > (unsigned long long)(end - pos - HEADER_SIZE))
        return FRAME_PART;
    return FRAME_WHOLE;
}

PyDoc_STRVAR(split_doc,
"split(data, pos, limit, max_bodies) -> (bodies, pos, bad)\n\n"
"The loop of FrameDecoder.feed (_frames.py_split is the reference): the\n"
"complete frames of data from pos, at most max_bodies of them (-1: no\n"
"limit). bad is the first length found zero or above limit, else -1.");

static PyObject *
split(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "split() takes 4 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    int takes_none;
    unsigned long long limit;
    if (frame_limit("split", args[2], &limit, &takes_none) < 0)
        return NULL;
    Py_ssize_t max_bodies = PyLong_AsSsize_t(args[3]);
    if (max_bodies == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t end = view.len;
    long long bad = -1;
    PyObject *bodies = PyList_New(0);
    if (bodies == NULL)
        goto fail;
    if (pos < 0 || pos > end) {
        PyErr_SetString(PyExc_ValueError, "split(): pos outside the data");
        goto fail;
    }
    unsigned long long size;
    while (max_bodies < 0 || PyList_GET_SIZE(bodies) < max_bodies) {
        int at = frame_at(data, pos, end, limit, takes_none, &size);
        if (at == FRAME_BAD)
            bad = (long long)size;
        if (at != FRAME_WHOLE)
            break;
        PyObject *body = PyBytes_FromStringAndSize(
            (const char *)(data + pos + HEADER_SIZE), (Py_ssize_t)size);
        if (body == NULL)
            goto fail;
        int appended = PyList_Append(bodies, body);
        Py_DECREF(body);
        if (appended < 0)
            goto fail;
        pos += HEADER_SIZE + (Py_ssize_t)size;
    }
    PyBuffer_Release(&view);
    PyObject *result = Py_BuildValue("(NnL)", bodies, pos, bad);
    return result;
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(bodies);
    return NULL;
}

/* ---- decoding -------------------------------------------------------- */

PyDoc_STRVAR(ext_hook_doc,
"ext_hook(code, data): _terms.ext_hook, with the cached pids looked up here.");

static PyObject *
ext_hook(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 2 && pid_from_ext != NULL && PyLong_CheckExact(args[0])
            && PyBytes_CheckExact(args[1])) {
        long code = PyLong_AsLong(args[0]);
        if (code == -1 && PyErr_Occurred())
            PyErr_Clear();  /* not a pid's code: the reference refuses it */
        else if (code == 1) {
            PyObject *pid = PyDict_GetItemWithError(pid_from_ext, args[1]);
            if (pid != NULL)
                return Py_NewRef(pid);
            if (PyErr_Occurred())
                return NULL;
        }
    }
    if (py_ext_hook == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "shoal.wire._speedups.setup() not called");
        return NULL;
    }
    return PyObject_Vectorcall(py_ext_hook, args, nargs, NULL);
}

/* 0 <= value < 2**63 for an exact int; -1 with no error set otherwise. */
static int
is_u63(PyObject *value)
{
    if (!PyLong_CheckExact(value))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return overflow == 0 && v >= 0;
}

/* A message of `type` with its slots set from items[0..n): the checks were
 * made by the caller (the fast paths of _codec._build_call/_build_reply). */
static PyObject *
build(PyTypeObject *type, PyObject **slots, PyObject *const *items, int n)
{
    PyObject *msg = type->tp_alloc(type, 0);
    if (msg == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        descrsetfunc set = Py_TYPE(slots[i])->tp_descr_set;
        if (set == NULL || set(slots[i], msg, items[i]) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "message slot is not settable");
            Py_DECREF(msg);
            return NULL;
        }
    }
    return msg;
}

PyDoc_STRVAR(decode_body_doc,
"decode_body(body): _codec.decode_body, with CALL and REPLY built here.");

static PyObject *
decode_body(PyObject *module, PyObject *body)
{
    if (unpackb == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "shoal.wire._speedups.setup() not called");
        return NULL;
    }
    PyObject *args[2] = {body, c_ext_hook};
    PyObject *fields = PyObject_Vectorcall(unpackb, args, 1, unpack_kwnames);
    if (fields == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        /* Rule 1: the reference raises the error, with its own message. */
        PyErr_Clear();
        return PyObject_CallOneArg(py_decode, body);
    }
    if (PyList_CheckExact(fields) && PyList_GET_SIZE(fields) > 0) {
        PyObject **items = ((PyListObject *)fields)->ob_item;
        Py_ssize_t n = PyList_GET_SIZE(fields);
        PyObject *code = items[0];
        if (PyLong_CheckExact(code)) {
            long c = PyLong_AsLong(code);
            if (c == -1 && PyErr_Occurred())
                PyErr_Clear();
            else if (c == 16 && n == 6) {
                PyObject *sender = items[2];
                if (is_u63(items[1]) && Py_IS_TYPE(items[3], pid_type)
                        && (sender == Py_None || Py_IS_TYPE(sender, pid_type))
                        && is_u63(items[5])) {
                    PyObject *msg = build(call_type, call_slots, items + 1, 5);
                    Py_DECREF(fields);
                    return msg;
                }
            }
            else if (c == 17 && n == 4) {
                if (is_u63(items[1]) && is_u63(items[3])) {
                    PyObject *msg = build(reply_type, reply_slots, items + 1, 3);
                    Py_DECREF(fields);
                    return msg;
                }
            }
        }
    }
    PyObject *msg = PyObject_CallOneArg(finish, fields);
    Py_DECREF(fields);
    return msg;
}

/* The message of the frame at *pos (advanced past it) when it is whole and
 * holds a plain message or an ignorable one (*msg: None): 1. 0 when the
 * frame is not taken here (partial, bad length, undecodable, not plain: the
 * reference's path decides), -1 with an error set. */
static int
next_plain(PyObject *module, const unsigned char *data, Py_ssize_t *pos, Py_ssize_t end,
           unsigned long long limit, int takes_none, PyObject **msg)
{
    unsigned long long size;
    if (frame_at(data, *pos, end, limit, takes_none, &size) != FRAME_WHOLE)
        return 0;
    PyObject *body = PyBytes_FromStringAndSize(
        (const char *)(data + *pos + HEADER_SIZE), (Py_ssize_t)size);
    if (body == NULL)
        return -1;
    PyObject *decoded = decode_body(module, body);
    Py_DECREF(body);
    if (decoded == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyErr_Clear();  /* rule 1: the reference decodes it again and raises */
        return 0;
    }
    if (decoded != Py_None) {
        PyTypeObject *type = Py_TYPE(decoded);
        if (type != call_type && type != reply_type) {
            int found = PySet_Contains(plain, (PyObject *)type);
            if (found <= 0) {
                Py_DECREF(decoded);
                return found;  /* 0: not taken as it comes, the reference's path */
            }
        }
    }
    *pos += HEADER_SIZE + (Py_ssize_t)size;
    *msg = decoded;
    return 1;
}

/* (first, second), both references stolen (either may be NULL: an error
 * is set, and NULL returned). */
static PyObject *
pair(PyObject *first, PyObject *second)
{
    PyObject *result = first != NULL && second != NULL ? PyTuple_New(2) : NULL;
    if (result == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(second);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, first);
    PyTuple_SET_ITEM(result, 1, second);
    return result;
}

/* The start of messages() and deliver(): nargs checked, the setup done, the
 * limit (args[1]) read and the buffer of data (args[0]) held (released by
 * the caller). 0, or -1 with an error set. */
static int
open_chunk(const char *who, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t expected,
           Py_buffer *view, unsigned long long *limit, int *takes_none)
{
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", who, expected);
        return -1;
    }
    if (plain == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "shoal.wire._speedups.setup() not called");
        return -1;
    }
    if (frame_limit(who, args[1], limit, takes_none) < 0)
        return -1;
    return PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE);
}

PyDoc_STRVAR(messages_doc,
"messages(data, limit) -> (msgs, pos)\n\n"
"Connection.receive_data's common case once open (_chunks.py_messages is the\n"
"reference): the messages of data's complete frames from its start, each\n"
"decoded as decode_body does (an ignorable one skipped), up to the first\n"
"frame that is incomplete, has a length zero or above limit, fails to\n"
"decode, or holds a message not of the plain types (a handshake step, BYE);\n"
"pos is where that frame starts, len(data) when every frame was taken.");

static PyObject *
messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int takes_none;
    unsigned long long limit;
    Py_buffer view;
    if (open_chunk("messages", args, nargs, 2, &view, &limit, &takes_none) < 0)
        return NULL;
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t end = view.len, pos = 0;
    PyObject *msgs = PyList_New(0), *msg;
    if (msgs == NULL)
        goto fail;
    int got;
    while ((got = next_plain(module, data, &pos, end, limit, takes_none, &msg)) > 0) {
        int appended = msg == Py_None ? 0 : PyList_Append(msgs, msg);
        Py_DECREF(msg);
        if (appended < 0)
            goto fail;
    }
    if (got < 0)
        goto fail;
    PyBuffer_Release(&view);
    return pair(msgs, PyLong_FromSsize_t(pos));
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(msgs);
    return NULL;
}

PyDoc_STRVAR(deliver_doc,
"deliver(data, limit, handlers, target, failed) -> (pos, count)\n\n"
"Connection.dispatch's common case (_chunks.py_deliver is the reference): the\n"
"messages of data's frames taken as messages() takes them, each passed as it\n"
"is decoded to handlers[type(msg)](target, msg), up to the first frame\n"
"messages() would not take or whose message has no handler; an Exception\n"
"a handler raises is passed to failed(exc) and the next message follows.\n"
"pos is where the frame not taken starts (len(data) when every frame was\n"
"taken), count the messages passed to handlers.");

static PyObject *
deliver(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int takes_none;
    unsigned long long limit;
    Py_buffer view;
    if (open_chunk("deliver", args, nargs, 5, &view, &limit, &takes_none) < 0)
        return NULL;
    PyObject *handlers = args[2], *failed = args[4];
    if (!PyDict_CheckExact(handlers)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "deliver() handlers must be a dict");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t end = view.len, pos = 0, count = 0, at = 0;
    PyObject *msg, *call[2] = {args[3], NULL};
    int got;
    while ((got = next_plain(module, data, &at, end, limit, takes_none, &msg)) > 0) {
        if (msg == Py_None) {  /* an ignorable message: skipped */
            Py_DECREF(msg);
            pos = at;
            continue;
        }
        PyObject *handler = PyDict_GetItemWithError(handlers, (PyObject *)Py_TYPE(msg));
        if (handler == NULL) {
            Py_DECREF(msg);
            if (PyErr_Occurred())
                goto fail;
            break;  /* no handler: this frame takes the connection's path */
        }
        pos = at;
        count++;
        call[1] = msg;
        Py_INCREF(handler);  /* a handler may change the dict */
        PyObject *result = PyObject_Vectorcall(handler, call, 2, NULL);
        Py_DECREF(handler);
        Py_DECREF(msg);
        if (result == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                goto fail;
            PyObject *type, *value, *traceback;
            PyErr_Fetch(&type, &value, &traceback);
            PyErr_NormalizeException(&type, &value, &traceback);
            if (traceback != NULL)
                PyException_SetTraceback(value, traceback);
            Py_XDECREF(type);
            Py_XDECREF(traceback);
            result = PyObject_CallOneArg(failed, value);
            Py_DECREF(value);
            if (result == NULL)
                goto fail;
        }
        Py_DECREF(result);
    }
    if (got < 0)
        goto fail;
    PyBuffer_Release(&view);
    return pair(PyLong_FromSsize_t(pos), PyLong_FromSsize_t(count));
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* ---- encoding -------------------------------------------------------- */

/* `pid`'s cached ExtType if it is a pid with one, else `pid` itself (the
 * packer's default hook encodes it and fills the cache). New reference. */
static PyObject *
packed_pid(PyObject *pid)
{
    if (Py_IS_TYPE(pid, pid_type)) {
        PyObject *ext = PyDict_GetItemWithError(pid_ext, pid);
        if (ext != NULL)
            return Py_NewRef(ext);
        if (PyErr_Occurred())
            PyErr_Clear();  /* the packer's hook meets it again and reports it */
    }
    return Py_NewRef(pid);
}

/* pack(items) framed: the u32 length and the body, or None where the
 * reference must decide (a term that is not a scalar, a packing error, a
 * body over max_frame). Steals the references in items. */
static PyObject *
frame(PyObject *pack, PyObject *max_frame, PyObject **items, Py_ssize_t n)
{
    PyObject *array = PyList_New(n);
    if (array == NULL) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_DECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(array, i, items[i]);
    PyObject *body = PyObject_CallOneArg(pack, array);
    Py_DECREF(array);
    if (body == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (!PyBytes_CheckExact(body)) {
        Py_DECREF(body);
        Py_RETURN_NONE;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    Py_ssize_t limit = PyLong_AsSsize_t(max_frame);
    if (limit == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_DECREF(body);
        Py_RETURN_NONE;
    }
    if (size > limit || size > 0xFFFFFFFFLL) {
        Py_DECREF(body);
        Py_RETURN_NONE;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + size);
    if (out == NULL) {
        Py_DECREF(body);
        return NULL;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    p[0] = (unsigned char)((size >> 24) & 0xFF);
    p[1] = (unsigned char)((size >> 16) & 0xFF);
    p[2] = (unsigned char)((size >> 8) & 0xFF);
    p[3] = (unsigned char)(size & 0xFF);
    memcpy(p + HEADER_SIZE, PyBytes_AS_STRING(body), (size_t)size);
    Py_DECREF(body);
    return out;
}

static int
is_scalar(PyObject *term)
{
    int found = PySet_Contains(scalars, (PyObject *)Py_TYPE(term));
    if (found < 0) {
        PyErr_Clear();
        return 0;
    }
    return found;
}

/* The frame of a fast path, or, where it gives None, fallback(*rest) (no
 * fallback: None). Steals the reference to frame. */
static PyObject *
or_fallback(PyObject *frame, PyObject *fallback, PyObject *const *rest, Py_ssize_t n)
{
    if (frame != Py_None || fallback == Py_None)
        return frame;
    Py_DECREF(frame);
    return PyObject_Vectorcall(fallback, rest, n, NULL);
}

PyDoc_STRVAR(encode_call_doc,
"encode_call(pack, max_frame, fallback, ref, sender, to, request, timeout_ms)\n\n"
"Encoder.encode_call's frame for a scalar request, else\n"
"fallback(ref, sender, to, request, timeout_ms) (None: None).");

static PyObject *
encode_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "encode_call() takes 8 arguments");
        return NULL;
    }
    PyObject *out;
    if (scalars == NULL || !is_scalar(args[6]))
        out = Py_NewRef(Py_None);
    else {
        PyObject *items[6] = {
            Py_NewRef(code_call), Py_NewRef(args[3]), packed_pid(args[4]),
            packed_pid(args[5]), Py_NewRef(args[6]), Py_NewRef(args[7]),
        };
        out = frame(args[0], args[1], items, 6);
        if (out == NULL)
            return NULL;
    }
    return or_fallback(out, args[2], args + 3, 5);
}

PyDoc_STRVAR(encode_reply_doc,
"encode_reply(pack, max_frame, fallback, ref, value, queue_len)\n\n"
"Encoder.encode_reply's frame for a scalar value, else\n"
"fallback(ref, value, queue_len) (None: None).");

static PyObject *
encode_reply(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "encode_reply() takes 6 arguments");
        return NULL;
    }
    PyObject *out;
    if (scalars == NULL || !is_scalar(args[4]))
        out = Py_NewRef(Py_None);
    else {
        PyObject *items[4] = {
            Py_NewRef(code_reply), Py_NewRef(args[3]), Py_NewRef(args[4]), Py_NewRef(args[5]),
        };
        out = frame(args[0], args[1], items, 4);
        if (out == NULL)
            return NULL;
    }
    return or_fallback(out, args[2], args + 3, 3);
}

/* ---- set-up ---------------------------------------------------------- */

static int
keep(PyObject **slot, PyObject *value)
{
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 0;
}

static int
keep_slots(PyObject **slots, PyObject *seq, Py_ssize_t n, const char *what)
{
    if (!PyTuple_CheckExact(seq) || PyTuple_GET_SIZE(seq) != n) {
        PyErr_Format(PyExc_TypeError, "setup(): %s needs a tuple of %zd descriptors", what, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(seq, i);
        if (Py_TYPE(d)->tp_descr_set == NULL) {
            PyErr_Format(PyExc_TypeError, "setup(): %s[%zd] is not a settable slot", what, i);
            return -1;
        }
        keep(&slots[i], d);
    }
    return 0;
}

PyDoc_STRVAR(setup_doc,
"setup(unpackb, ext_hook, pid_from_ext, pid_ext, finish, decode, scalars,\n"
"      pid_type, call_type, call_slots, reply_type, reply_slots, plain)\n\n"
"Hand over the Python objects the codec functions use (rule 4).");

static PyObject *
setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "setup() takes 13 arguments");
        return NULL;
    }
    if (!PyDict_CheckExact(args[2]) || !PyDict_CheckExact(args[3])
            || !PyAnySet_CheckExact(args[6]) || !PyType_Check(args[7])
            || !PyType_Check(args[8]) || !PyType_Check(args[10])
            || !PyAnySet_CheckExact(args[12])) {
        PyErr_SetString(PyExc_TypeError, "setup(): arguments of the wrong types");
        return NULL;
    }
    if (keep_slots(call_slots, args[9], 5, "call_slots") < 0
            || keep_slots(reply_slots, args[11], 3, "reply_slots") < 0)
        return NULL;
    keep(&unpackb, args[0]);
    keep(&py_ext_hook, args[1]);
    keep(&pid_from_ext, args[2]);
    keep(&pid_ext, args[3]);
    keep(&finish, args[4]);
    keep(&py_decode, args[5]);
    keep(&scalars, args[6]);
    keep(&plain, args[12]);
    keep((PyObject **)&pid_type, args[7]);
    keep((PyObject **)&call_type, args[8]);
    keep((PyObject **)&reply_type, args[10]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"split", (PyCFunction)(void (*)(void))split, METH_FASTCALL, split_doc},
    {"ext_hook", (PyCFunction)(void (*)(void))ext_hook, METH_FASTCALL, ext_hook_doc},
    {"decode_body", (PyCFunction)decode_body, METH_O, decode_body_doc},
    {"messages", (PyCFunction)(void (*)(void))messages, METH_FASTCALL, messages_doc},
    {"deliver", (PyCFunction)(void (*)(void))deliver, METH_FASTCALL, deliver_doc},
    {"encode_call", (PyCFunction)(void (*)(void))encode_call, METH_FASTCALL, encode_call_doc},
    {"encode_reply", (PyCFunction)(void (*)(void))encode_reply, METH_FASTCALL,
     encode_reply_doc},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL, setup_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "shoal.wire._speedups",
    .m_doc = "The wire's hot loops in C (optional; shoal/wire/_frames.py, _codec.py and\n"
             "_chunks.py are the reference). See the rules at the top of _speedups.c.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntConstant(module, "SPEEDUPS_ABI", SPEEDUPS_ABI) < 0)
        goto fail;
    if (unpack_kwnames == NULL) {
        unpack_kwnames = Py_BuildValue("(s)", "ext_hook");
        code_call = PyLong_FromLong(16);
        code_reply = PyLong_FromLong(17);
        if (unpack_kwnames == NULL || code_call == NULL || code_reply == NULL)
            goto fail;
    }
    if (c_ext_hook == NULL) {
        c_ext_hook = PyObject_GetAttrString(module, "ext_hook");
        if (c_ext_hook == NULL)
            goto fail;
    }
    return module;
fail:
    Py_DECREF(module);
    return NULL;
}
