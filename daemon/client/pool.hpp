// The client daemon's GPU pool: the GPUs of every configured server, in the configured order.
#pragma once

#include <string>
#include <vector>

#include "config.hpp"
#include "messages.hpp"
#include "net.hpp"
#include "session.hpp"

namespace rgpu::client {

struct ServerTarget {
  HostPort address;
  std::string token;
  TlsMode tls = TlsMode::Auto;
  ServerTrust trust;
  SessionOptions session_options(std::string client_name) const {
    return SessionOptions{.server = address, .token = token, .tls = tls, .trust = trust,
                          .client_name = std::move(client_name)};
  }
};

struct PoolGpu {
  GpuInfo info;        // as the server reported it (info.index is the server's index)
  size_t server = 0;   // index into the targets
};

struct Pool {
  std::vector<PoolGpu> gpus;       // pool order = the order applications number devices
  std::vector<std::string> notes;  // servers that could not be reached, and why
};

// Asks every server for its GPUs (a server that cannot be reached is noted and skipped) and
// orders the ones with CUDA or Vulkan (each application session takes those of its API): LocalFirst and RemoteFirst keep server order (this daemon pools
// remote GPUs only), ByCapability sorts by compute capability, highest first. A target in TLS
// auto mode is pinned to what this first connection found, so that applications' connections
// neither try TLS again on a server without it nor accept less than TLS from a server with it.
Pool build_pool(std::vector<ServerTarget>& targets, GpuOrdering ordering);
// The ordering step alone (for tests).
void order_pool(std::vector<PoolGpu>& gpus, GpuOrdering ordering);

}  // namespace rgpu::client
