/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tags.c - tag names and the comma-separated tag lists of requests.
 *
 * Tags are strict identifiers so that they read the same in the C API, on
 * the wire and on a command line, and never need quoting.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "region.h"

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

int tagset_parse(const char *spec, struct tagset *out, struct region_err *err)
{
	const char *p = spec;

	memset(out, 0, sizeof(*out));
	if (spec == NULL || spec[0] == '\0') {
		out->all = 1;
		return 0;
	}
	for (;;) {
		size_t len = strcspn(p, ",");

		if (out->n == TAGSET_MAX) {
			snprintf(err->msg, sizeof(err->msg),
				 "too many tags (at most %d)", TAGSET_MAX);
			return err->code = -EINVAL;
		}
		if (len == 0 || len >= TAG_MAX) {
			snprintf(err->msg, sizeof(err->msg),
				 "malformed tag list '%.64s': empty or over %d characters",
				 spec, TAG_MAX - 1);
			return err->code = -EINVAL;
		}
		memcpy(out->names[out->n], p, len);
		out->names[out->n][len] = '\0';
		if (!tag_valid(out->names[out->n])) {
			snprintf(err->msg, sizeof(err->msg),
				 "malformed tag '%s': use letters, digits, '_', '.', '-'",
				 out->names[out->n]);
			return err->code = -EINVAL;
		}
		if (!tagset_has(out, out->names[out->n]))
			out->n++;
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
		snprintf(buf, len, "*");
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
