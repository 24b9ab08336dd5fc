// The per-user client daemon: applications connect on a unix socket; each application process
// gets one connection to the server holding its GPUs, and its frames are relayed, bulk data
// straight from the shared-memory rings.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "app_protocol.hpp"
#include "pool.hpp"

namespace rgpu::client {

struct ClientDaemonSettings {
  std::vector<ServerTarget> servers;
  Pool pool;
  std::string socket_path;       // where to listen (ignored with listen_fd)
  std::optional<int> listen_fd;  // an inherited listening unix socket (systemd)
  uint64_t ring_size = kDefaultRingSize;
  uint32_t bulk_lanes = 4;  // per CUDA application (rgpu.toml [client] bulk_lanes)
  // How long a server's connection for an application (or a bulk lane) may bring nothing,
  // though pinged, before the server is taken as gone for that application.
  std::chrono::milliseconds keepalive_timeout{15000};
};

class ClientDaemon {
 public:
  explicit ClientDaemon(ClientDaemonSettings settings);
  ~ClientDaemon();
  // Listens; throws with a message naming what failed.
  void start();
  // Runs until stop().
  void run();
  // Thread-safe.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rgpu::client
