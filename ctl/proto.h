/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto.h - the request vocabulary and the control protocol
 * (docs/protocol.md): what the C API, the server inside the process and
 * the memctl CLI all mean by a request.
 *
 * A request is one line of at most PROTO_MAX_LINE bytes:
 *     <verb> [key=value]...
 * and every reply is one line holding one JSON object with "ok".
 * proto_parse turns a line into a struct proto_req, whose tags are parsed
 * once (struct tagset) and travel with it to region/; proto_format writes
 * the line back, so the CLI sends exactly what the server reads.
 */
#ifndef MEMCTL_PROTO_H
#define MEMCTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "region.h"

#define PROTO_VERSION 3
#define PROTO_MAX_LINE 4096
/* A reply is as long as it needs to be (status lists every tag); this only
 * stops a runaway: about 300k tags, which no process comes near. */
#define PROTO_MAX_REPLY (64u << 20)
#define PROTO_MAX_TIMEOUT_MS 86400000LL /* a day */

/* The keys a request may carry; on the command line, options. */
enum proto_key { KEY_TAGS, KEY_STAGE, KEY_RELEASE_HOST, KEY_GATE, KEY_TIMEOUT_MS, KEY_COUNT };
#define KEY_BIT(k) (1u << (k))

/* The figures a change request's reply carries (struct region_report). */
enum proto_figure {
	FIG_ALLOCATIONS,     /* allocations whose state changed */
	FIG_RELEASED_BYTES,  /* device bytes released */
	FIG_RESTORED_BYTES,  /* device bytes mapped back */
	FIG_COPIED_BYTES,    /* bytes copied between device and host */
	FIG_HOST_NEW_BYTES,  /* host bytes obtained and pinned */
	FIG_HOST_FREED_BYTES, /* host bytes given back */
	FIG_COUNT
};
#define FIG_BIT(f) (1u << (f))

#define FIGS_PAUSE (FIG_BIT(FIG_ALLOCATIONS) | FIG_BIT(FIG_RELEASED_BYTES) | \
		    FIG_BIT(FIG_COPIED_BYTES) | FIG_BIT(FIG_HOST_NEW_BYTES))
#define FIGS_RESUME (FIG_BIT(FIG_ALLOCATIONS) | FIG_BIT(FIG_RESTORED_BYTES) | \
		     FIG_BIT(FIG_COPIED_BYTES))
#define FIGS_PREPARE (FIG_BIT(FIG_ALLOCATIONS) | FIG_BIT(FIG_HOST_NEW_BYTES))
#define FIGS_RELEASE_HOST (FIG_BIT(FIG_ALLOCATIONS) | FIG_BIT(FIG_HOST_FREED_BYTES))

/*
 * Every verb, once:
 *   X(id, wire name, CLI name, sends, keys, region call, figures, help)
 * `sends` is the verb whose request goes on the wire (ls shows status);
 * `keys` those it takes besides timeout_ms, which every verb takes; the
 * call runs a change request (region/, or preload/drain.h where the gate
 * is involved; NULL: answered by the server itself); `figures` its success
 * reply carries (a failed request's message, written by region/, says what
 * it had done). proto.c expands it into proto_verbs (names, keys, figures:
 * the parser, the CLI, the server) and preload/interpose.c into the
 * handlers of the C API and the server's backend. gate and ungate are the
 * two phases' helpers of a group pause (the CLI sends them; no command).
 */
#define PROTO_VERBS(X)                                                             \
	X(HELLO, "hello", NULL, HELLO, 0, NULL, 0,                                  \
	  "protocol and library version, the running request")                     \
	X(LS, NULL, "ls", STATUS, 0, NULL, 0,                                       \
	  "processes that can be controlled")                                       \
	X(STATUS, "status", "status", STATUS, 0, NULL, 0,                           \
	  "per-tag state and bytes of each target, the running request")           \
	X(PAUSE, "pause", "pause", PAUSE,                                            \
	  KEY_BIT(KEY_TAGS) | KEY_BIT(KEY_STAGE) | KEY_BIT(KEY_GATE), gating_pause,  \
	  FIGS_PAUSE,                                                                \
	  "release device memory (--stage cpu: keep the contents in host memory;" \
	  " GPU work waits until resume unless --no-gate)")                        \
	X(RESUME, "resume", "resume", RESUME,                                        \
	  KEY_BIT(KEY_TAGS) | KEY_BIT(KEY_RELEASE_HOST), gating_resume, FIGS_RESUME, \
	  "map memory back; staged contents are copied back")                      \
	X(PREPARE, "prepare", "prepare", PREPARE, KEY_BIT(KEY_TAGS), region_prepare, \
	  FIGS_PREPARE,                                                              \
	  "pin host buffers now, so the first staged pause runs at copy speed")    \
	X(RELEASE_HOST, "release_host", "release-host", RELEASE_HOST,                \
	  KEY_BIT(KEY_TAGS), region_release_host, FIGS_RELEASE_HOST,                \
	  "give back kept host buffers (never staged contents)")                   \
	X(GATE, "gate", NULL, GATE, KEY_BIT(KEY_TAGS) | KEY_BIT(KEY_STAGE),          \
	  gating_gate, FIGS_PREPARE,                                                 \
	  "group pause, first phase: close the gate, drain, pin host buffers")     \
	X(UNGATE, "ungate", NULL, UNGATE, 0, NULL, 0,                               \
	  "open a gate the first phase closed")

enum verb {
#define PROTO_VERB_ENUM(id, wire, cli, sends, keys, run, figs, help) VERB_##id,
	PROTO_VERBS(PROTO_VERB_ENUM)
#undef PROTO_VERB_ENUM
	VERB_COUNT
};

struct verb_def {
	const char *wire;  /* NULL: a view of the command line only */
	const char *cli;   /* NULL: not a command */
	enum verb sends;
	unsigned keys;     /* KEY_BIT()s besides timeout_ms */
	int changes;       /* runs on the registry, one request at a time */
	unsigned figures;  /* FIG_BIT()s */
	const char *help;
};

struct key_def {
	const char *wire;    /* tags */
	const char *option;  /* --tags (--no-gate for gate: the CLI's default is on) */
	const char *synopsis; /* for the CLI's usage */
};

struct figure_def {
	const char *wire;   /* released_bytes */
	const char *human;  /* released */
	int shown_if_zero;  /* the CLI prints it even when 0 */
};

extern const struct verb_def proto_verbs[VERB_COUNT];
extern const struct key_def proto_keys[KEY_COUNT];
extern const struct figure_def proto_figures[FIG_COUNT];

/* A request as every party holds it. */
struct proto_req {
	enum verb verb;
	struct region_req rq;  /* tags (all when absent), flags; the server
				* fills deadline_ms and cancel */
	long long timeout_ms;  /* timeout_ms=: the client's deadline; 0 none */
};

/* Parse one request line (without its newline; need not be
 * NUL-terminated; never read past len). Returns 0, or -EINVAL with a
 * one-line message in err: unknown verb or key, a key given twice or not
 * taken by the verb, a malformed value. */
int proto_parse(const char *line, size_t len, struct proto_req *req,
		struct region_err *err);
/* Write `req` as the line proto_parse reads back (without newline; with
 * timeout_ms only when set). Returns its length, or -E2BIG. */
int proto_format(const struct proto_req *req, char *buf, size_t len);

/* Verb and key by their name on the command line; -1 when none. */
int proto_verb_by_cli(const char *name);
/* A figure's value in a report. */
uint64_t proto_figure_value(enum proto_figure f, const struct region_report *rep);
/* "ENOENT" for -ENOENT and so on; "EUNKNOWN" otherwise. */
const char *proto_errname(int code);

/* A bounded JSON writer: appends to a malloc'ed buffer that grows up to
 * `max` bytes, and marks overflow instead of growing past it (jb_free
 * releases the buffer). */
struct jbuf {
	char *buf;
	size_t len, cap, max;
	int overflow;
	int need_comma;
};

void jb_init_grow(struct jbuf *j, size_t max);
void jb_free(struct jbuf *j);
void jb_raw(struct jbuf *j, const char *s);
void jb_key(struct jbuf *j, const char *key);
void jb_str(struct jbuf *j, const char *key, const char *val);
void jb_u64(struct jbuf *j, const char *key, uint64_t val);
void jb_i64(struct jbuf *j, const char *key, int64_t val);
void jb_double(struct jbuf *j, const char *key, double val);
void jb_bool(struct jbuf *j, const char *key, int val);
void jb_null(struct jbuf *j, const char *key);
void jb_open(struct jbuf *j, const char *key, char bracket); /* key NULL in arrays */
void jb_close(struct jbuf *j, char bracket);

#endif /* MEMCTL_PROTO_H */
