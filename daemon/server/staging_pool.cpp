#include "staging_pool.hpp"

#include <cstdlib>

#include "cuda_driver.hpp"
#include "log.hpp"

namespace rgpu::cuda {

namespace {
constexpr size_t kAlignment = 2u << 20;  // lets the kernel back buffers with huge pages
}

StagingPool::StagingPool(size_t buffer_size, size_t max_buffers)
    : buffer_size_((buffer_size + kAlignment - 1) / kAlignment * kAlignment), max_buffers_(max_buffers) {}

StagingPool::~StagingPool() {
  for (Buffer& buffer : buffers_) unpin_and_free(buffer);  // none is in use: owners hold the pool
}

BulkPayload StagingPool::acquire() {
  std::lock_guard lock(mutex_);
  Buffer* found = nullptr;
  for (Buffer& buffer : buffers_)
    if (!buffer.in_use) {
      found = &buffer;
      break;
    }
  if (found == nullptr) {
    if (buffers_.size() >= max_buffers_) return {};
    void* memory = std::aligned_alloc(kAlignment, buffer_size_);
    if (memory == nullptr) return {};
    buffers_.push_back(Buffer{static_cast<uint8_t*>(memory)});
    found = &buffers_.back();
  }
  found->in_use = true;
  uint8_t* data = found->data;
  // The owner keeps the pool alive until the buffer is back.
  std::shared_ptr<void> owner(data, [pool = shared_from_this()](void* p) { pool->give_back(static_cast<uint8_t*>(p)); });
  return BulkPayload{{data, buffer_size_}, std::move(owner)};
}

void StagingPool::give_back(uint8_t* data) {
  std::lock_guard lock(mutex_);
  for (Buffer& buffer : buffers_)
    if (buffer.data == data) buffer.in_use = false;
}

void StagingPool::pin(const void* address) {
  const auto* p = static_cast<const uint8_t*>(address);
  uint8_t* data = nullptr;
  {
    std::lock_guard lock(mutex_);
    for (Buffer& buffer : buffers_) {
      if (p < buffer.data || p >= buffer.data + buffer_size_) continue;
      if (buffer.pin_tried) return;
      buffer.pin_tried = true;
      data = buffer.data;
      break;
    }
  }
  if (data == nullptr) return;
  // Without the lock: the driver may take its time, and the event loop takes the lock for each
  // large frame it receives (acquire), so it must not wait for the driver. The caller holds the
  // buffer meanwhile, so it stays.
  auto host_register = Driver::get().fn<CUresult (*)(void*, size_t, unsigned)>("cuMemHostRegister_v2");
  if (host_register == nullptr) return;
  const CUresult r = [&] {
    RelaxedCapture relaxed;
    return host_register(data, buffer_size_, CU_MEMHOSTREGISTER_PORTABLE);
  }();
  if (r != CUDA_SUCCESS) LOG_WARN("cannot page-lock a staging buffer (%s); copies run at pageable speed", error_name(r));
  std::lock_guard lock(mutex_);
  for (Buffer& buffer : buffers_)
    if (buffer.data == data) buffer.pinned = r == CUDA_SUCCESS;
}

void StagingPool::unpin_and_free(Buffer& buffer) {
  if (buffer.pinned) {
    auto host_unregister = Driver::get().fn<CUresult (*)(void*)>("cuMemHostUnregister");
    if (host_unregister) {
      RelaxedCapture relaxed;
      // Already unlocked when the last context it was locked in went away.
      if (CUresult r = host_unregister(buffer.data); r != CUDA_SUCCESS && r != CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED)
        LOG_WARN("cannot unlock a staging buffer: %s", error_name(r));
    }
  }
  std::free(buffer.data);
  buffer.data = nullptr;
}

}  // namespace rgpu::cuda
