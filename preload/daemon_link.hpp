// The interpose's connection to the client daemon: one unix socket and one shared-memory ring
// per application thread, all belonging to the process's one session.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "app_protocol.hpp"
#include "cuda_wire.hpp"
#include "frame.hpp"

namespace rgpu::cuda {

struct ProcessSession {
  bool connected = false;
  std::string problem;  // why not, for the log
  uint64_t id = 0;
  std::string server;
  std::vector<GpuInfo> devices;  // index = this process's device ordinal
};

// Connects the process on first use (thread-safe); later calls return the same answer.
const ProcessSession& process_session();

class DaemonLink {
 public:
  // This thread's link, connected on first use; nullptr when the daemon cannot be reached.
  static DaemonLink* for_this_thread();
  ~DaemonLink();

  // A small id for this application thread (the server runs its calls on a thread of its own).
  uint32_t thread_id() const { return thread_id_; }
  std::span<uint8_t> ring() { return {ring_, ring_size_}; }

  // Sends one frame; with ring_spec, `in` bytes travel from the ring and the answer may land there.
  CUresult send(uint64_t request_id, uint16_t flags, std::span<const uint8_t> payload,
                const RingSpec* ring_spec = nullptr);
  // Reads until the answer to request_id; `answer` points into `storage` or into the ring. Answers
  // to other requests that come first (several requests in flight, answered over different
  // connections) are kept for their own wait.
  CUresult wait(uint64_t request_id, std::vector<uint8_t>& storage, std::span<const uint8_t>& answer);
  // Blocks until the daemon has released the ring bytes at [offset, offset + length).
  CUresult wait_released(uint64_t offset);
  void mark_in_flight(uint64_t offset) { in_flight_.push_back(offset); }
  bool is_broken() const { return broken_; }
  // The ring slot (of `count`) for the next host-to-device chunk: one copy after another goes
  // round the whole ring, so that a copy need not wait for the previous one's chunks to leave.
  size_t next_upload_slot(size_t count) { return next_upload_slot_++ % count; }

 private:
  DaemonLink() = default;
  bool connect(bool first);
  // One frame from the daemon (with an fd when SCM_RIGHTS came along); false when the link broke.
  bool read_frame(Frame& frame, int* received_fd);
  CUresult broken(const std::string& why);
  void handle_unsolicited(const Frame& frame);
  CUresult take_answer(Frame& frame, std::vector<uint8_t>& storage, std::span<const uint8_t>& answer);

  int fd_ = -1;
  uint32_t thread_id_ = 0;
  uint8_t* ring_ = nullptr;
  size_t ring_size_ = 0;
  FrameDecoder decoder_{kMaxFramePayload, kFrameRing};
  std::vector<uint64_t> in_flight_;  // ring offsets the daemon has not released yet
  std::map<uint64_t, Frame> early_;  // answers that came before their wait, by request id
  size_t next_upload_slot_ = 0;
  bool broken_ = false;
};

// Answers that mean the whole session is gone (daemon or server lost).
inline constexpr CUresult kLinkLost = CUDA_ERROR_DEVICE_UNAVAILABLE;

}  // namespace rgpu::cuda
