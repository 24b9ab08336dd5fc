#include "messages.hpp"

#include "wire.hpp"

namespace rgpu {

const char* msg_type_name(uint16_t type) {
  switch (static_cast<MsgType>(type)) {
    case MsgType::StartTls: return "StartTls";
    case MsgType::TlsReady: return "TlsReady";
    case MsgType::Hello: return "Hello";
    case MsgType::Challenge: return "Challenge";
    case MsgType::AuthResponse: return "AuthResponse";
    case MsgType::Welcome: return "Welcome";
    case MsgType::Error: return "Error";
    case MsgType::ListGpus: return "ListGpus";
    case MsgType::GpuList: return "GpuList";
    case MsgType::Ping: return "Ping";
    case MsgType::Pong: return "Pong";
  }
  return "unknown";
}

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::ProtocolVersion: return "protocol version mismatch";
    case ErrorCode::AuthFailed: return "authentication failed";
    case ErrorCode::TooManyClients: return "too many clients";
    case ErrorCode::MalformedFrame: return "malformed frame";
    case ErrorCode::UnexpectedMessage: return "unexpected message";
    case ErrorCode::Internal: return "internal error";
    case ErrorCode::Timeout: return "timeout";
    case ErrorCode::NotSupported: return "not supported";
    case ErrorCode::Forbidden: return "forbidden";
    case ErrorCode::TlsRequired: return "TLS required";
    case ErrorCode::TlsUnavailable: return "TLS unavailable";
  }
  return "unknown error";
}

const char* gpu_type_name(GpuType type) {
  switch (type) {
    case GpuType::Other: return "Other";
    case GpuType::IntegratedGpu: return "IntegratedGpu";
    case GpuType::DiscreteGpu: return "DiscreteGpu";
    case GpuType::VirtualGpu: return "VirtualGpu";
    case GpuType::Cpu: return "Cpu";
  }
  return "Other";
}

namespace {
template <size_t N>
void put_array(WireWriter& w, const std::array<uint8_t, N>& a) {
  w.bytes(a.data(), N);
}
template <size_t N>
std::array<uint8_t, N> get_array(WireReader& r) {
  std::array<uint8_t, N> a{};
  auto span = r.bytes(N);
  std::copy(span.begin(), span.end(), a.begin());
  return a;
}
bool get_bool(WireReader& r, const char* field) {
  auto v = r.get<uint8_t>();
  if (v > 1) throw WireError(std::string(field) + ": boolean field holds " + std::to_string(v));
  return v == 1;
}
}  // namespace

std::vector<uint8_t> encode(const HelloMsg& m) {
  WireWriter w;
  w.put(m.min_version).put(m.max_version);
  put_array(w, m.client_nonce);
  w.str(m.client_name);
  return w.take();
}

HelloMsg decode_hello(std::span<const uint8_t> data) {
  WireReader r(data, "Hello");
  HelloMsg m;
  m.min_version = r.get<uint16_t>();
  m.max_version = r.get<uint16_t>();
  m.client_nonce = get_array<32>(r);
  m.client_name = r.str(kMaxNameLength);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const ChallengeMsg& m) {
  WireWriter w;
  w.put(m.version).put(m.server_id).put<uint8_t>(m.auth_required ? 1 : 0);
  put_array(w, m.server_nonce);
  w.str(m.server_name);
  return w.take();
}

ChallengeMsg decode_challenge(std::span<const uint8_t> data) {
  WireReader r(data, "Challenge");
  ChallengeMsg m;
  m.version = r.get<uint16_t>();
  m.server_id = r.get<uint32_t>();
  m.auth_required = get_bool(r, "Challenge.auth_required");
  m.server_nonce = get_array<32>(r);
  m.server_name = r.str(kMaxNameLength);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const AuthResponseMsg& m) {
  WireWriter w;
  put_array(w, m.client_mac);
  return w.take();
}

AuthResponseMsg decode_auth_response(std::span<const uint8_t> data) {
  WireReader r(data, "AuthResponse");
  AuthResponseMsg m;
  m.client_mac = get_array<32>(r);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const WelcomeMsg& m) {
  WireWriter w;
  put_array(w, m.server_mac);
  w.str(m.token_name);
  w.put<uint32_t>(static_cast<uint32_t>(m.allowed_gpus.size()));
  for (auto gpu : m.allowed_gpus) w.put(gpu);
  w.put(m.max_memory);
  return w.take();
}

WelcomeMsg decode_welcome(std::span<const uint8_t> data) {
  WireReader r(data, "Welcome");
  WelcomeMsg m;
  m.server_mac = get_array<32>(r);
  m.token_name = r.str(kMaxNameLength);
  auto count = r.get<uint32_t>();
  if (count > kMaxGpusPerServer) throw WireError("Welcome: " + std::to_string(count) + " allowed GPUs is over the limit");
  for (uint32_t i = 0; i < count; ++i) m.allowed_gpus.push_back(r.get<uint32_t>());
  m.max_memory = r.get<uint64_t>();
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const ErrorMsg& m) {
  WireWriter w;
  w.put(static_cast<uint32_t>(m.code));
  w.str(m.message);
  return w.take();
}

ErrorMsg decode_error(std::span<const uint8_t> data) {
  WireReader r(data, "Error");
  ErrorMsg m;
  m.code = static_cast<ErrorCode>(r.get<uint32_t>());
  m.message = r.str();
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const GpuListMsg& m) {
  WireWriter w;
  w.put(m.server_id);
  w.put<uint32_t>(static_cast<uint32_t>(m.gpus.size()));
  for (const auto& g : m.gpus) {
    w.put(g.index).str(g.name).put(static_cast<uint8_t>(g.type)).put(g.vram_bytes);
    w.put<uint8_t>(g.cuda).put<uint8_t>(g.vulkan).put(g.cuda_ordinal).put(g.vulkan_ordinal);
    w.put(g.compute_major).put(g.compute_minor);
    put_array(w, g.uuid);
    w.str(g.pci_bus_id).put(g.vulkan_api_version).put(g.vendor_id).put(g.device_id).str(g.driver);
  }
  return w.take();
}

GpuListMsg decode_gpu_list(std::span<const uint8_t> data) {
  WireReader r(data, "GpuList");
  GpuListMsg m;
  m.server_id = r.get<uint32_t>();
  auto count = r.get<uint32_t>();
  if (count > kMaxGpusPerServer) throw WireError("GpuList: " + std::to_string(count) + " GPUs is over the limit");
  for (uint32_t i = 0; i < count; ++i) {
    GpuInfo g;
    g.index = r.get<uint32_t>();
    g.name = r.str(kMaxNameLength);
    auto type = r.get<uint8_t>();
    if (type > static_cast<uint8_t>(GpuType::Cpu)) throw WireError("GpuList: unknown GPU type " + std::to_string(type));
    g.type = static_cast<GpuType>(type);
    g.vram_bytes = r.get<uint64_t>();
    g.cuda = get_bool(r, "GpuList.cuda");
    g.vulkan = get_bool(r, "GpuList.vulkan");
    g.cuda_ordinal = r.get<int32_t>();
    g.vulkan_ordinal = r.get<int32_t>();
    g.compute_major = r.get<uint32_t>();
    g.compute_minor = r.get<uint32_t>();
    g.uuid = get_array<16>(r);
    g.pci_bus_id = r.str(kMaxNameLength);
    g.vulkan_api_version = r.get<uint32_t>();
    g.vendor_id = r.get<uint32_t>();
    g.device_id = r.get<uint32_t>();
    g.driver = r.str(kMaxNameLength);
    m.gpus.push_back(std::move(g));
  }
  r.expect_end();
  return m;
}

}  // namespace rgpu
