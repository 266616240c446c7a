/*
 * cli.h: the administrative subcommands. They act on PostgreSQL directly
 * and every change they make writes an audit event.
 */
#ifndef CLI_H
#define CLI_H

#include "config.h"

/*
 * cli_run(cfg, argc, argv): run the subcommand in argv[0..argc) (argv[0] is
 * the subcommand name, e.g. "agent"). Returns the process exit status: 0
 * success, 1 failure, 2 usage error.
 */
int cli_run(const struct broker_config *cfg, int argc, char **argv);

/* cli_usage(): print the command summary to stderr. */
void cli_usage(void);

#endif
