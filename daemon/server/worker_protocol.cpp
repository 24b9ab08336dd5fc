#include "worker_protocol.hpp"

#include "frame.hpp"
#include "messages.hpp"
#include "wire.hpp"

namespace rgpu {

std::vector<uint8_t> encode(const WorkerStartMsg& msg) {
  WireWriter w;
  w.put(static_cast<uint8_t>(msg.api)).str(msg.client).put(static_cast<uint32_t>(msg.gpus.size()));
  for (const auto& gpu : msg.gpus) w.put(gpu.index).bytes(gpu.uuid.data(), gpu.uuid.size()).put(gpu.vulkan_ordinal);
  w.put(msg.budget_slot);
  return w.take();
}

WorkerStartMsg decode_worker_start(std::span<const uint8_t> payload) {
  WireReader r(payload, "WorkerStart");
  WorkerStartMsg msg;
  const auto api = r.get<uint8_t>();
  if (api > static_cast<uint8_t>(AppApi::Vulkan)) throw WireError("WorkerStart: unknown API " + std::to_string(api));
  msg.api = static_cast<AppApi>(api);
  msg.client = r.str(kMaxNameLength);
  const auto count = r.get<uint32_t>();
  if (count > kMaxGpusPerServer) throw WireError("WorkerStart: " + std::to_string(count) + " GPUs");
  msg.gpus.resize(count);
  for (auto& gpu : msg.gpus) {
    gpu.index = r.get<uint32_t>();
    auto uuid = r.bytes(gpu.uuid.size());
    std::copy(uuid.begin(), uuid.end(), gpu.uuid.begin());
    gpu.vulkan_ordinal = r.get<int32_t>();
  }
  msg.budget_slot = r.get<uint32_t>();
  r.expect_end();
  return msg;
}

std::vector<uint8_t> encode(const WorkerAdoptMsg& msg) {
  WireWriter w;
  w.put(static_cast<uint8_t>(msg.role)).put(static_cast<uint8_t>(msg.rekey)).bytes(msg.psk.data(), msg.psk.size());
  w.blob(msg.unread);
  return w.take();
}

WorkerAdoptMsg decode_worker_adopt(std::span<const uint8_t> payload) {
  WireReader r(payload, "WorkerAdopt");
  WorkerAdoptMsg msg;
  const auto role = r.get<uint8_t>();
  if (role > static_cast<uint8_t>(WorkerRole::Lane)) throw WireError("WorkerAdopt: unknown role " + std::to_string(role));
  msg.role = static_cast<WorkerRole>(role);
  msg.rekey = r.get<uint8_t>() != 0;
  auto psk = r.bytes(msg.psk.size());
  std::copy(psk.begin(), psk.end(), msg.psk.begin());
  auto unread = r.blob(kMaxFramePayload);
  msg.unread.assign(unread.begin(), unread.end());
  r.expect_end();
  return msg;
}

}  // namespace rgpu
