/*
 * grpc_echo.cc - gRPC C++ unary echo, the baseline haven's RPC stack is measured against.
 * It mirrors haven-bench rpc (bench/rpc_bench.c): same CLI shape, same warm-up and the same
 * latency and throughput arithmetic.
 *
 *   haven-grpc-bench --serve ADDR                synchronous gRPC server until SIGTERM/SIGINT
 *   haven-grpc-bench ADDR THREADS CALLS SIZE     THREADS client threads sharing one channel,
 *                                                CALLS blocking unary calls each; prints
 *       grpc threads=T size=S calls=N qps=Q p50_us=X p99_us=Y
 *
 * ADDR is a gRPC target: unix:///tmp/x.sock (Unix domain socket, the peer of nng ipc://)
 * or host:port such as 127.0.0.1:50051. Insecure credentials on both sides.
 */
#include "echo.grpc.pb.h"
#include "echo.pb.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <pthread.h>
#include <signal.h>
#include <string>
#include <thread>
#include <time.h>
#include <vector>

namespace {

using haven::benchgrpc::v1::Echo;
using haven::benchgrpc::v1::EchoRequest;
using haven::benchgrpc::v1::EchoResponse;

/* Monotonic microseconds, as hv_clock_mono_us() in haven. */
int64_t
now_us()
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

class EchoService final : public Echo::Service {
	grpc::Status
	Echo(grpc::ServerContext *, const EchoRequest *req, EchoResponse *rep) override
	{
		rep->set_payload(req->payload());
		return grpc::Status::OK;
	}
};

void
block_signals(sigset_t *s)
{
	sigemptyset(s);
	sigaddset(s, SIGTERM);
	sigaddset(s, SIGINT);
	pthread_sigmask(SIG_BLOCK, s, nullptr);
}

int
serve(const std::string &addr)
{
	sigset_t s;
	int      sig;
	int      port = 0;

	/* Block before gRPC starts its threads so that they inherit the mask and the signal
	 * reaches sigwait below. */
	block_signals(&s);
	EchoService         service;
	grpc::ServerBuilder builder;
	builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port);
	builder.RegisterService(&service);
	std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
	if (!server || port == 0) {
		fprintf(stderr, "haven-grpc-bench: cannot listen on %s\n", addr.c_str());
		return 1;
	}
	fprintf(stderr, "haven-grpc-bench: grpc echo on %s\n", addr.c_str());
	sigwait(&s, &sig);
	server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
	server->Wait();
	return 0;
}

struct Job {
	std::shared_ptr<grpc::Channel> ch;
	int                            calls  = 0;
	size_t                         size   = 0;
	int64_t                       *lat_us = nullptr; /* calls entries */
	int                            errors = 0;
};

void
client(Job *j)
{
	std::unique_ptr<Echo::Stub> stub = Echo::NewStub(j->ch);
	EchoRequest                 req;

	req.set_payload(std::string(j->size, 'x'));
	for (int i = 0; i < j->calls; i++) {
		int64_t            t0 = now_us();
		grpc::ClientContext ctx;
		EchoResponse        rep;
		ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(10000));
		grpc::Status st = stub->Echo(&ctx, req, &rep);
		if (!st.ok() || rep.payload().size() != j->size) {
			j->errors++;
		}
		j->lat_us[i] = now_us() - t0;
	}
}

int
usage()
{
	fprintf(stderr, "usage: haven-grpc-bench --serve ADDR\n"
	                "       haven-grpc-bench ADDR THREADS CALLS SIZE\n");
	return 2;
}

int
run_clients(int argc, char **argv)
{
	int    threads, calls;
	size_t size;
	int    errors = 0;

	if (argc != 4 || (threads = atoi(argv[1])) < 1 || threads > 256 ||
	    (calls = atoi(argv[2])) < 1 || atoi(argv[3]) < 0) {
		return usage();
	}
	size = (size_t) atoi(argv[3]);

	std::shared_ptr<grpc::Channel> ch =
	    grpc::CreateChannel(argv[0], grpc::InsecureChannelCredentials());
	if (!ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
		fprintf(stderr, "haven-grpc-bench: cannot connect to %s\n", argv[0]);
		return 1;
	}

	std::vector<int64_t> all((size_t) threads * (size_t) calls);
	std::vector<Job>     jobs((size_t) threads);
	for (int i = 0; i < threads; i++) {
		jobs[i].ch     = ch;
		jobs[i].calls  = calls;
		jobs[i].size   = size;
		jobs[i].lat_us = all.data() + (size_t) i * (size_t) calls;
	}
	/* Warm up: connect and touch every code path once. */
	{
		Job     w = jobs[0];
		int64_t lat[16];
		w.calls  = 16;
		w.lat_us = lat;
		client(&w);
		if (w.errors) {
			fprintf(stderr, "haven-grpc-bench: warm-up calls to %s failed\n", argv[0]);
			return 1;
		}
	}
	int64_t                  t0 = now_us();
	std::vector<std::thread> th;
	th.reserve((size_t) threads);
	for (int i = 0; i < threads; i++) {
		th.emplace_back(client, &jobs[i]);
	}
	for (int i = 0; i < threads; i++) {
		th[i].join();
		errors += jobs[i].errors;
	}
	int64_t elapsed = now_us() - t0;
	std::sort(all.begin(), all.end());
	size_t n = all.size();
	printf("grpc threads=%d size=%zu calls=%zu qps=%.0f p50_us=%lld p99_us=%lld%s\n", threads,
	    size, n, (double) n * 1e6 / (double) elapsed, (long long) all[n / 2],
	    (long long) all[(n * 99) / 100], errors ? " ERRORS" : "");
	fflush(stdout);
	if (errors) {
		fprintf(stderr, "haven-grpc-bench: %d calls failed\n", errors);
	}
	return errors ? 1 : 0;
}

} // namespace

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--serve") == 0) {
		return serve(argv[2]);
	}
	if (argc == 5) {
		return run_clients(argc - 1, argv + 1);
	}
	return usage();
}
