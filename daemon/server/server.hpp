// The RGPU server: an io_uring event loop that accepts connections, runs the TLS and token
// handshake, and answers requests. Long GPU work runs on executor threads, never on the loop.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "messages.hpp"

namespace rgpu {

struct ServerSettings {
  std::string bind = "0.0.0.0";
  uint16_t port = 9876;  // 0: any free port (tests, benchmarks)
  uint32_t server_id = 0;
  uint32_t max_clients = 16;  // authenticated connections and sessions
  // Connections that have not authenticated yet: at most this many, and this many from one
  // address; one more ends the oldest (of that address, or overall).
  uint32_t max_unauthenticated = 256;
  uint32_t max_unauthenticated_per_address = 32;
  std::optional<std::string> cert_path;  // TLS when both are set
  std::optional<std::string> key_path;
  std::vector<TokenEntry> tokens;  // empty: open mode, anyone may connect
  std::vector<GpuInfo> gpus;       // what ListGpus answers (already filtered by expose_gpus)
  std::chrono::milliseconds handshake_timeout{5000};  // from accept to authenticated
  std::chrono::seconds worker_timeout{30};  // a worker that answers nothing for this long is ended
  std::optional<int> listen_fd;  // an inherited listening socket (systemd socket activation)
  // The rgpu binary whose `worker` subcommand runs each application session: this process's own
  // executable, except where the server runs inside another program (tests).
  std::string worker_executable = "/proc/self/exe";
};

class Server {
 public:
  explicit Server(ServerSettings settings);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (or adopts listen_fd) and loads TLS; throws with a message naming what failed.
  void start();
  uint16_t port() const;
  bool tls_enabled() const;
  // Runs the event loop until stop(); start() must have been called.
  void run();
  // Thread-safe; run() returns soon after.
  void stop();

  size_t connection_count() const;

  struct Impl;  // defined in server.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rgpu
