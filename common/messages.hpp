// Message types and the payloads of the session messages (handshake, errors, GPU list).
// Layouts are documented in docs/protocol.md; every decoder checks every length.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rgpu {

enum class MsgType : uint16_t {
  // Optional TLS upgrade, always in plain text, before anything else on a connection.
  StartTls = 6,  // client -> server
  TlsReady = 7,  // server -> client; the TLS handshake follows
  // Handshake, in this order on every connection.
  Hello = 1,         // client -> server
  Challenge = 2,     // server -> client
  AuthResponse = 3,  // client -> server
  Welcome = 4,       // server -> client
  // Either side, any time: the request (request_id) or the connection (id 0) failed.
  Error = 5,
  // Session queries.
  ListGpus = 16,
  GpuList = 17,
  Ping = 18,
  Pong = 19,
  // 0x100-0x1ff: CUDA calls, 0x200-0x2ff: Vulkan calls.
};

const char* msg_type_name(uint16_t type);

enum class ErrorCode : uint32_t {
  ProtocolVersion = 1,
  AuthFailed = 2,
  TooManyClients = 3,
  MalformedFrame = 4,
  UnexpectedMessage = 5,
  Internal = 6,
  Timeout = 7,
  NotSupported = 8,
  Forbidden = 9,
  TlsRequired = 10,     // a plain connection to a server that only speaks TLS
  TlsUnavailable = 11,  // StartTls to a server with no certificate
};

const char* error_code_name(ErrorCode code);

using Nonce = std::array<uint8_t, 32>;
using Mac = std::array<uint8_t, 32>;

struct HelloMsg {
  // The first four bytes of Hello never change layout, so that any version can answer any other.
  uint16_t min_version = 0;
  uint16_t max_version = 0;
  Nonce client_nonce{};
  std::string client_name;  // free text for logs: "rgpu info", "rgpu client on host"
};

struct ChallengeMsg {
  uint16_t version = 0;  // the version chosen for this connection
  uint32_t server_id = 0;
  bool auth_required = false;
  Nonce server_nonce{};
  std::string server_name;
};

struct AuthResponseMsg {
  Mac client_mac{};
};

struct WelcomeMsg {
  // Proof that the server holds the token too (all zero in open mode, where there is no token).
  Mac server_mac{};
  std::string token_name;
  std::vector<uint32_t> allowed_gpus;  // empty: every exposed GPU
  uint64_t max_memory = 0;              // 0: unlimited
};

struct ErrorMsg {
  ErrorCode code = ErrorCode::Internal;
  std::string message;
};

enum class GpuType : uint8_t { Other = 0, IntegratedGpu = 1, DiscreteGpu = 2, VirtualGpu = 3, Cpu = 4 };
const char* gpu_type_name(GpuType type);

struct GpuInfo {
  uint32_t index = 0;  // the server's index, as used by expose_gpus and allowed_gpus
  std::string name;
  GpuType type = GpuType::Other;
  uint64_t vram_bytes = 0;
  bool cuda = false;
  bool vulkan = false;
  int32_t cuda_ordinal = -1;   // CUdevice on the server
  int32_t vulkan_ordinal = -1;  // index in vkEnumeratePhysicalDevices on the server
  uint32_t compute_major = 0;
  uint32_t compute_minor = 0;
  std::array<uint8_t, 16> uuid{};
  std::string pci_bus_id;       // "0000:3b:00.0", empty when unknown
  uint32_t vulkan_api_version = 0;
  uint32_t vendor_id = 0;
  uint32_t device_id = 0;
  std::string driver;           // driver name and version as the driver reports it
};

struct GpuListMsg {
  uint32_t server_id = 0;
  std::vector<GpuInfo> gpus;
};

std::vector<uint8_t> encode(const HelloMsg&);
std::vector<uint8_t> encode(const ChallengeMsg&);
std::vector<uint8_t> encode(const AuthResponseMsg&);
std::vector<uint8_t> encode(const WelcomeMsg&);
std::vector<uint8_t> encode(const ErrorMsg&);
std::vector<uint8_t> encode(const GpuListMsg&);

// Each throws WireError naming the message and the field that did not fit.
HelloMsg decode_hello(std::span<const uint8_t>);
ChallengeMsg decode_challenge(std::span<const uint8_t>);
AuthResponseMsg decode_auth_response(std::span<const uint8_t>);
WelcomeMsg decode_welcome(std::span<const uint8_t>);
ErrorMsg decode_error(std::span<const uint8_t>);
GpuListMsg decode_gpu_list(std::span<const uint8_t>);

inline constexpr uint32_t kMaxGpusPerServer = 256;
inline constexpr uint32_t kMaxNameLength = 1024;

}  // namespace rgpu
