/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tags.c - tag names, the comma-separated tag lists of requests, and the
 * error helper every module reports through.
 *
 * Tags are strict identifiers so that they read the same in the C API, on
 * the wire and on a command line, and never need quoting. A list is parsed
 * here once per request, whoever sent it; "every tag" must be asked for by
 * name (`all` or `*`), so that an empty or blank list, the usual result of
 * a script's unset variable, is an error instead of a request for all.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "region.h"

int region_err_set(struct region_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	return code;
}

static int tag_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

int tag_valid(const char *tag)
{
	size_t i;

	if (tag == NULL || tag[0] == '\0')
		return 0;
	for (i = 0; tag[i] != '\0'; i++)
		if (i >= TAG_MAX - 1 || !tag_char(tag[i]))
			return 0;
	return 1;
}

static int is_all(const char *name)
{
	return strcmp(name, "all") == 0 || strcmp(name, "*") == 0;
}

/* The list holds nothing but blanks and commas. */
static int blank(const char *spec)
{
	return spec[strspn(spec, " \t,")] == '\0';
}

/* Add one name of `spec` (len bytes at p) to out. */
static int add_name(struct tagset *out, const char *spec, const char *p, size_t len,
		    struct region_err *err)
{
	char name[TAG_MAX];

	if (len == 0)
		return region_err_set(err, -EINVAL,
				      "malformed tag list '%.64s': an empty name", spec);
	if (len >= TAG_MAX)
		return region_err_set(err, -EINVAL, "tag '%.64s...' is longer than %d characters",
				      p, TAG_MAX - 1);
	memcpy(name, p, len);
	name[len] = '\0';
	if (is_all(name))
		return region_err_set(err, -EINVAL,
				      "'%s' means every tag and cannot be listed with other tags",
				      name);
	if (!tag_valid(name))
		return region_err_set(err, -EINVAL,
				      "malformed tag '%s': use letters, digits, '_', '.', '-'", name);
	if (tagset_has(out, name))
		return 0;
	if (out->n == TAGSET_MAX)
		return region_err_set(err, -EINVAL, "too many tags (at most %d)", TAGSET_MAX);
	memcpy(out->names[out->n++], name, len + 1);
	return 0;
}

int tagset_parse(const char *spec, struct tagset *out, struct region_err *err)
{
	const char *p = spec;
	int rc;

	memset(out, 0, sizeof(*out));
	if (spec == NULL || is_all(spec)) {
		out->all = 1;
		return 0;
	}
	if (blank(spec))
		return region_err_set(err, -EINVAL, "empty tag list '%.64s': name the tags, "
				      "or all for every tag", spec);
	for (;;) {
		size_t len = strcspn(p, ",");

		rc = add_name(out, spec, p, len, err);
		if (rc < 0)
			return rc;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

int tagset_has(const struct tagset *ts, const char *tag)
{
	int i;

	if (ts->all)
		return 1;
	for (i = 0; i < ts->n; i++)
		if (strcmp(ts->names[i], tag) == 0)
			return 1;
	return 0;
}

void tagset_format(const struct tagset *ts, char *buf, size_t len)
{
	size_t used = 0;
	int i;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (ts->all) {
		snprintf(buf, len, "all");
		return;
	}
	for (i = 0; i < ts->n && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? "," : "",
				 ts->names[i]);
		if (w < 0)
			return;
		used += (size_t)w;
	}
}
