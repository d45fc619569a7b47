/* SPDX-License-Identifier: Apache-2.0 */
/*
 * options.c - the MEMCTL_* environment, in one table.
 *
 * Read once on first use, never at load time. Invalid values warn once and
 * fall back to the default, so a typo never stops the host process.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "options.h"
#include "sockdir.h"

int options_parse_size(const char *s, size_t *out)
{
	unsigned long long v, mul = 1;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	case 't': case 'T': mul = 1ull << 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end != '\0')
		return -EINVAL;
	if (v > SIZE_MAX / mul)
		return -ERANGE;
	*out = (size_t)(v * mul);
	return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

enum opt_kind { OPT_TAG, OPT_TAGS, OPT_SIZE, OPT_INT, OPT_LEVEL };

struct opt {
	const char *name;
	enum opt_kind kind;
	size_t offset;
	long lo, hi;   /* OPT_INT bounds, OPT_SIZE minimum in lo */
	const char *doc;
};

#define OFF(field) offsetof(struct options, field)

static const struct opt table[] = {
	{ "MEMCTL_DEFAULT_TAG", OPT_TAG, OFF(default_tag), 0, 0,
	  "tag for every allocation made outside a region" },
	{ "MEMCTL_DEFAULT_STAGE", OPT_INT, OFF(default_stage), 0, 1,
	  "1: allocations under the default tag are staged by every pause" },
	{ "MEMCTL_GROUP", OPT_TAG, OFF(group), 0, 0,
	  "group name the CLI can select (--group)" },
	{ "MEMCTL_PREPARE", OPT_TAGS, OFF(prepare), 0, 0,
	  "tags whose host buffers are prepared once allocations settle" },
	{ "MEMCTL_SOCKET", OPT_INT, OFF(socket), 0, 1,
	  "0: no control socket" },
	{ "MEMCTL_LOG", OPT_LEVEL, OFF(log_level), 0, 0,
	  "quiet, warn, info or debug" },
	{ "MEMCTL_CHUNK", OPT_SIZE, OFF(chunk_bytes), 1 << 20, 0,
	  "bytes per staging copy" },
	{ "MEMCTL_STREAMS", OPT_INT, OFF(streams), 1, 16,
	  "staging streams per device" },
	{ "MEMCTL_PIN_THREADS", OPT_INT, OFF(pin_threads), 1, 64,
	  "threads populating and pinning host buffers" },
	{ "MEMCTL_HUGEPAGES", OPT_INT, OFF(hugepages), 0, 1,
	  "1: transparent huge pages for host buffers, 0: none" },
	{ "MEMCTL_SLAB", OPT_SIZE, OFF(slab_bytes), 0, 0,
	  "slab size: tagged allocations of at most a quarter of it share slabs; 0: off" },
};

static int parse_level(const char *s, int *out)
{
	static const char *names[] = { "quiet", "warn", "info", "debug" };
	int i;

	for (i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	return -EINVAL;
}

/* One variable's value into its field of o: 0, or -EINVAL / -ERANGE. */
static int parse_option(const struct opt *t, const char *v, struct options *o)
{
	char *field = (char *)o + t->offset;
	size_t sz;
	int rc;

	switch (t->kind) {
	case OPT_TAG:
		if (!tag_valid(v))
			return -EINVAL;
		snprintf(field, TAG_MAX, "%s", v);
		return 0;
	case OPT_TAGS: /* MEMCTL_PREPARE, kept as given and parsed once */
		if (strlen(v) >= sizeof(o->prepare) ||
		    tagset_parse(v, &o->prepare_tags, NULL) < 0)
			return -EINVAL;
		snprintf(field, sizeof(o->prepare), "%s", v);
		return 0;
	case OPT_SIZE:
		rc = options_parse_size(v, &sz);
		if (rc == 0 && sz < (size_t)t->lo)
			rc = -ERANGE;
		if (rc == 0)
			*(size_t *)(void *)field = sz;
		return rc;
	case OPT_INT:
		return parse_int(v, t->lo, t->hi, (int *)(void *)field);
	case OPT_LEVEL:
		return parse_level(v, (int *)(void *)field);
	}
	return -EINVAL;
}

void options_load(struct options *o)
{
	char why[400];
	size_t i;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	memset(o, 0, sizeof(*o));
	o->socket = 1;
	o->log_level = LOG_WARN;
	o->chunk_bytes = 32u << 20;
	o->streams = 4;
	o->pin_threads = ncpu > 8 ? 8 : (ncpu < 1 ? 1 : (int)ncpu);
	o->hugepages = 1;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const char *v = getenv(table[i].name);

		if (v != NULL && v[0] != '\0' && parse_option(&table[i], v, o) < 0)
			memctl_log_warnx("ignoring %s='%.64s' (%s); using the default",
					 table[i].name, v, table[i].doc);
	}
	sockdir_path(o->runtime_dir, sizeof(o->runtime_dir), why, sizeof(why));
	if (why[0] != '\0')
		memctl_log_warnx("%s", why);
}
