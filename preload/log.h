/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h - messages to stderr, prefixed "memctl[pid]: ".
 *
 * Each message is formatted into a stack buffer and written with a single
 * write(2): no allocation, safe on the interposed path and in the control
 * thread. The level comes from MEMCTL_LOG (quiet, warn, info, debug).
 */
#ifndef MEMCTL_LOG_H
#define MEMCTL_LOG_H

enum log_level { LOG_QUIET, LOG_WARN, LOG_INFO, LOG_DEBUG };

#define MEMCTL_PRINTF(f, a) __attribute__((format(printf, f, a)))

void memctl_log_set_level(enum log_level level);
/* Appends ": strerror(errno)". */
void memctl_log_warn(const char *fmt, ...) MEMCTL_PRINTF(1, 2);
void memctl_log_warnx(const char *fmt, ...) MEMCTL_PRINTF(1, 2);
void memctl_log_info(const char *fmt, ...) MEMCTL_PRINTF(1, 2);
void memctl_log_debug(const char *fmt, ...) MEMCTL_PRINTF(1, 2);

#endif /* MEMCTL_LOG_H */
