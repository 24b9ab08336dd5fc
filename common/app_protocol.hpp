// Messages between an application's RGPU libraries (CUDA interpose, Vulkan ICD) and the client
// daemon over the per-user unix socket, and the ring that carries their bulk data.
//
// Each application thread has its own unix connection and its own memfd ring (handed over with
// SCM_RIGHTS on AppWelcome). The socket carries frames in the usual format; a frame flagged
// kFrameRing carries a RingSpec first: the daemon sends `in` bytes from the ring to the server
// without copying them, and writes the server's answer into the ring at `out` (when it fits).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "messages.hpp"

namespace rgpu {

// Frame flag used only between an application and its daemon; servers never see it.
inline constexpr uint16_t kFrameRing = 1u << 2;

enum class AppMsg : uint16_t {
  AppHello = 0x30,     // app -> daemon: first frame of a process's first connection
  AppAttach = 0x31,    // app -> daemon: first frame of a further thread's connection
  AppWelcome = 0x32,   // daemon -> app: the session, its GPUs; carries the ring memfd
  RingRelease = 0x33,  // daemon -> app: ring bytes of a no-reply frame have left; reusable
  ServerGone = 0x34,   // daemon -> app: the server's connection was lost; ErrorMsg payload
};

// The API an application library speaks: its session on the server runs that API's calls.
enum class AppApi : uint8_t { Cuda = 0, Vulkan = 1 };
const char* app_api_name(AppApi api);

// Opens the connection between the daemon and the server for one application session: the
// server's GPU indices (from its GpuList) in the order the application numbers its devices
// (SessionOpenMsg); the answer is the matching Opened message or an Error.
inline constexpr uint16_t kMsgCudaOpen = 0x0F0;
inline constexpr uint16_t kMsgCudaOpened = 0x0F1;
inline constexpr uint16_t kMsgVulkanOpen = 0x0F2;
inline constexpr uint16_t kMsgVulkanOpened = 0x0F3;
// CudaOpened's payload: u64 lane key. A further connection of the same token that sends CudaJoin
// (u64 lane key) carries CUDA calls of that session too (bulk lanes: large no-reply copies, in
// parallel with the session's own connection); the answer is CudaJoined or an Error.
inline constexpr uint16_t kMsgCudaJoin = 0x0F4;
inline constexpr uint16_t kMsgCudaJoined = 0x0F5;
// Each session runs in a worker process of the server. CudaOpened and VulkanOpened carry the
// session's key (u64); a client whose session connection closed asks how the session ended with
// SessionFate (u64 key) on a connection of the same token; the answer SessionFateIs is a sentence
// (u32 length + UTF-8), e.g. "the GPU server's worker for this application was killed by SIGSEGV".
// Over TLS, a connection that was answered CudaOpened, VulkanOpened or CudaJoined carries a second
// TLS handshake next, with the worker (common/tls_rekey.hpp); nothing may be sent before it.
inline constexpr uint16_t kMsgSessionFate = 0x0F6;
inline constexpr uint16_t kMsgSessionFateIs = 0x0F7;

struct RingSpec {
  uint64_t in_offset = 0;
  uint64_t in_length = 0;     // bytes appended to the inline payload on the way to the server
  uint64_t out_offset = 0;
  uint64_t out_capacity = 0;  // 0: the answer comes inline; else the answer's payload goes here
};
static_assert(sizeof(RingSpec) == 32);
// Whether a ring frame's RingSpec lies inside a ring of `ring_size` bytes, and the frame it makes
// for the server (`inline_size` payload bytes after the RingSpec, then the ring's `in` bytes) is
// not over kMaxFramePayload.
bool ring_spec_fits(const RingSpec& spec, uint64_t ring_size, uint64_t inline_size);

struct AppHelloMsg {
  uint32_t pid = 0;
  std::string program;              // for logs
  AppApi api = AppApi::Cuda;
  bool has_visible_devices = false;  // CUDA_VISIBLE_DEVICES was set
  std::string visible_devices;       // its value
};

struct AppAttachMsg {
  uint64_t session_id = 0;
};

struct AppWelcomeMsg {
  uint64_t session_id = 0;
  uint64_t ring_size = 0;
  std::string server;               // host:port of the server running this session
  std::vector<GpuInfo> devices;     // index = the application's device ordinal
  std::vector<std::string> notes;   // warnings for the application's log (devices dropped, ...)
};

struct RingReleaseMsg {
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct SessionOpenMsg {
  std::vector<uint32_t> gpu_indices;
};

std::vector<uint8_t> encode(const AppHelloMsg&);
std::vector<uint8_t> encode(const AppAttachMsg&);
std::vector<uint8_t> encode(const AppWelcomeMsg&);
std::vector<uint8_t> encode(const RingReleaseMsg&);
std::vector<uint8_t> encode(const SessionOpenMsg&);
AppHelloMsg decode_app_hello(std::span<const uint8_t>);
AppAttachMsg decode_app_attach(std::span<const uint8_t>);
AppWelcomeMsg decode_app_welcome(std::span<const uint8_t>);
RingReleaseMsg decode_ring_release(std::span<const uint8_t>);
SessionOpenMsg decode_session_open(std::span<const uint8_t>);

// Default ring per application thread (the memfd's pages are only used when touched).
inline constexpr uint64_t kDefaultRingSize = 64ull << 20;

// $RGPU_CLIENT_SOCKET, else $XDG_RUNTIME_DIR/rgpu/client.sock, else /run/user/<uid>/rgpu/client.sock.
std::string default_client_socket_path();

}  // namespace rgpu
