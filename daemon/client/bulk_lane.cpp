#include "bulk_lane.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "app_protocol.hpp"
#include "log.hpp"
#include "wire.hpp"

namespace rgpu::client {

BulkLane::BulkLane(SessionOptions options, uint64_t lane_key, Post post, std::function<void(const std::string&)> lost)
    : post_(std::move(post)), lost_(std::move(lost)), wake_fd_(::eventfd(0, EFD_CLOEXEC)) {
  thread_ = std::thread([this, options = std::move(options), lane_key] { run(options, lane_key); });
}

BulkLane::~BulkLane() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // ends a write blocked on a server that stopped reading
  }
  wake();
  thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void BulkLane::wake() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0 && ::write(wake_fd_, &one, sizeof one) < 0 && errno != EAGAIN)
    LOG_WARN("bulk lane: waking its thread failed: %s", std::strerror(errno));
}

void BulkLane::send(std::vector<uint8_t> head, std::span<const uint8_t> body, std::function<void()> sent) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(Job{std::move(head), body, std::move(sent)});
  }
  wake();
}

bool BulkLane::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
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

bool BulkLane::next_job(int fd, Job& job, std::string& closed) {
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
      if (!jobs_.empty()) {
        job = std::move(jobs_.front());
        jobs_.pop_front();
        return true;
      }
    }
    // Nothing comes from the server on a lane after CudaJoined: its end of the connection closing
    // is the only thing to watch for (a TLS record such as a session ticket may still arrive, so
    // POLLIN is not asked for).
    pollfd watched[2] = {{wake_fd_, POLLIN, 0}, {fd, POLLRDHUP, 0}};
    if (::poll(watched, 2, -1) < 0) {
      if (errno == EINTR) continue;
      closed = std::string("poll failed: ") + std::strerror(errno);
      return false;
    }
    if (watched[0].revents & POLLIN) {
      uint64_t count;
      if (::read(wake_fd_, &count, sizeof count) < 0 && errno != EAGAIN) {
        closed = std::string("reading its wake-up failed: ") + std::strerror(errno);
        return false;
      }
    }
    if (watched[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
      closed = "the server closed it";
      return false;
    }
  }
}

void BulkLane::run(SessionOptions options, uint64_t lane_key) {
  const std::string server = options.server.to_string();
  if (wake_fd_ < 0) {
    LOG_WARN("bulk lane to %s not opened: no eventfd (%s)", server.c_str(), std::strerror(errno));
    return;
  }
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
      LOG_WARN("bulk lane to %s not joined: %s", server.c_str(), why.c_str());
      std::lock_guard lock(mutex_);
      fd_ = -1;
      return;
    }
  } catch (const std::exception& e) {
    const bool quiet = stopping();
    {
      std::lock_guard lock(mutex_);
      fd_ = -1;
    }
    if (!quiet) LOG_WARN("bulk lane to %s not opened: %s", server.c_str(), e.what());
    return;
  }
  ready_.store(true, std::memory_order_release);
  std::string closed;
  Job job;
  while (next_job(session->channel().fd(), job, closed)) {
    try {
      session->channel().write_all(job.head);
      session->channel().write_all(job.body);
    } catch (const std::exception& e) {
      closed = e.what();
      post_(std::move(job.sent));
      break;
    }
    post_(std::move(job.sent));
  }
  if (!stopping()) {
    LOG_WARN("bulk lane to %s lost: %s", server.c_str(), closed.c_str());
    fail("a bulk lane to the server was lost: " + closed);
  }
  std::lock_guard lock(mutex_);
  fd_ = -1;
}

}  // namespace rgpu::client
