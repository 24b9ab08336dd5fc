// rgpu client: the per-user daemon that gives this machine's applications the servers' GPUs.
#include <signal.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "app_protocol.hpp"
#include "client/client_daemon.hpp"
#include "commands.hpp"
#include "config.hpp"
#include "log.hpp"
#include "owned_threads.hpp"
#include "server_identity.hpp"

namespace rgpu {

namespace {
std::vector<client::ServerTarget> targets_from(const ClientOptions& options, const Config& config) {
  std::vector<client::ServerTarget> targets;
  if (!options.servers.empty()) {  // the command line replaces the configured servers
    ResolvedAccess access = resolve_access(options.access, config.client.known_servers);
    for (const auto& address : options.servers)
      targets.push_back({parse_host_port(address), access.token, access.tls, access.trust});
    return targets;
  }
  const std::string known_servers =
      config.client.known_servers.empty() ? default_known_servers_path() : config.client.known_servers;
  for (const auto& entry : config.client.servers) {
    if (entry.transport == Transport::Quic)
      throw ConfigError("client.servers: " + entry.address + " asks for QUIC, which is not available in this build");
    ServerTrust trust{.ca_path = entry.ca_path, .fingerprint = entry.server_fingerprint, .known_servers = known_servers};
    targets.push_back({parse_host_port(entry.address), entry.token, parse_tls_mode(entry.tls).value_or(TlsMode::Auto),
                       std::move(trust)});
  }
  return targets;
}
}  // namespace

int run_client(const ClientOptions& options) {
  set_log_component("rgpu client");
  block_stop_signals();
  Config config;
  try {
    if (options.config_given || std::filesystem::exists(options.config)) {
      config = load_config_file(options.config);
      for (const auto& warning : config.warnings) LOG_WARN("%s", warning.c_str());
    }
  } catch (const ConfigError& e) {
    LOG_ERROR("%s", e.what());
    return kExitUsage;
  }
  client::ClientDaemonSettings settings;
  try {
    settings.servers = targets_from(options, config);
  } catch (const std::exception& e) {
    LOG_ERROR("%s", e.what());
    return kExitUsage;
  }
  if (settings.servers.empty()) LOG_WARN("no servers configured (--server or [[client.servers]]): no GPUs to offer");
  settings.pool = client::build_pool(settings.servers, config.client.gpu_ordering);
  settings.bulk_lanes = config.client.bulk_lanes;
  settings.keepalive_timeout =
      std::chrono::seconds(options.keepalive_timeout.value_or(config.client.keepalive_timeout));
  LOG_INFO("GPU pool: %zu GPU(s)", settings.pool.gpus.size());
  for (size_t i = 0; i < settings.pool.gpus.size(); ++i) {
    const GpuInfo& gpu = settings.pool.gpus[i].info;
    LOG_INFO("  GPU %zu: %s on %s (%s%s%s)", i, gpu.name.c_str(),
             settings.servers[settings.pool.gpus[i].server].address.to_string().c_str(), gpu.cuda ? "CUDA" : "",
             gpu.cuda && gpu.vulkan ? ", " : "", gpu.vulkan ? "Vulkan" : "");
  }

  const bool activated = sd_listen_fds(1) >= 1;
  if (activated) {
    if (sd_is_socket(SD_LISTEN_FDS_START, AF_UNIX, SOCK_STREAM, 1) <= 0) {
      LOG_ERROR("the socket passed by systemd is not a listening unix stream socket");
      return kExitFailure;
    }
    settings.listen_fd = SD_LISTEN_FDS_START;
  }
  settings.socket_path = options.socket.value_or(default_client_socket_path());
  client::ClientDaemon daemon(std::move(settings));
  try {
    daemon.start();
  } catch (const std::exception& e) {
    LOG_ERROR("cannot start: %s", e.what());
    return kExitFailure;
  }
  LOG_INFO("listening for applications on %s",
           activated ? "the socket systemd passed" : options.socket.value_or(default_client_socket_path()).c_str());
  if (options.pid_file) {
    std::ofstream out(*options.pid_file);
    out << ::getpid() << '\n';
    if (!out) {
      LOG_ERROR("cannot write pid file '%s'", options.pid_file->c_str());
      return kExitFailure;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  StopOnSignal stop_on_signal([&daemon](int received) {
    LOG_INFO("received %s, shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
    sd_notify(0, "STOPPING=1");
    daemon.stop();
  });
  sd_notify(0, "READY=1");
  daemon.run();
  if (options.pid_file) std::filesystem::remove(*options.pid_file);
  return kExitOk;
}

}  // namespace rgpu
