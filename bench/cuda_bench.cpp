// CUDA data-path benchmark, run once natively and once through RGPU on the same machine:
// host<->device bandwidth (pageable and pinned), the round trip of a synchronising call, the rate
// of asynchronous kernel launches, and the raw unix-socket and TCP loopback round trips that the
// RGPU path is made of. Prints one table; the suite puts the native and RGPU tables side by side.
//
//   cuda_bench LABEL MODULE [copies]   (MODULE: a cubin or PTX file with an `empty` kernel;
//                                       copies: only the large copies and their baselines)
#include <arpa/inet.h>
#include <cuda.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {
using Clock = std::chrono::steady_clock;

void check(CUresult r, const char* what) {
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    cuGetErrorName(r, &name);
    std::printf("%s failed: %s\n", what, name ? name : "?");
    std::exit(1);
  }
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Repeats a copy until at least `budget` seconds (and 3 runs) have passed; returns GB/s.
template <typename Fn>
double bandwidth(size_t bytes, Fn copy, double budget = 0.3) {
  copy();  // warm-up
  int runs = 0;
  auto start = Clock::now();
  do {
    copy();
    ++runs;
  } while (runs < 3 || seconds_since(start) < budget);
  return static_cast<double>(bytes) * runs / seconds_since(start) / 1e9;
}

// Round trip of one byte between two threads over a connected socket pair.
double socket_round_trip_us(int a, int b, int iterations = 20000) {
  std::thread echo([&] {
    char c;
    for (int i = 0; i < iterations; ++i) {
      if (::read(b, &c, 1) != 1 || ::write(b, &c, 1) != 1) return;
    }
  });
  char c = 'x';
  auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    if (::write(a, &c, 1) != 1 || ::read(a, &c, 1) != 1) break;
  }
  double us = seconds_since(start) * 1e6 / iterations;
  echo.join();
  return us;
}

double unix_round_trip_us() {
  int fds[2];
  ::socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  double us = socket_round_trip_us(fds[0], fds[1]);
  ::close(fds[0]);
  ::close(fds[1]);
  return us;
}

struct TcpPair {
  int client, server;
};

// A connected loopback TCP pair (Nagle off on both ends).
TcpPair tcp_pair() {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ::listen(listener, 1);
  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int server = ::accept(listener, nullptr, nullptr);
  int one = 1;
  ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::close(listener);
  return {client, server};
}

double tcp_round_trip_us() {
  TcpPair pair = tcp_pair();
  double us = socket_round_trip_us(pair.client, pair.server);
  ::close(pair.client);
  ::close(pair.server);
  return us;
}

// Loopback TCP throughput over `streams` connections, a writing thread each, 8 MiB writes: one
// connection is the ceiling of a copy through one RGPU connection; several, read by a thread each
// or by one thread for all (as the server's event loop reads a session's bulk lanes), show what
// parallel connections can add.
double tcp_streams_gbps(size_t streams, bool one_reader, size_t total = 4ull << 30) {
  std::vector<TcpPair> pairs;
  for (size_t i = 0; i < streams; ++i) pairs.push_back(tcp_pair());
  const size_t share = total / streams;
  auto read_all = [share](std::vector<int> fds) {
    std::vector<uint8_t> in(8u << 20);
    std::vector<size_t> got(fds.size(), 0);
    std::vector<pollfd> polled;
    for (int fd : fds) polled.push_back({fd, POLLIN, 0});
    for (size_t done = 0; done < fds.size();) {
      if (fds.size() > 1 && ::poll(polled.data(), polled.size(), -1) <= 0) return;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (got[i] == share || (fds.size() > 1 && !(polled[i].revents & POLLIN))) continue;
        ssize_t n = ::read(fds[i], in.data(), std::min(in.size(), share - got[i]));
        if (n <= 0) return;
        got[i] += static_cast<size_t>(n);
        if (got[i] == share) {
          ++done;
          polled[i].fd = -1;
        }
      }
    }
  };
  std::vector<std::thread> threads;
  auto start = Clock::now();
  if (one_reader) {
    std::vector<int> fds;
    for (const TcpPair& pair : pairs) fds.push_back(pair.server);
    threads.emplace_back(read_all, fds);
  } else {
    for (const TcpPair& pair : pairs) threads.emplace_back(read_all, std::vector<int>{pair.server});
  }
  for (const TcpPair& pair : pairs) {
    threads.emplace_back([fd = pair.client, share] {
      std::vector<uint8_t> out(8u << 20, 3);
      for (size_t sent = 0; sent < share;) {
        ssize_t n = ::write(fd, out.data(), std::min(out.size(), share - sent));
        if (n <= 0) return;
        sent += static_cast<size_t>(n);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  double gbps = static_cast<double>(share * streams) / seconds_since(start) / 1e9;
  for (const TcpPair& pair : pairs) {
    ::close(pair.client);
    ::close(pair.server);
  }
  return gbps;
}
}  // namespace

int main(int argc, char** argv) {
  const bool copies_only = argc == 4 && std::string(argv[3]) == "copies";
  if (argc != 3 && !copies_only) {
    std::printf("usage: %s LABEL MODULE [copies]\n", argv[0]);
    return 2;
  }
  const std::string label = argv[1];
  std::ifstream in(argv[2], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string image = ss.str();

  // What a program waits before its first GPU work: the driver's start and a context (through
  // RGPU also the daemon's session, the server's worker process and its driver's start).
  const auto started = std::chrono::steady_clock::now();
  check(cuInit(0), "cuInit");
  CUdevice device;
  check(cuDeviceGet(&device, 0), "cuDeviceGet");
  CUcontext context;
  check(cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
  check(cuCtxSetCurrent(context), "cuCtxSetCurrent");
  check(cuCtxSynchronize(), "cuCtxSynchronize");
  const double first_context_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  CUfunction empty = nullptr;
  if (!copies_only) {  // the copies need no kernel
    CUmodule module;
    check(cuModuleLoadData(&module, image.c_str()), "cuModuleLoadData");
    check(cuModuleGetFunction(&empty, module, "empty"), "cuModuleGetFunction");
  }

  std::printf("%-8s %-28s %14s\n", "path", "measure", "value");
  std::printf("%-8s %-28s %14.2f\n", label.c_str(), "first context ms", first_context_ms);
  const std::vector<size_t> sizes = copies_only ? std::vector<size_t>{64u << 10, 1u << 20, 16u << 20, 256u << 20, 1u << 30}
                                                : std::vector<size_t>{4u << 10, 64u << 10, 1u << 20, 16u << 20, 256u << 20, 1u << 30};
  const size_t largest = sizes.back();
  std::vector<uint8_t> pageable(largest, 1);
  void* pinned = nullptr;
  check(cuMemAllocHost(&pinned, largest), "cuMemAllocHost");
  std::memset(pinned, 2, largest);
  CUdeviceptr buffer;
  check(cuMemAlloc(&buffer, largest), "cuMemAlloc");
  for (size_t bytes : sizes) {
    char what[64];
    auto row = [&](const char* kind, double gbps) {
      std::snprintf(what, sizeof what, "%s %zu KiB GB/s", kind, bytes >> 10);
      std::printf("%-8s %-28s %14.3f\n", label.c_str(), what, gbps);
    };
    row("H2D pageable", bandwidth(bytes, [&] { check(cuMemcpyHtoD(buffer, pageable.data(), bytes), "HtoD"); }));
    row("H2D pinned", bandwidth(bytes, [&] { check(cuMemcpyHtoD(buffer, pinned, bytes), "HtoD"); }));
    row("D2H pageable", bandwidth(bytes, [&] { check(cuMemcpyDtoH(pageable.data(), buffer, bytes), "DtoH"); }));
    row("D2H pinned", bandwidth(bytes, [&] { check(cuMemcpyDtoH(pinned, buffer, bytes), "DtoH"); }));
  }

  // What the application's own copy of its data into another host buffer costs (the first stage
  // of a pageable copy through RGPU).
  std::vector<uint8_t> other(largest, 3);
  std::printf("%-8s %-28s %14.3f\n", label.c_str(), "host memcpy 1 GiB GB/s",
              bandwidth(largest, [&] { std::memcpy(other.data(), pageable.data(), largest); }));
  std::printf("%-8s %-28s %14.3f\n", label.c_str(), "raw tcp stream GB/s", tcp_streams_gbps(1, false));
  std::printf("%-8s %-28s %14.3f\n", label.c_str(), "raw tcp x3 GB/s", tcp_streams_gbps(3, false));
  std::printf("%-8s %-28s %14.3f\n", label.c_str(), "raw tcp x3 one reader GB/s", tcp_streams_gbps(3, true));
  if (copies_only) return 0;

  // A synchronising call on an idle context: one full round trip through RGPU.
  const int syncs = 5000;
  auto start = Clock::now();
  for (int i = 0; i < syncs; ++i) check(cuCtxSynchronize(), "cuCtxSynchronize");
  std::printf("%-8s %-28s %14.2f\n", label.c_str(), "sync round trip us", seconds_since(start) * 1e6 / syncs);

  const int launches = 50000;
  start = Clock::now();
  for (int i = 0; i < launches; ++i)
    check(cuLaunchKernel(empty, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr), "cuLaunchKernel");
  check(cuCtxSynchronize(), "cuCtxSynchronize");
  std::printf("%-8s %-28s %14.0f\n", label.c_str(), "empty launches per s", launches / seconds_since(start));

  std::printf("%-8s %-28s %14.2f\n", label.c_str(), "raw unix round trip us", unix_round_trip_us());
  std::printf("%-8s %-28s %14.2f\n", label.c_str(), "raw tcp round trip us", tcp_round_trip_us());
  check(cuMemFree(buffer), "cuMemFree");
  check(cuMemFreeHost(pinned), "cuMemFreeHost");
  return 0;
}
