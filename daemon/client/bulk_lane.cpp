#include "bulk_lane.hpp"

#include <sys/socket.h>

#include "app_protocol.hpp"
#include "log.hpp"
#include "wire.hpp"

namespace rgpu::client {

BulkLane::BulkLane(SessionOptions options, uint64_t lane_key, Post post, std::function<void(const std::string&)> lost)
    : post_(std::move(post)), lost_(std::move(lost)) {
  thread_ = std::thread([this, options = std::move(options), lane_key] { run(options, lane_key); });
}

BulkLane::~BulkLane() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // ends a write blocked on a server that stopped reading
  }
  wake_.notify_one();
  thread_.join();
}

void BulkLane::send(std::vector<uint8_t> head, std::span<const uint8_t> body, std::function<void()> sent) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(Job{std::move(head), body, std::move(sent)});
  }
  wake_.notify_one();
}

void BulkLane::fail(const std::string& why) {
  ready_.store(false, std::memory_order_release);
  std::deque<Job> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(jobs_);
  }
  // Frames given to the lane are lost with it: the session cannot go on without them.
  post_([lost = lost_, why] { lost(why); });
  for (Job& job : left) post_(std::move(job.sent));
}

void BulkLane::run(SessionOptions options, uint64_t lane_key) {
  std::unique_ptr<Session> session;
  try {
    session = Session::connect(options);
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      fd_ = session->channel().fd();
    }
    // Writes block while the server's staging is full: no time limit on them.
    timeval none{};
    ::setsockopt(session->channel().fd(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
    WireWriter key;
    key.put(lane_key);
    session->channel().send_frame(kMsgCudaJoin, session->next_request_id(), key.buffer(), 0, Compression::Never);
    const Frame answer = session->channel().receive_frame();
    if (answer.header.type != kMsgCudaJoined) {
      const std::string why = answer.header.type == static_cast<uint16_t>(MsgType::Error)
                                  ? decode_error(answer.payload).message
                                  : std::string("unexpected answer ") + msg_type_name(answer.header.type);
      LOG_WARN("bulk lane to %s not joined: %s", options.server.to_string().c_str(), why.c_str());
      std::lock_guard lock(mutex_);
      fd_ = -1;
      return;
    }
  } catch (const std::exception& e) {
    bool stopping;
    {
      std::lock_guard lock(mutex_);
      stopping = stopping_;
      fd_ = -1;
    }
    if (!stopping) LOG_WARN("bulk lane to %s not opened: %s", options.server.to_string().c_str(), e.what());
    return;
  }
  ready_.store(true, std::memory_order_release);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) break;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    try {
      session->channel().write_all(job.head);
      session->channel().write_all(job.body);
    } catch (const std::exception& e) {
      post_(std::move(job.sent));
      bool stopping;
      {
        std::lock_guard lock(mutex_);
        stopping = stopping_;
      }
      if (!stopping) {
        LOG_WARN("bulk lane to %s lost: %s", options.server.to_string().c_str(), e.what());
        fail(std::string("a bulk lane to the server was lost: ") + e.what());
      }
      break;
    }
    post_(std::move(job.sent));
  }
  std::lock_guard lock(mutex_);
  fd_ = -1;
}

}  // namespace rgpu::client
