/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_proto.c - libFuzzer target for the request parser that faces the
 * control socket, and for the JSON writer that echoes parts of requests
 * back. `make fuzz` builds it with clang and runs it for FUZZ_SECONDS.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_req req;
	char err[256], out[512];
	struct jbuf j;
	int rc;

	/* The server hands the parser a buffer that is not NUL-terminated;
	 * copy to an exact-size heap block so ASan sees any over-read. */
	char *line = malloc(size ? size : 1);

	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	rc = proto_parse(line, size, &req, err, sizeof(err));
	if (rc != 0 && rc != -EINVAL)
		abort();
	if (rc == 0) {
		if ((unsigned)req.verb > VERB_RELEASE_HOST || strlen(req.tags) >= sizeof(req.tags))
			abort();
	} else if (strlen(err) >= sizeof(err)) {
		abort();
	}
	jb_init(&j, out, sizeof(out));
	jb_raw(&j, "{");
	jb_str(&j, "message", rc ? err : req.tags);
	jb_raw(&j, "}");
	if (j.len >= sizeof(out))
		abort();
	free(line);
	return 0;
}
