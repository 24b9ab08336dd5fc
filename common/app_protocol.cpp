#include "app_protocol.hpp"

#include <unistd.h>

#include <cstdlib>

#include "frame.hpp"
#include "wire.hpp"

namespace rgpu {

namespace {
constexpr uint32_t kMaxNotes = 64;
constexpr uint32_t kMaxIndices = 256;
}  // namespace

std::vector<uint8_t> encode(const AppHelloMsg& m) {
  WireWriter w;
  w.put(m.pid).str(m.program).put(m.api).put<uint8_t>(m.has_visible_devices ? 1 : 0).str(m.visible_devices);
  return w.take();
}

AppHelloMsg decode_app_hello(std::span<const uint8_t> data) {
  WireReader r(data, "AppHello");
  AppHelloMsg m;
  m.pid = r.get<uint32_t>();
  m.program = r.str(kMaxNameLength);
  const uint8_t api = r.get<uint8_t>();
  if (api > static_cast<uint8_t>(AppApi::Vulkan)) throw WireError("AppHello: unknown API " + std::to_string(api));
  m.api = static_cast<AppApi>(api);
  const uint8_t has = r.get<uint8_t>();
  if (has > 1) throw WireError("AppHello: boolean field holds " + std::to_string(has));
  m.has_visible_devices = has == 1;
  m.visible_devices = r.str(kMaxNameLength);
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const AppAttachMsg& m) {
  WireWriter w;
  w.put(m.session_id);
  return w.take();
}

AppAttachMsg decode_app_attach(std::span<const uint8_t> data) {
  WireReader r(data, "AppAttach");
  AppAttachMsg m;
  m.session_id = r.get<uint64_t>();
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const AppWelcomeMsg& m) {
  WireWriter w;
  w.put(m.session_id).put(m.ring_size).str(m.server);
  GpuListMsg list;
  list.gpus = m.devices;
  w.blob(encode(list));
  w.put<uint32_t>(static_cast<uint32_t>(m.notes.size()));
  for (const auto& note : m.notes) w.str(note);
  return w.take();
}

AppWelcomeMsg decode_app_welcome(std::span<const uint8_t> data) {
  WireReader r(data, "AppWelcome");
  AppWelcomeMsg m;
  m.session_id = r.get<uint64_t>();
  m.ring_size = r.get<uint64_t>();
  m.server = r.str(kMaxNameLength);
  m.devices = decode_gpu_list(r.blob(1u << 20)).gpus;
  const uint32_t notes = r.get<uint32_t>();
  if (notes > kMaxNotes) throw WireError("AppWelcome: " + std::to_string(notes) + " notes is over the limit");
  for (uint32_t i = 0; i < notes; ++i) m.notes.push_back(r.str());
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const RingReleaseMsg& m) {
  WireWriter w;
  w.put(m.offset).put(m.length);
  return w.take();
}

RingReleaseMsg decode_ring_release(std::span<const uint8_t> data) {
  WireReader r(data, "RingRelease");
  RingReleaseMsg m;
  m.offset = r.get<uint64_t>();
  m.length = r.get<uint64_t>();
  r.expect_end();
  return m;
}

std::vector<uint8_t> encode(const SessionOpenMsg& m) {
  WireWriter w;
  w.put<uint32_t>(static_cast<uint32_t>(m.gpu_indices.size()));
  for (uint32_t index : m.gpu_indices) w.put(index);
  return w.take();
}

SessionOpenMsg decode_session_open(std::span<const uint8_t> data) {
  WireReader r(data, "SessionOpen");
  SessionOpenMsg m;
  const uint32_t count = r.get<uint32_t>();
  if (count > kMaxIndices) throw WireError("SessionOpen: " + std::to_string(count) + " GPUs is over the limit");
  for (uint32_t i = 0; i < count; ++i) m.gpu_indices.push_back(r.get<uint32_t>());
  r.expect_end();
  return m;
}

bool ring_spec_fits(const RingSpec& spec, uint64_t ring_size, uint64_t inline_size) {
  auto inside = [&](uint64_t offset, uint64_t length) { return offset <= ring_size && length <= ring_size - offset; };
  return inside(spec.in_offset, spec.in_length) && inside(spec.out_offset, spec.out_capacity) &&
         inline_size <= kMaxFramePayload && spec.in_length <= kMaxFramePayload - inline_size;
}

const char* app_api_name(AppApi api) { return api == AppApi::Vulkan ? "Vulkan" : "CUDA"; }

std::string default_client_socket_path() {
  if (const char* path = std::getenv("RGPU_CLIENT_SOCKET"); path && *path) return path;
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
    return std::string(runtime) + "/rgpu/client.sock";
  return "/run/user/" + std::to_string(::getuid()) + "/rgpu/client.sock";
}

}  // namespace rgpu
