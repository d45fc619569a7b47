#include "server.h"
void ctl_server_start(const struct options *o) { (void)o; }
void ctl_server_after_fork(void) {}
