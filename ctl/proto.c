/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto.c - the verb table, parsing and writing request lines, and the
 * JSON writer of replies.
 *
 * The request grammar is deliberately tiny (a verb and key=value words) so
 * that the parser that faces the socket is short enough to read in one
 * sitting and to fuzz (test/fuzz/fuzz_proto.c). Every byte is checked
 * against a bound before it is read. Replies are read by the CLI with a
 * JSON library (jansson); the library writes them with the small writer
 * below, which needs nothing but libc.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* A verb that reports figures is a change: it runs on the registry, one
 * request at a time. */
const struct verb_def proto_verbs[VERB_COUNT] = {
#define PROTO_VERB_ROW(id, wire, cli, sends, keys, run, figs, help) \
	[VERB_##id] = { wire, cli, VERB_##sends, keys, (figs) != 0, figs, help },
	PROTO_VERBS(PROTO_VERB_ROW)
#undef PROTO_VERB_ROW
};

const struct key_def proto_keys[KEY_COUNT] = {
	[KEY_TAGS] = { "tags", "--tags", "--tags T[,T...]|all" },
	[KEY_STAGE] = { "stage", "--stage", "[--stage cpu|none]" },
	[KEY_RELEASE_HOST] = { "release_host", "--release-host", "[--release-host]" },
	[KEY_GATE] = { "gate", "--no-gate", "[--no-gate]" },
	[KEY_TIMEOUT_MS] = { "timeout_ms", "--timeout", "[--timeout SECONDS]" },
};

const struct figure_def proto_figures[FIG_COUNT] = {
	[FIG_ALLOCATIONS] = { "allocations", "allocations" },
	[FIG_RELEASED_BYTES] = { "released_bytes", "released" },
	[FIG_RESTORED_BYTES] = { "restored_bytes", "restored" },
	[FIG_COPIED_BYTES] = { "copied_bytes", "copied" },
	[FIG_HOST_NEW_BYTES] = { "host_new_bytes", "host memory pinned" },
	[FIG_HOST_FREED_BYTES] = { "host_freed_bytes", "host memory freed" },
};

uint64_t proto_figure_value(enum proto_figure f, const struct region_report *rep)
{
	switch (f) {
	case FIG_ALLOCATIONS: return rep->allocations;
	case FIG_RELEASED_BYTES:
	case FIG_RESTORED_BYTES: return rep->device_bytes;
	case FIG_COPIED_BYTES: return rep->copied_bytes;
	case FIG_HOST_NEW_BYTES: return rep->host_new_bytes;
	case FIG_HOST_FREED_BYTES: return rep->host_freed_bytes;
	case FIG_COUNT: break;
	}
	return 0;
}

int proto_verb_by_cli(const char *name)
{
	int v;

	for (v = 0; v < VERB_COUNT; v++)
		if (proto_verbs[v].cli != NULL && strcmp(proto_verbs[v].cli, name) == 0)
			return v;
	return -1;
}

const char *proto_errname(int code)
{
	switch (code) {
	case -ENOENT: return "ENOENT";
	case -EINVAL: return "EINVAL";
	case -ENOMEM: return "ENOMEM";
	case -EIO: return "EIO";
	case -ENOSYS: return "ENOSYS";
	case -EBUSY: return "EBUSY";
	case -EACCES: return "EACCES";
	case -E2BIG: return "E2BIG";
	case -ETIMEDOUT: return "ETIMEDOUT";
	case -ECANCELED: return "ECANCELED";
	case -ENODATA: return "ENODATA";
	case -ECONNREFUSED: return "ECONNREFUSED";
	case -ESRCH: return "ESRCH";
	case -EPROTO: return "EPROTO";
	case -EAGAIN: return "EAGAIN";
	case -EOVERFLOW: return "EOVERFLOW";
	default: return "EUNKNOWN";
	}
}

/* ---- parsing a request line ------------------------------------------ */

/* -EINVAL with a message that echoes at most a short, printable prefix of
 * what was sent. */
static int fail(struct region_err *err, const char *fmt, const char *word, size_t wlen)
{
	char shown[48];
	size_t i, n = wlen < sizeof(shown) - 1 ? wlen : sizeof(shown) - 1;

	for (i = 0; i < n; i++)
		shown[i] = (word[i] >= 0x20 && word[i] < 0x7f && word[i] != '"' &&
			    word[i] != '\\') ? word[i] : '?';
	shown[n] = '\0';
	return region_err_set(err, -EINVAL, fmt, shown);
}

static int word_is(const char *w, size_t n, const char *lit)
{
	return lit != NULL && strlen(lit) == n && memcmp(w, lit, n) == 0;
}

/* The next space-separated word of line[*at..len): 1 and (*w, *n), 0 at
 * the end, -EINVAL for a control or non-ASCII byte. */
static int next_word(const char *line, size_t len, size_t *at, const char **w,
		     size_t *n, struct region_err *err)
{
	size_t i = *at;

	while (i < len && line[i] == ' ')
		i++;
	if (i == len)
		return 0;
	*w = line + i;
	for (*n = 0; i < len && line[i] != ' '; i++, (*n)++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f)
			return fail(err, "control or non-ASCII byte in '%s'", *w, *n + 1);
	*at = i;
	return 1;
}

/* 1..PROTO_MAX_TIMEOUT_MS in decimal digits, nothing else. */
static int parse_timeout(const char *val, size_t vlen, long long *out,
			 struct region_err *err)
{
	long long v = 0;
	size_t i;

	for (i = 0; i < vlen; i++) {
		if (val[i] < '0' || val[i] > '9')
			break;
		v = v * 10 + (val[i] - '0');
		if (v > PROTO_MAX_TIMEOUT_MS)
			break;
	}
	if (vlen == 0 || i < vlen || v == 0)
		return fail(err, "timeout_ms must be 1 to 86400000 (milliseconds), got '%s'",
			    val, vlen);
	*out = v;
	return 0;
}

static int parse_tags(const char *val, size_t vlen, struct tagset *out,
		      struct region_err *err)
{
	char spec[TAGSET_TEXT_MAX];

	if (vlen == 0)
		return fail(err, "tags= needs a value: name the tags, or all%s", "", 0);
	if (vlen >= sizeof(spec))
		return fail(err, "tag list longer than the limit%s", "", 0);
	memcpy(spec, val, vlen);
	spec[vlen] = '\0';
	return tagset_parse(spec, out, err);
}

static int parse_value(struct proto_req *req, enum proto_key key, const char *val,
		       size_t vlen, struct region_err *err)
{
	switch (key) {
	case KEY_TAGS:
		return parse_tags(val, vlen, &req->rq.tags, err);
	case KEY_STAGE:
		if (word_is(val, vlen, "cpu"))
			req->rq.flags |= MEMCTL_STAGE_CPU;
		else if (!word_is(val, vlen, "none"))
			return fail(err, "stage must be cpu or none, got '%s'", val, vlen);
		return 0;
	case KEY_RELEASE_HOST:
		if (word_is(val, vlen, "1"))
			req->rq.flags |= MEMCTL_RELEASE_HOST;
		else if (!word_is(val, vlen, "0"))
			return fail(err, "release_host must be 0 or 1, got '%s'", val, vlen);
		return 0;
	case KEY_GATE:
		if (word_is(val, vlen, "1"))
			req->rq.flags |= MEMCTL_GATE;
		else if (!word_is(val, vlen, "0"))
			return fail(err, "gate must be 0 or 1, got '%s'", val, vlen);
		return 0;
	case KEY_TIMEOUT_MS:
		return parse_timeout(val, vlen, &req->timeout_ms, err);
	case KEY_COUNT:
		break;
	}
	return fail(err, "unknown key%s", "", 0);
}

/* One key=value word; `seen` collects the keys so far. */
static int parse_pair(struct proto_req *req, unsigned *seen, const char *w, size_t n,
		      struct region_err *err)
{
	const char *eq = memchr(w, '=', n);
	unsigned takes = proto_verbs[req->verb].keys | KEY_BIT(KEY_TIMEOUT_MS);
	size_t klen;
	int k;

	if (eq == NULL)
		return fail(err, "expected key=value, got '%s'", w, n);
	klen = (size_t)(eq - w);
	for (k = 0; k < KEY_COUNT; k++)
		if (word_is(w, klen, proto_keys[k].wire))
			break;
	if (k == KEY_COUNT)
		return fail(err, "unknown key '%s'", w, klen);
	if (*seen & KEY_BIT(k))
		return fail(err, "key '%s' given twice", w, klen);
	if (!(takes & KEY_BIT(k)))
		return region_err_set(err, -EINVAL, "%s= does not apply to %s",
				      proto_keys[k].wire, proto_verbs[req->verb].wire);
	*seen |= KEY_BIT(k);
	return parse_value(req, (enum proto_key)k, eq + 1, n - klen - 1, err);
}

int proto_parse(const char *line, size_t len, struct proto_req *req,
		struct region_err *err)
{
	size_t at = 0, n;
	const char *w;
	unsigned seen = 0;
	int rc, v;

	memset(req, 0, sizeof(*req));
	if (len > PROTO_MAX_LINE)
		return fail(err, "request longer than the limit%s", "", 0);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	rc = next_word(line, len, &at, &w, &n, err);
	if (rc <= 0)
		return rc < 0 ? rc : fail(err, "empty request%s", "", 0);
	for (v = 0; v < VERB_COUNT; v++)
		if (word_is(w, n, proto_verbs[v].wire))
			break;
	if (v == VERB_COUNT)
		return fail(err, "unknown verb '%s'", w, n);
	req->verb = (enum verb)v;
	while ((rc = next_word(line, len, &at, &w, &n, err)) > 0)
		if ((rc = parse_pair(req, &seen, w, n, err)) < 0)
			return rc;
	if (rc < 0)
		return rc;
	if ((proto_verbs[v].keys & KEY_BIT(KEY_TAGS)) && !(seen & KEY_BIT(KEY_TAGS)))
		return region_err_set(err, -EINVAL, "%s needs tags=: name the tags, or all",
				      proto_verbs[v].wire);
	return 0;
}

/* ---- writing a request line ------------------------------------------ */

static int append(char *buf, size_t len, size_t *used, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	va_list ap;
	int w;

	if (*used >= len)
		return -E2BIG;
	va_start(ap, fmt);
	w = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= len - *used)
		return -E2BIG;
	*used += (size_t)w;
	return 0;
}

int proto_format(const struct proto_req *req, char *buf, size_t len)
{
	const struct verb_def *v = &proto_verbs[proto_verbs[req->verb].sends];
	char tags[TAGSET_TEXT_MAX];
	size_t used = 0;
	int rc;

	rc = append(buf, len, &used, "%s", v->wire);
	if (rc == 0 && (v->keys & KEY_BIT(KEY_TAGS))) {
		tagset_format(&req->rq.tags, tags, sizeof(tags));
		rc = append(buf, len, &used, " tags=%s", tags);
	}
	if (rc == 0 && (v->keys & KEY_BIT(KEY_STAGE)))
		rc = append(buf, len, &used, " stage=%s",
			    req->rq.flags & MEMCTL_STAGE_CPU ? "cpu" : "none");
	if (rc == 0 && (req->rq.flags & MEMCTL_RELEASE_HOST))
		rc = append(buf, len, &used, " release_host=1");
	if (rc == 0 && (v->keys & KEY_BIT(KEY_GATE)) && (req->rq.flags & MEMCTL_GATE))
		rc = append(buf, len, &used, " gate=1");
	if (rc == 0 && req->timeout_ms > 0)
		rc = append(buf, len, &used, " timeout_ms=%lld", req->timeout_ms);
	return rc < 0 ? rc : (int)used;
}

/* ---- JSON writing ---------------------------------------------------- */

void jb_init_grow(struct jbuf *j, size_t max)
{
	memset(j, 0, sizeof(*j));
	j->max = max;
}

void jb_free(struct jbuf *j)
{
	free(j->buf);
	j->buf = NULL;
	j->len = j->cap = 0;
}

/* Room for n more bytes and a NUL: 1, growing the buffer up to its
 * limit, else 0. */
static int room(struct jbuf *j, size_t n)
{
	size_t want = j->len + n + 1, cap = j->cap ? j->cap : 1024;
	char *b;

	if (want <= j->cap)
		return 1;
	if (want > j->max)
		return 0;
	while (cap < want)
		cap *= 2;
	if (cap > j->max)
		cap = j->max;
	b = realloc(j->buf, cap);
	if (b == NULL)
		return 0;
	j->buf = b;
	j->cap = cap;
	return 1;
}

static void put(struct jbuf *j, const char *s, size_t n)
{
	if (j->overflow || !room(j, n)) {
		j->overflow = 1;
		return;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = '\0';
}

void jb_raw(struct jbuf *j, const char *s)
{
	put(j, s, strlen(s));
}

static void put_escaped(struct jbuf *j, const char *s)
{
	put(j, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(j, esc, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(j, esc, 6);
		} else {
			put(j, (const char *)&c, 1);
		}
	}
	put(j, "\"", 1);
}

void jb_key(struct jbuf *j, const char *key)
{
	if (j->need_comma)
		put(j, ",", 1);
	j->need_comma = 1;
	if (key != NULL) {
		put_escaped(j, key);
		put(j, ":", 1);
	}
}

void jb_str(struct jbuf *j, const char *key, const char *val)
{
	jb_key(j, key);
	put_escaped(j, val);
}

void jb_u64(struct jbuf *j, const char *key, uint64_t val)
{
	char num[32];

	jb_key(j, key);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)val);
	jb_raw(j, num);
}

void jb_i64(struct jbuf *j, const char *key, int64_t val)
{
	char num[32];

	jb_key(j, key);
	snprintf(num, sizeof(num), "%lld", (long long)val);
	jb_raw(j, num);
}

void jb_double(struct jbuf *j, const char *key, double val)
{
	char num[48];

	jb_key(j, key);
	snprintf(num, sizeof(num), "%.3f", val);
	jb_raw(j, num);
}

void jb_bool(struct jbuf *j, const char *key, int val)
{
	jb_key(j, key);
	jb_raw(j, val ? "true" : "false");
}

void jb_null(struct jbuf *j, const char *key)
{
	jb_key(j, key);
	jb_raw(j, "null");
}

void jb_open(struct jbuf *j, const char *key, char bracket)
{
	char b[2] = { bracket, '\0' };

	jb_key(j, key);
	jb_raw(j, b);
	j->need_comma = 0;
}

void jb_close(struct jbuf *j, char bracket)
{
	char b[2] = { bracket, '\0' };

	jb_raw(j, b);
	j->need_comma = 1;
}

