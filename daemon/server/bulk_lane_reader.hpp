// A bulk lane of a CUDA session, once joined: read on an event loop of its own, so that a
// session's lanes are received in parallel (one thread reading every connection is slower than
// one TCP stream can go). It carries the session's CUDA calls only, large host-to-device chunks
// going straight into the session's staging memory; the answers to calls that came over it go
// back over it (device-to-host chunks, sent from staging memory).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cuda_session.hpp"
#include "event_loop.hpp"
#include "frame_link.hpp"
#include "messages.hpp"

namespace rgpu {

class BulkLaneReader : public std::enable_shared_from_this<BulkLaneReader> {
 public:
  // Runs on the lane's loop thread, once.
  using ClosedFn = std::function<void(const std::string& reason)>;

  // Takes the joined connection over on `loop` (the main process answered the join).
  static std::shared_ptr<BulkLaneReader> start(std::shared_ptr<EventLoop> loop, FrameLink::Handover connection,
                                               std::string peer, std::shared_ptr<cuda::CudaSession> session,
                                               ClosedFn on_closed);
  // Any thread.
  void close(const std::string& reason);

  BulkLaneReader(std::shared_ptr<EventLoop> loop, std::shared_ptr<cuda::CudaSession> session, ClosedFn on_closed)
      : loop_(std::move(loop)), session_(std::move(session)), on_closed_(std::move(on_closed)) {}

 private:
  void begin(FrameLink::Handover connection, std::string peer);
  void on_frame(Frame&& frame);
  void refuse(ErrorCode code, const std::string& message);

  std::shared_ptr<EventLoop> loop_;  // outlives link_, which refers to it
  std::shared_ptr<cuda::CudaSession> session_;
  ClosedFn on_closed_;
  std::shared_ptr<FrameLink> link_;  // on loop_'s thread only
  // How answers to calls that came over this lane go back over it (any thread).
  std::shared_ptr<const cuda::CudaSession::SendFn> answer_here_;
};

}  // namespace rgpu
