/* SPDX-License-Identifier: Apache-2.0 */
/*
 * serve.c - `memctl serve`: its options, its token, its listening socket.
 *
 * The endpoints release GPU memory of every process they reach, so the
 * defaults are the careful ones: loopback only; a bearer token, when one
 * is set, read from a file or the environment and never from the command
 * line (where every user sees it in ps); and a non-loopback address is
 * refused unless a token is set. See docs/http.md.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "serve.h"

#define DEFAULT_PORT "9470"
#define TOKEN_ENV "MEMCTL_SERVE_TOKEN"

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[80];  /* as given, for messages */
	int loopback;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: memctl serve [options]\n"
"\n"
"HTTP endpoints for the memctl processes of this user on this machine\n"
"(docs/http.md): POST /release_memory_occupation, /resume_memory_occupation,\n"
"/sleep?level=1|2, /wake_up[?tags=T]; GET /is_sleeping, /status, /metrics.\n"
"\n"
"options:\n"
"  -l, --listen ADDR:PORT        default 127.0.0.1:" DEFAULT_PORT "; [::1]:PORT for IPv6;\n"
"                                port 0 picks a free one (printed)\n"
"  -g, --group NAME              only processes started with MEMCTL_GROUP=NAME\n"
"                                (default: every process of this user)\n"
"  -t, --timeout SECONDS         per process, for change requests (default 60);\n"
"                                status and metrics wait at most 10\n"
"      --token-file FILE         require 'Authorization: Bearer <token>', the\n"
"                                token being FILE's first line; or set\n"
"                                " TOKEN_ENV ". Required to listen on an\n"
"                                address other than loopback\n"
"      --level1-stage TAGS|none  tags /sleep?level=1 keeps in host memory; every\n"
"                                other tag is released (default: weights)\n"
"      --level2-stage TAGS|none  the same for level 2 (default: none)\n"
"      --gate                    pauses hold the GPU calls a process makes while\n"
"                                paused until every tag is resumed, as the CLI's\n"
"                                pause does (not with partial resumes: see\n"
"                                docs/http.md). Either way a pause waits (at most\n"
"                                --timeout) for the work already submitted\n"
"  -h, --help\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "memctl serve: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	return -1;
}

static int is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a))
			return a->s6_addr[12] == 127;
		return IN6_IS_ADDR_LOOPBACK(a);
	}
	return 0;
}

/* "PORT", "A.B.C.D:PORT" or "[V6]:PORT", numeric only. */
static int parse_listen(const char *arg, struct listen_addr *out)
{
	char host[64] = "127.0.0.1";
	const char *colon = strrchr(arg, ':'), *port = colon ? colon + 1 : arg;
	size_t hl = colon ? (size_t)(colon - arg) : 0;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
	long p;
	char *end;

	if (colon != NULL) {
		if (hl >= sizeof(host) || hl == 0)
			return -1;
		if (arg[0] == '[' && arg[hl - 1] == ']')
			arg++, hl -= 2;
		memcpy(host, arg, hl);
		host[hl] = '\0';
	}
	p = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || p < 0 || p > 65535 || port[0] == '-')
		return -1;
	memset(&out->ss, 0, sizeof(out->ss));
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)p);
		out->len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)p);
		out->len = sizeof(*v6);
	} else {
		return -1;
	}
	out->loopback = is_loopback(&out->ss);
	return 0;
}

/* A token: 1 to SERVE_MAX_TOKEN printable characters without spaces
 * (RFC 6750's token68 and more); a trailing newline is not part of it. */
static char *take_token(const char *text, const char *from)
{
	size_t n = strcspn(text, "\r\n"), i;
	char *t;

	if (n == 0 || n > SERVE_MAX_TOKEN) {
		usage_error("the token in %s must be 1 to %d characters", from, SERVE_MAX_TOKEN);
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (text[i] <= ' ' || text[i] >= 0x7f) {
			usage_error("the token in %s holds a space or control character", from);
			return NULL;
		}
	t = strndup(text, n);
	if (t == NULL)
		usage_error("out of memory");
	return t;
}

static char *read_token_file(const char *path)
{
	char buf[SERVE_MAX_TOKEN + 2] = "";
	size_t n;
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		usage_error("--token-file %s: %s", path, strerror(errno));
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return take_token(buf, path);
}

/* The token from --token-file or the environment; one source only. */
static int find_token(const char *file, struct serve_config *cfg)
{
	const char *env = getenv(TOKEN_ENV);

	cfg->token = NULL;
	if (file != NULL && env != NULL)
		return usage_error("both --token-file and " TOKEN_ENV " are set: give one");
	if (file != NULL)
		cfg->token = read_token_file(file);
	else if (env != NULL)
		cfg->token = take_token(env, TOKEN_ENV);
	return (file != NULL || env != NULL) && cfg->token == NULL ? -1 : 0;
}

static int parse_stage(const char *arg, const char *opt, struct tagset *ts)
{
	struct region_err err;

	memset(ts, 0, sizeof(*ts));
	if (strcmp(arg, "none") == 0)
		return 0;
	if (tagset_parse(arg, ts, &err) < 0)
		return usage_error("%s: %s (tags, or none)", opt, err.msg);
	return 0;
}

/* 0 to go on, 1 to exit 0, -1 to exit 2. */
static int parse_options(int argc, char **argv, struct serve_config *cfg,
			 struct listen_addr *addr)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "group", required_argument, NULL, 'g' },
		{ "timeout", required_argument, NULL, 't' },
		{ "token-file", required_argument, NULL, 'F' },
		{ "token", required_argument, NULL, 'K' },
		{ "level1-stage", required_argument, NULL, '1' },
		{ "level2-stage", required_argument, NULL, '2' },
		{ "gate", no_argument, NULL, 'G' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen = "127.0.0.1:" DEFAULT_PORT, *token_file = NULL;
	int ch, rc = 0;

	cfg->timeout_s = 60;
	parse_stage("weights", "", &cfg->level_stage[1]);
	opterr = 0;
	optind = 1;
	while (rc == 0 && (ch = getopt_long(argc, argv, "+:l:g:t:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen = optarg; break;
		case 'g':
			/* As the CLI's -g: an empty name would serve every
			 * process started without a group. */
			if (!tag_valid(optarg))
				rc = usage_error("-g takes a group name (letters, digits, '_', "
						 "'.', '-'), not '%s'", optarg);
			cfg->group = optarg;
			break;
		case 't':
			if (cli_parse_seconds(optarg, &cfg->timeout_s) < 0)
				rc = usage_error("-t takes seconds, 0.001 to 86400, not '%s'", optarg);
			break;
		case 'F': token_file = optarg; break;
		case 'K':
			rc = usage_error("--token: a token on the command line is visible to every "
					 "user (ps); use --token-file FILE or " TOKEN_ENV);
			break;
		case '1': rc = parse_stage(optarg, "--level1-stage", &cfg->level_stage[1]); break;
		case '2': rc = parse_stage(optarg, "--level2-stage", &cfg->level_stage[2]); break;
		case 'G': cfg->gate = 1; break;
		case 'h': usage(stdout); return 1;
		case ':': rc = usage_error("option '%s' needs a value", argv[optind - 1]); break;
		default: rc = usage_error("unknown option '%s' (memctl serve --help)", argv[optind - 1]);
		}
	}
	if (rc == 0 && optind < argc)
		rc = usage_error("unexpected argument '%s'", argv[optind]);
	if (rc == 0 && parse_listen(listen, addr) < 0)
		rc = usage_error("--listen takes PORT, ADDR:PORT or [IPV6]:PORT with a numeric "
				 "address, not '%s'", listen);
	snprintf(addr->text, sizeof(addr->text), "%s", listen);
	cfg->view_timeout_s = cfg->timeout_s < SERVE_VIEW_TIMEOUT_S ? cfg->timeout_s :
			      SERVE_VIEW_TIMEOUT_S;
	return rc == 0 ? find_token(token_file, cfg) : rc;
}

/* The listening socket, and the address it got (port 0: the kernel's
 * choice) as "http://addr:port" in `url`. -1 after saying why. */
static int open_listener(const struct listen_addr *a, char *url, size_t len)
{
	struct sockaddr_storage got;
	socklen_t gl = sizeof(got);
	char host[INET6_ADDRSTRLEN];
	int one = 1, fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&got, &gl) < 0) {
		fprintf(stderr, "memctl serve: cannot listen on %s: %s\n", a->text, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (got.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&got)->sin6_addr, host, sizeof(host));
		snprintf(url, len, "http://[%s]:%u", host,
			 ntohs(((struct sockaddr_in6 *)&got)->sin6_port));
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&got)->sin_addr, host, sizeof(host));
		snprintf(url, len, "http://%s:%u", host, ntohs(((struct sockaddr_in *)&got)->sin_port));
	}
	return fd;
}

/* The socket directory, checked as the CLI checks it; it may not exist
 * yet (no process has started), but must never be someone else's. */
static int check_dir(struct serve_config *cfg)
{
	struct region_err err;
	char why[400];
	int rc = fanout_dir(cfg->dir, sizeof(cfg->dir), why, sizeof(why), &err);

	if (why[0] != '\0')
		fprintf(stderr, "memctl serve: %s\n", why);
	if (rc < 0)
		fprintf(stderr, "memctl serve: %s; not serving\n", err.msg);
	return rc;
}

int serve_main(int argc, char **argv)
{
	static struct serve_config cfg;
	struct listen_addr addr;
	char url[128], who[160];
	int rc = parse_options(argc, argv, &cfg, &addr), fd;

	if (rc != 0)
		return rc < 0 ? 2 : 0;
	if (!addr.loopback && cfg.token == NULL) {
		usage_error("refusing to listen on %s without a token: whoever reaches it could "
			    "release the GPU memory of every process; set " TOKEN_ENV " or "
			    "--token-file, or listen on 127.0.0.1", addr.text);
		return 2;
	}
	if (check_dir(&cfg) < 0)
		return 1;
	fd = open_listener(&addr, url, sizeof(url));
	if (fd < 0)
		return 1;
	if (cfg.group != NULL)
		snprintf(who, sizeof(who), "the processes of group %s", cfg.group);
	else
		snprintf(who, sizeof(who), "every process of uid %u", (unsigned)geteuid());
	printf("memctl serve: listening on %s for %s (sockets in %s), %s\n", url, who, cfg.dir,
	       cfg.token ? "bearer token required" : "no token");
	fflush(stdout);
	return serve_http_run(&cfg, fd);
}
