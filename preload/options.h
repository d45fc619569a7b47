/* SPDX-License-Identifier: Apache-2.0 */
/*
 * options.h - every MEMCTL_* environment variable, read once, lazily.
 * docs/options.md lists them for users; this table is the only reader.
 */
#ifndef MEMCTL_OPTIONS_H
#define MEMCTL_OPTIONS_H

#include <stddef.h>

#include "region.h"

struct options {
	char default_tag[TAG_MAX]; /* MEMCTL_DEFAULT_TAG; "" for none */
	int default_stage;         /* MEMCTL_DEFAULT_STAGE: staged by every pause */
	char group[TAG_MAX];       /* MEMCTL_GROUP */
	char runtime_dir[256];     /* MEMCTL_RUNTIME_DIR, else derived */
	char prepare[256];         /* MEMCTL_PREPARE as given; "" for none */
	struct tagset prepare_tags; /* ... parsed, when prepare[0] */
	int socket;                /* MEMCTL_SOCKET: 0 disables the server */
	int log_level;             /* MEMCTL_LOG */
	size_t chunk_bytes;        /* MEMCTL_CHUNK */
	int streams;               /* MEMCTL_STREAMS */
	int pin_threads;           /* MEMCTL_PIN_THREADS */
	int hugepages;             /* MEMCTL_HUGEPAGES */
	size_t slab_bytes;         /* MEMCTL_SLAB; 0: off */
};

/* Read the environment into *o, warning about (and replacing with the
 * default) every invalid value. */
void options_load(struct options *o);

/* Parse "64M", "2G", "4096": bytes, with overflow checks.
 * Returns 0 or -EINVAL / -ERANGE. */
int options_parse_size(const char *s, size_t *out);

#endif /* MEMCTL_OPTIONS_H */
