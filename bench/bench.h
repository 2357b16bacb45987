/*
 * bench.h - the benchmarks of haven-bench, one function per subcommand. Each takes the
 * arguments after its subcommand name and prints its figures as one line on stdout.
 */
#ifndef HAVEN_BENCH_H
#define HAVEN_BENCH_H

int bench_rpc(int argc, char **argv);
int bench_nng(int argc, char **argv);
int bench_store(int argc, char **argv);
int bench_capacity(int argc, char **argv);
int bench_consent(int argc, char **argv);
int bench_referral(int argc, char **argv);
int bench_kdf(int argc, char **argv);
int bench_json(int argc, char **argv);
int bench_http(int argc, char **argv);
int bench_alerts(int argc, char **argv);

#endif
