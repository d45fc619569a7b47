/* SPDX-License-Identifier: Apache-2.0 */
/*
 * untagged.c - the device memory memctl passes through untagged, counted
 * so that `status` can say how much of a process's memory a pause would
 * not touch.
 *
 * The driver reports only device-wide figures, which say nothing about
 * one process among several. memctl sees every allocation made through
 * the calls it interposes, tagged or not, so it counts what it lets by:
 * each entry is the address (or, for cuMemCreate, the handle) and its
 * bytes, from the allocating call to the freeing one. Its own lock, held
 * for a hash insert or delete only; nothing here waits for a request.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct entry {
	uint64_t key;
	uint64_t bytes;
	enum untagged_kind kind;
	UT_hash_handle hh;
};

static struct {
	pthread_mutex_t lock;
	struct entry *all;
	uint64_t bytes[UNTAGGED_KINDS];
} ledger = { .lock = PTHREAD_MUTEX_INITIALIZER };

void region_untagged_add(enum untagged_kind kind, uint64_t key, uint64_t bytes)
{
	struct entry *e = malloc(sizeof(*e)), *old;
	int added;

	if (e == NULL)
		return; /* a figure less exact, never a failed allocation */
	e->key = key;
	e->bytes = bytes;
	e->kind = kind;
	pthread_mutex_lock(&ledger.lock);
	/* The same key again: the driver reused an address whose free we
	 * did not see (a path memctl does not interpose). */
	HASH_FIND(hh, ledger.all, &key, sizeof(key), old);
	if (old != NULL) {
		HASH_DEL(ledger.all, old);
		ledger.bytes[old->kind] -= old->bytes;
	}
	HASH_ADD(hh, ledger.all, key, sizeof(e->key), e);
	added = e->hh.tbl != NULL;
	if (added)
		ledger.bytes[kind] += bytes;
	pthread_mutex_unlock(&ledger.lock);
	free(old);
	if (!added)
		free(e); /* the hash could not grow: a figure less exact */
}

int region_untagged_drop(uint64_t key)
{
	struct entry *e;

	pthread_mutex_lock(&ledger.lock);
	HASH_FIND(hh, ledger.all, &key, sizeof(key), e);
	if (e != NULL) {
		HASH_DEL(ledger.all, e);
		ledger.bytes[e->kind] -= e->bytes;
	}
	pthread_mutex_unlock(&ledger.lock);
	if (e == NULL)
		return -ENOENT;
	free(e);
	return 0;
}

void region_untagged_totals(uint64_t bytes[UNTAGGED_KINDS])
{
	int k;

	pthread_mutex_lock(&ledger.lock);
	for (k = 0; k < UNTAGGED_KINDS; k++)
		bytes[k] = ledger.bytes[k];
	pthread_mutex_unlock(&ledger.lock);
}

void untagged_forget(void)
{
	/* As region_forget_all: the ledger may be mid-change in the child;
	 * start empty without walking or freeing what was inherited. */
	pthread_mutex_init(&ledger.lock, NULL);
	ledger.all = NULL;
	memset(ledger.bytes, 0, sizeof(ledger.bytes));
}
