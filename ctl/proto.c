/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto.c - parsing requests and writing and reading JSON replies.
 *
 * The request grammar is deliberately tiny (a verb and key=value words) so
 * that the parser that faces the socket is short enough to read in one
 * sitting and to fuzz (test/fuzz/fuzz_proto.c). Every byte is checked
 * against a bound before it is read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "region.h"

static const char *verbs[] = {
	[VERB_HELLO] = "hello",
	[VERB_STATUS] = "status",
	[VERB_PAUSE] = "pause",
	[VERB_RESUME] = "resume",
	[VERB_PREPARE] = "prepare",
	[VERB_RELEASE_HOST] = "release_host",
};

const char *proto_verb_name(enum proto_verb v)
{
	return (unsigned)v < sizeof(verbs) / sizeof(verbs[0]) ? verbs[v] : "?";
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
	case -ECONNREFUSED: return "ECONNREFUSED";
	case -ESRCH: return "ESRCH";
	case -EPROTO: return "EPROTO";
	default: return "EUNKNOWN";
	}
}

static int fail(char *err, size_t errlen, const char *fmt, const char *word, size_t wlen)
{
	char shown[48];
	size_t i, n = wlen < sizeof(shown) - 1 ? wlen : sizeof(shown) - 1;

	/* Echo at most a short, printable prefix of what was sent. */
	for (i = 0; i < n; i++)
		shown[i] = (word[i] >= 0x20 && word[i] < 0x7f && word[i] != '"' &&
			    word[i] != '\\') ? word[i] : '?';
	shown[n] = '\0';
	snprintf(err, errlen, fmt, shown);
	return -EINVAL;
}

static int word_is(const char *w, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

int proto_parse(const char *line, size_t len, struct proto_req *req,
		char *err, size_t errlen)
{
	size_t i = 0, n;
	const char *w;
	int have_verb = 0;
	unsigned v;

	memset(req, 0, sizeof(*req));
	if (len > PROTO_MAX_LINE)
		return fail(err, errlen, "request longer than the limit%s", "", 0);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	for (;;) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		w = line + i;
		for (n = 0; i < len && line[i] != ' '; i++, n++)
			if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f)
				return fail(err, errlen, "control or non-ASCII byte in '%s'", w, n + 1);
		if (!have_verb) {
			for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++)
				if (word_is(w, n, verbs[v]))
					break;
			if (v == sizeof(verbs) / sizeof(verbs[0]))
				return fail(err, errlen, "unknown verb '%s'", w, n);
			req->verb = (enum proto_verb)v;
			have_verb = 1;
			continue;
		}
		{
			const char *eq = memchr(w, '=', n);
			size_t klen, vlen;
			const char *val;

			if (eq == NULL)
				return fail(err, errlen, "expected key=value, got '%s'", w, n);
			klen = (size_t)(eq - w);
			val = eq + 1;
			vlen = n - klen - 1;
			if (word_is(w, klen, "tags")) {
				struct region_err rerr;
				struct tagset ts;

				if (vlen == 0)
					return fail(err, errlen, "tags= needs a value (tags=* for all)%s", "", 0);
				if (vlen >= sizeof(req->tags))
					return fail(err, errlen, "tags too long%s", "", 0);
				memcpy(req->tags, val, vlen);
				req->tags[vlen] = '\0';
				if (word_is(val, vlen, "*") || word_is(val, vlen, "all"))
					req->tags[0] = '\0';
				else if (tagset_parse(req->tags, &ts, &rerr) < 0) {
					snprintf(err, errlen, "%s", rerr.msg);
					return -EINVAL;
				}
			} else if (word_is(w, klen, "stage")) {
				if (word_is(val, vlen, "cpu"))
					req->stage_cpu = 1;
				else if (word_is(val, vlen, "none"))
					req->stage_cpu = 0;
				else
					return fail(err, errlen, "stage must be cpu or none, got '%s'", val, vlen);
			} else if (word_is(w, klen, "release_host")) {
				if (word_is(val, vlen, "1"))
					req->release_host = 1;
				else if (word_is(val, vlen, "0"))
					req->release_host = 0;
				else
					return fail(err, errlen, "release_host must be 0 or 1, got '%s'", val, vlen);
			} else {
				return fail(err, errlen, "unknown key '%s'", w, klen);
			}
		}
	}
	if (!have_verb)
		return fail(err, errlen, "empty request%s", "", 0);
	if (req->stage_cpu && req->verb != VERB_PAUSE)
		return fail(err, errlen, "stage= applies to pause only%s", "", 0);
	if (req->release_host && req->verb != VERB_RESUME)
		return fail(err, errlen, "release_host= applies to resume only%s", "", 0);
	return 0;
}

/* ---- JSON writing ---------------------------------------------------- */

void jb_init(struct jbuf *j, char *buf, size_t cap)
{
	j->buf = buf;
	j->cap = cap;
	j->len = 0;
	j->overflow = 0;
	j->need_comma = 0;
	if (cap)
		buf[0] = '\0';
}

static void put(struct jbuf *j, const char *s, size_t n)
{
	if (j->overflow || j->len + n + 1 > j->cap) {
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

/* ---- JSON reading (our own replies only) ----------------------------- */

static const char *find_value(const char *json, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	return p ? p + strlen(pat) : NULL;
}

int json_u64(const char *json, const char *key, uint64_t *out)
{
	const char *p = find_value(json, key);
	char *end;

	if (p == NULL || *p < '0' || *p > '9')
		return -ENOENT;
	*out = strtoull(p, &end, 10);
	return 0;
}

int json_double(const char *json, const char *key, double *out)
{
	const char *p = find_value(json, key);
	char *end;

	if (p == NULL)
		return -ENOENT;
	*out = strtod(p, &end);
	return end == p ? -ENOENT : 0;
}

int json_bool(const char *json, const char *key, int *out)
{
	const char *p = find_value(json, key);

	if (p == NULL)
		return -ENOENT;
	if (strncmp(p, "true", 4) == 0)
		*out = 1;
	else if (strncmp(p, "false", 5) == 0)
		*out = 0;
	else
		return -ENOENT;
	return 0;
}

int json_str(const char *json, const char *key, char *out, size_t len)
{
	const char *p = find_value(json, key);
	size_t k = 0;

	if (p == NULL || *p != '"' || len == 0)
		return -ENOENT;
	for (p++; *p && *p != '"'; p++) {
		char c = *p;

		if (c == '\\' && p[1]) {
			p++;
			c = *p == 'u' ? '?' : *p;
			if (*p == 'u')
				p += strnlen(p, 5) >= 5 ? 4 : 0;
		}
		if (k + 1 < len)
			out[k++] = c;
	}
	out[k] = '\0';
	return 0;
}
