// rgpu server: configuration, GPU discovery, then the event loop until SIGINT/SIGTERM.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <filesystem>
#include <fstream>
#include <thread>

#include "commands.hpp"
#include "config.hpp"
#include "log.hpp"
#include "owned_threads.hpp"
#include "server_identity.hpp"
#include "server/gpu_discovery.hpp"
#include "server/server.hpp"
#include "tls.hpp"

namespace rgpu {

namespace {
Config load_server_config(const ServerOptions& options) {
  if (!options.config_given && !std::filesystem::exists(options.config)) {
    LOG_INFO("no %s here; using defaults and command-line options", options.config.c_str());
    return Config{};
  }
  Config config = load_config_file(options.config);
  for (const auto& warning : config.warnings) LOG_WARN("%s", warning.c_str());
  return config;
}

// systemd socket activation: the one inherited listening socket, if any.
std::optional<int> inherited_listen_socket() {
  int n = sd_listen_fds(1);
  if (n <= 0) return std::nullopt;
  if (n > 1) LOG_WARN("systemd passed %d sockets; using the first", n);
  if (sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
    throw std::runtime_error("the socket passed by systemd is not a listening stream socket");
  return SD_LISTEN_FDS_START;
}

void write_pid_file(const std::string& path) {
  std::ofstream out(path);
  out << ::getpid() << '\n';
  if (!out) throw std::runtime_error("cannot write pid file '" + path + "'");
}

// With tls = "on" and no certificate configured, the server's own one in its state directory,
// made at the first start (a self-signed P-256 certificate; clients pin its key).
void use_own_certificate(ServerSection& section) {
  const std::string dir = server_state_directory();
  if (dir.empty()) throw std::runtime_error("no state directory (set STATE_DIRECTORY, XDG_STATE_HOME or HOME, or cert_path/key_path)");
  const std::string cert = dir + "/server-cert.pem", key = dir + "/server-key.pem";
  section.cert_path = cert;
  section.key_path = key;
  if (std::filesystem::exists(cert) && std::filesystem::exists(key)) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the state directory " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  char host[256] = "rgpu";
  ::gethostname(host, sizeof host - 1);
  generate_self_signed(cert, key, host, 3650);
  LOG_INFO("made a certificate of its own for this server: %s (key %s)", cert.c_str(), key.c_str());
}

void log_gpus(const std::vector<GpuInfo>& gpus) {
  for (const auto& gpu : gpus)
    LOG_INFO("GPU %u: %s (%s%s%s)", gpu.index, gpu.name.c_str(), gpu.cuda ? "CUDA" : "",
             gpu.cuda && gpu.vulkan ? ", " : "", gpu.vulkan ? "Vulkan" : "");
}
}  // namespace

std::string server_state_directory() {
  if (const char* state = std::getenv("STATE_DIRECTORY"); state != nullptr && state[0] == '/') {
    const std::string first(state, std::strcspn(state, ":"));  // systemd lists one per StateDirectory=
    return first;
  }
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/')
    return std::string(state) + "/rgpu";
  if (::geteuid() == 0) return "/var/lib/rgpu";  // where the service keeps it (StateDirectory=rgpu)
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/')
    return std::string(home) + "/.local/state/rgpu";
  return {};
}

int run_server(const ServerOptions& options) {
  set_log_component("rgpu server");
  block_stop_signals();  // before discovery, whose drivers start threads
  // Workers run as this user: none may trace this process or read its memory (tokens, keys).
  ::prctl(PR_SET_DUMPABLE, 0);
  Config config;
  try {
    config = load_server_config(options);
  } catch (const ConfigError& e) {
    LOG_ERROR("%s", e.what());
    return kExitUsage;
  }
  ServerSection& section = config.server;
  if (options.port) section.port = *options.port;
  if (options.bind) section.bind = *options.bind;
  if (options.cert) section.cert_path = *options.cert;
  if (options.key) section.key_path = *options.key;
  if (options.tls) section.tls = *options.tls == "on";
  if (!section.tls && section.cert_path) {
    LOG_ERROR("tls = \"off\" and a certificate (cert_path/--cert) were both given: choose one");
    return kExitUsage;
  }

  if (section.transport == Transport::Quic) {
    LOG_ERROR("server.transport = \"quic\": QUIC transport is not available in this build; use \"tcp\"");
    return kExitUsage;
  }
  if (options.generate_cert) {
    if (!section.cert_path || !section.key_path) {
      LOG_ERROR("--generate-cert needs --cert and --key (where to write the pair)");
      return kExitUsage;
    }
    char host[256] = "rgpu";
    ::gethostname(host, sizeof host - 1);
    try {
      generate_self_signed(*section.cert_path, *section.key_path, host);
    } catch (const TlsError& e) {
      LOG_ERROR("%s", e.what());
      return kExitFailure;
    }
    LOG_INFO("wrote a self-signed certificate to %s and its key to %s", section.cert_path->c_str(),
             section.key_path->c_str());
  }

  std::string fingerprint;
  if (section.tls) {
    try {
      if (!section.cert_path) use_own_certificate(section);
      fingerprint = certificate_file_fingerprint(*section.cert_path);
    } catch (const std::exception& e) {
      LOG_ERROR("TLS certificate: %s", e.what());
      return kExitFailure;
    }
  }

  DiscoveryReport report = discover_gpus();
  for (const auto& note : report.notes) LOG_INFO("%s", note.c_str());
  for (uint32_t index : unknown_indices(report.gpus, section.expose_gpus))
    LOG_WARN("server.expose_gpus lists GPU %u, which this machine does not have", index);

  ServerSettings settings;
  settings.bind = section.bind;
  settings.port = section.port;
  settings.server_id = section.server_id;
  settings.max_clients = section.max_clients;
  settings.max_unauthenticated = section.max_unauthenticated;
  settings.max_unauthenticated_per_address = section.max_unauthenticated_per_address;
  settings.worker_timeout = std::chrono::seconds(section.worker_timeout);
  settings.cert_path = section.cert_path;
  settings.key_path = section.key_path;
  settings.tokens = config.tokens;
  settings.gpus = filter_exposed(report.gpus, section.expose_gpus);
  try {
    settings.listen_fd = inherited_listen_socket();
  } catch (const std::exception& e) {
    LOG_ERROR("%s", e.what());
    return kExitFailure;
  }
  if (settings.gpus.empty()) LOG_WARN("no GPU to share: clients will see none");
  log_gpus(settings.gpus);

  const bool socket_activated = settings.listen_fd.has_value();
  Server server(std::move(settings));
  try {
    server.start();
  } catch (const std::exception& e) {
    LOG_ERROR("cannot start: %s", e.what());
    return kExitFailure;
  }
  if (config.tokens.empty())
    LOG_WARN("no [[security.tokens]] configured: open mode, any client may connect (development only)");
  if (!server.tls_enabled()) {
    LOG_WARN("tls = \"off\": connections are NOT encrypted and clients cannot check who answers");
  } else {
    LOG_INFO("TLS certificate %s, key fingerprint %s (clients: server_fingerprint = \"%s\")",
             section.cert_path->c_str(), fingerprint.c_str(), fingerprint.c_str());
    if (!kernel_tls_available()) LOG_INFO("kernel TLS offload unavailable (no 'tls' module): TLS runs in user space");
  }
  if (socket_activated)
    LOG_INFO("listening on the socket systemd passed, port %u (server_id %u, max_clients %u)", server.port(),
             section.server_id, section.max_clients);
  else
    LOG_INFO("listening on %s:%u (server_id %u, max_clients %u)", section.bind.c_str(), server.port(),
             section.server_id, section.max_clients);

  if (options.pid_file) {
    try {
      write_pid_file(*options.pid_file);
    } catch (const std::exception& e) {
      LOG_ERROR("%s", e.what());
      return kExitFailure;
    }
  }

  StopOnSignal stop_on_signal([&server](int received) {
    LOG_INFO("received %s, shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
    sd_notify(0, "STOPPING=1");
    server.stop();
  });
  sd_notify(0, "READY=1");
  server.run();
  if (options.pid_file) std::filesystem::remove(*options.pid_file);
  return kExitOk;
}

}  // namespace rgpu
