// rgpu info: connect, authenticate, list the server's GPUs in the documented format.
#include <cstdio>

#include "commands.hpp"
#include "config.hpp"
#include "log.hpp"
#include "session.hpp"
#include "wire.hpp"

namespace rgpu {

namespace {
int exit_code_for(SessionError::Kind kind) {
  switch (kind) {
    case SessionError::Kind::Unreachable: return kExitUnreachable;
    case SessionError::Kind::AuthFailed: return kExitAuth;
    case SessionError::Kind::TlsMismatch:
    case SessionError::Kind::TlsFailure:
    case SessionError::Kind::Identity: return kExitTls;
    case SessionError::Kind::VersionMismatch:
    case SessionError::Kind::Protocol: return kExitProtocol;
    case SessionError::Kind::Refused:
    case SessionError::Kind::Closed: return kExitRefused;
  }
  return kExitFailure;
}

std::string compute_capability(const GpuInfo& gpu) {
  if (!gpu.cuda) return "-";
  return std::to_string(gpu.compute_major) + "." + std::to_string(gpu.compute_minor);
}

void print_gpus(const std::string& server, const GpuListMsg& list) {
  std::printf("Connected to RGPU server at %s\n", server.c_str());
  if (list.gpus.empty()) {
    std::printf("No GPUs available.\n");
    return;
  }
  std::printf("Available GPUs:\n");
  for (const auto& gpu : list.gpus) {
    std::printf("\n  GPU %u: %s\n", gpu.index, gpu.name.c_str());
    std::printf("    Type:     %s\n", gpu_type_name(gpu.type));
    std::printf("    VRAM:     %llu MB\n", static_cast<unsigned long long>(gpu.vram_bytes >> 20));
    std::printf("    Vulkan:   %s\n", gpu.vulkan ? "true" : "false");
    std::printf("    CUDA:     %s\n", gpu.cuda ? "true" : "false");
    std::printf("    Compute:  %s\n", compute_capability(gpu).c_str());
  }
}
}  // namespace

int run_info(const InfoOptions& options) {
  set_log_component("rgpu info");
  SessionOptions session_options;
  try {
    session_options.server = parse_host_port(options.server);
  } catch (const NetError& e) {
    std::fprintf(stderr, "error: --server: %s\n", e.what());
    return kExitUsage;
  }
  try {
    ResolvedAccess access = resolve_access(options.access, "");
    session_options.token = std::move(access.token);
    session_options.tls = access.tls;
    session_options.trust = std::move(access.trust);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitUsage;
  }
  session_options.client_name = "rgpu info";

  try {
    auto session = Session::connect(session_options);
    Frame answer = session->call(MsgType::ListGpus);
    print_gpus(session_options.server.to_string(), decode_gpu_list(answer.payload));
    return kExitOk;
  } catch (const SessionError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_code_for(e.kind());
  } catch (const RemoteError& e) {
    std::fprintf(stderr, "error: server %s: %s\n", session_options.server.to_string().c_str(), e.what());
    return kExitRefused;
  } catch (const WireError& e) {
    std::fprintf(stderr, "error: server %s sent a malformed GPU list: %s\n",
                 session_options.server.to_string().c_str(), e.what());
    return kExitProtocol;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: connection to %s failed: %s\n", session_options.server.to_string().c_str(),
                 e.what());
    return kExitFailure;
  }
}

}  // namespace rgpu
