#include "worker_session.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "cuda_driver.hpp"
#include "device_memory_meter.hpp"
#include "cuda_wire.hpp"
#include "log.hpp"
#include "messages.hpp"
#include "vulkan_instance.hpp"
#include "vulkan_wire.hpp"

namespace rgpu {

namespace {

// The worker's own ordinal of each session GPU: its driver numbers only the GPUs it can see.
cuda::DeviceMap cuda_devices(const std::vector<WorkerGpu>& gpus) {
  cuda::Driver& driver = cuda::Driver::get();
  if (!driver.ready()) throw std::runtime_error("this server has no working CUDA driver: " + driver.problem());
  auto get_count = driver.fn<CUresult (*)(int*)>("cuDeviceGetCount");
  auto get = driver.fn<CUresult (*)(CUdevice*, int)>("cuDeviceGet");
  auto get_uuid = driver.fn<CUresult (*)(CUuuid*, CUdevice)>("cuDeviceGetUuid_v2");
  if (get_uuid == nullptr) get_uuid = driver.fn<CUresult (*)(CUuuid*, CUdevice)>("cuDeviceGetUuid");
  int count = 0;
  if (get_count == nullptr || get == nullptr || get_uuid == nullptr || get_count(&count) != CUDA_SUCCESS)
    throw std::runtime_error("the CUDA driver cannot list its devices");
  cuda::DeviceMap devices;
  for (const WorkerGpu& gpu : gpus) {
    CUdevice found = -1;
    for (int ordinal = 0; ordinal < count && found < 0; ++ordinal) {
      CUdevice device = 0;
      CUuuid uuid{};
      if (get(&device, ordinal) == CUDA_SUCCESS && get_uuid(&uuid, device) == CUDA_SUCCESS &&
          std::memcmp(uuid.bytes, gpu.uuid.data(), gpu.uuid.size()) == 0)
        found = device;
    }
    if (found < 0) throw std::runtime_error("GPU " + std::to_string(gpu.index) + " is not visible to the CUDA driver");
    devices.real.push_back(found);
  }
  return devices;
}
}  // namespace

WorkerSession::WorkerSession(EventLoop& loop, const WorkerStartMsg& start, std::shared_ptr<MemoryBudget> budget,
                             std::function<void(const std::string&)> on_end)
    : loop_(loop), client_(start.client), on_end_(std::move(on_end)) {
  if (start.api == AppApi::Cuda) {
    cuda::DeviceMap devices = cuda_devices(start.gpus);
    auto send = [this](std::vector<uint8_t> head, BulkPayload tail) {
      post_send(loop_, link_, std::move(head), std::move(tail));
    };
    cuda_ = std::make_shared<cuda::CudaSession>(devices, std::move(budget), send, client_);
    std::vector<std::array<uint8_t, 16>> uuids;
    for (const WorkerGpu& gpu : start.gpus) uuids.push_back(gpu.uuid);
    auto meter = std::make_unique<DeviceMemoryMeter>(uuids);
    if (meter->available())
      cuda_->set_memory_meter(std::move(meter));
    else
      LOG_DEBUG("%s: max_memory counts allocations only: %s", client_.c_str(), meter->problem().c_str());
    return;
  }
  vk::Instance& instance = vk::Instance::get();
  if (!instance.ready()) throw std::runtime_error("this server has no working Vulkan instance: " + instance.problem());
  std::vector<vk::SessionGpu> devices;
  for (const WorkerGpu& gpu : start.gpus) {
    if (gpu.vulkan_ordinal < 0 || static_cast<size_t>(gpu.vulkan_ordinal) >= instance.device_count())
      throw std::runtime_error("GPU " + std::to_string(gpu.index) + " is not a Vulkan device here");
    devices.push_back(vk::SessionGpu{gpu.index, static_cast<uint32_t>(gpu.vulkan_ordinal)});
  }
  auto send = [this](std::vector<uint8_t> frame) {
    loop_.post([this, frame = std::move(frame)]() mutable {
      if (link_) link_->send(std::move(frame));
    });
  };
  vulkan_ = std::make_shared<vk::VulkanSession>(std::move(devices), std::move(budget), send, client_);
}

WorkerSession::~WorkerSession() = default;

void WorkerSession::adopt(WorkerRole role, FrameLink::Handover connection) {
  if (ended_) return;
  const std::string peer = peer_name(connection.fd.get());
  if (role == WorkerRole::Lane) {
    if (!cuda_ || !link_ || lanes_.size() >= kMaxLanesPerSession) {
      LOG_WARN("%s: a bulk lane from %s was refused (%s)", client_.c_str(), peer.c_str(),
               !cuda_ ? "not a CUDA session" : !link_ ? "the session's connection is not there yet" : "too many lanes");
      return;
    }
    // A loop thread per lane, as many as a client opens by default, fewer on a small machine.
    if (!lane_loops_)
      lane_loops_ = std::make_unique<LoopThreads>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 4u));
    lanes_.push_back(BulkLaneReader::start(lane_loops_->next(), std::move(connection), peer, cuda_,
                                           [this](const std::string& reason) {
                                             loop_.post([this, reason] {
                                               end("a bulk lane of the session closed (" + reason + ")");
                                             });
                                           }));
    LOG_INFO("%s: bulk lane from %s joined", client_.c_str(), peer.c_str());
    return;
  }
  if (link_) {
    LOG_WARN("%s: a second session connection from %s was refused", client_.c_str(), peer.c_str());
    return;
  }
  if (connection.ssl)
    LOG_INFO("%s: TLS with the worker's key: %s", client_.c_str(), tls_session_info(connection.ssl.get()).describe().c_str());
  link_ = std::make_shared<FrameLink>(loop_, std::move(connection.fd), peer);
  if (connection.ssl) link_->adopt_tls(std::move(connection.ssl));
  link_->prime(connection.unread);
  if (cuda_) link_->set_bulk_sink(cuda::CudaSession::staging_sink(cuda_), cuda::kBulkFrameMinSize);
  link_->start(FrameLink::Callbacks{
      .on_frame = [this](Frame&& frame) { on_frame(std::move(frame)); },
      .on_close = [this](const std::string& reason) { end("the application's connection closed: " + reason); },
      .on_malformed =
          [this](const FrameError& e) {
            LOG_WARN("%s: malformed frame: %s", client_.c_str(), e.what());
            reply_error(0, ErrorCode::MalformedFrame, std::string("malformed frame: ") + e.what());
          },
  });
}

void WorkerSession::reply_error(uint64_t id, ErrorCode code, const std::string& message) {
  link_->send(encode_frame(static_cast<uint16_t>(MsgType::Error), id, encode(ErrorMsg{code, message})));
}

void WorkerSession::on_frame(Frame&& frame) {
  const uint64_t id = frame.header.request_id;
  if (frame.header.version != kProtocolVersion) {
    reply_error(0, ErrorCode::MalformedFrame,
                "frame carries protocol version " + std::to_string(frame.header.version) + " on a version " +
                    std::to_string(kProtocolVersion) + " connection");
    return link_->finish_after_flush();
  }
  const uint16_t type = frame.header.type;
  if (type == cuda::kMsgCudaCall && cuda_) return cuda_->submit(std::move(frame));
  if (type == vk::kMsgVulkanCall && vulkan_) return vulkan_->submit(std::move(frame));
  if (type == static_cast<uint16_t>(MsgType::Ping))
    return link_->send(encode_frame(static_cast<uint16_t>(MsgType::Pong), id, frame.payload, 0, Compression::Never));
  reply_error(id, ErrorCode::UnexpectedMessage,
              std::string("a ") + (cuda_ ? "CUDA" : "Vulkan") + " session's connection does not carry " +
                  msg_type_name(type) + " (type " + std::to_string(type) + ")");
}

void WorkerSession::end(const std::string& reason) {
  if (ended_) return;
  ended_ = true;
  LOG_INFO("%s: session ended: %s", client_.c_str(), reason.c_str());
  if (link_) link_->close(reason);
  for (auto& lane : lanes_) lane->close(reason);
  if (auto on_end = std::move(on_end_)) on_end(reason);
}

}  // namespace rgpu

namespace rgpu {

void WorkerSession::release() {
  if (cuda_) cuda_->close();
  if (vulkan_) vulkan_->close();
}

}  // namespace rgpu
