// Host buffers for the data of bulk copies on the server: reused from call to call and
// page-locked for the GPU (cuMemHostRegister) the first time a CUDA thread uses one, so that the
// network receives into them and the GPU copies from them at DMA speed.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "frame.hpp"

namespace rgpu::cuda {

class StagingPool : public std::enable_shared_from_this<StagingPool> {
 public:
  StagingPool(size_t buffer_size, size_t max_buffers);
  ~StagingPool();
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;

  // A free buffer (returned when its owner is dropped), or an empty owner when all are in use.
  BulkPayload acquire();
  // Page-locks the pool buffer that holds `address`, once; on a thread with a current context.
  // A buffer the driver will not lock still works, at pageable speed.
  void pin(const void* address);

 private:
  struct Buffer {
    uint8_t* data = nullptr;
    bool in_use = false;
    bool pinned = false;
    bool pin_tried = false;
  };
  void give_back(uint8_t* data);
  static void unpin_and_free(Buffer& buffer);

  const size_t buffer_size_;
  const size_t max_buffers_;
  std::mutex mutex_;
  std::vector<Buffer> buffers_;
};

}  // namespace rgpu::cuda
