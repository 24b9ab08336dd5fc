#include "bulk_lane.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
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

namespace {
Keepalive::Clock::rep ticks_now() { return Keepalive::Clock::now().time_since_epoch().count(); }
}  // namespace

BulkLane::BulkLane(SessionOptions options, uint64_t lane_key, std::chrono::milliseconds keepalive, Post post,
                   std::function<void(const std::string&)> lost, std::function<void(Frame&&)> answered)
    : keepalive_(keepalive),
      post_(std::move(post)), lost_(std::move(lost)), answered_(std::move(answered)), wake_fd_(::eventfd(0, EFD_CLOEXEC)) {
  thread_ = std::thread([this, options = std::move(options), lane_key] { run(options, lane_key); });
}

void BulkLane::retire() {
  ready_.store(false, std::memory_order_release);
  std::lock_guard lock(mutex_);
  stopping_ = true;
}

void BulkLane::stop() {
  retire();
  {
    std::lock_guard lock(mutex_);
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // ends a write blocked on a server that stopped reading
  }
  wake();
}

BulkLane::~BulkLane() {
  stop();
  thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void BulkLane::wake() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0 && ::write(wake_fd_, &one, sizeof one) < 0 && errno != EAGAIN)
    LOG_WARN("bulk lane: waking its thread failed: %s", std::strerror(errno));
}

void BulkLane::send(std::vector<uint8_t> head, std::span<const uint8_t> body, std::function<void()> sent,
                    std::optional<Answer> answer) {
  {
    std::lock_guard lock(mutex_);
    if (answer) awaited_[answer->request_id] = std::move(*answer);
    jobs_.push_back(Job{std::move(head), body, std::move(sent)});
  }
  wake();
}

bool BulkLane::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void BulkLane::fail(const std::string& server, const std::string& closed) {
  ready_.store(false, std::memory_order_release);
  if (failed_.exchange(true)) return;  // both of its threads may find the connection gone
  if (stopping()) {  // its session ended: the end of the connection is expected
    LOG_DEBUG("bulk lane to %s closed: %s", server.c_str(), closed.c_str());
    return;
  }
  LOG_WARN("bulk lane to %s lost: %s", server.c_str(), closed.c_str());
  const std::string why = "a bulk lane to the server was lost: " + closed;
  std::deque<Job> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(jobs_);
    awaited_.clear();
  }
  // Frames given to the lane are lost with it: the session cannot go on without them.
  post_([lost = lost_, why] { lost(why); });
  for (Job& job : left) post_(std::move(job.sent));
}

bool BulkLane::keep_alive(BlockingChannel& channel, std::string& closed) {
  const Keepalive::Clock::time_point heard{Keepalive::Clock::duration(heard_.load(std::memory_order_acquire))};
  switch (keepalive_.check(Keepalive::Clock::now(), heard)) {
    case Keepalive::Due::Nothing: return true;
    case Keepalive::Due::Gone: closed = "the server " + keepalive_.silence(); return false;
    case Keepalive::Due::Ping: break;
  }
  try {
    channel.send_frame(static_cast<uint16_t>(MsgType::Ping), 0, {}, 0, Compression::Never);
    return true;
  } catch (const std::exception& e) {
    closed = e.what();
    return false;
  }
}

bool BulkLane::next_job(BlockingChannel& channel, bool pinging, Job& job, std::string& closed) {
  const int fd = channel.fd();
  for (;;) {
    // Between frames too: a lane kept busy with copies is pinged all the same.
    if (pinging && !keep_alive(channel, closed)) return false;
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
    if (::poll(watched, 2, pinging ? static_cast<int>(keepalive_.period().count()) : -1) < 0) {
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
    if (watched[1].revents & POLLERR) {
      int error = 0;
      socklen_t length = sizeof error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
      // ETIMEDOUT: data it sent went unacknowledged for keepalive_timeout (TCP_USER_TIMEOUT).
      closed = std::string("the connection failed: ") + std::strerror(error);
      return false;
    }
    if (watched[1].revents & (POLLRDHUP | POLLHUP)) {
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
    // The worker reads its lanes whatever its driver calls do (into heap memory when its staging
    // is full): a write that moves nothing for keepalive_timeout, or data that its host does not
    // acknowledge for that long, means a server that stopped or a network that no longer delivers.
    const auto limit = keepalive_.timeout();
    const timeval write_limit{static_cast<time_t>(limit.count() / 1000),
                              static_cast<suseconds_t>(limit.count() % 1000 * 1000)};
    ::setsockopt(session->channel().fd(), SOL_SOCKET, SO_SNDTIMEO, &write_limit, sizeof write_limit);
    const unsigned unacknowledged = static_cast<unsigned>(limit.count());
    ::setsockopt(session->channel().fd(), IPPROTO_TCP, TCP_USER_TIMEOUT, &unacknowledged, sizeof unacknowledged);
    try {
      session->join_cuda_session(lane_key);
    } catch (const RemoteError& e) {
      LOG_WARN("bulk lane to %s not joined: %s", server.c_str(), e.what());
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
  // An unencrypted connection may be read by one thread while another writes it; a TLS session
  // may not, so a TLS lane only sends. (Its one thread must not read an answer after each request
  // either: a frame queued behind the request may carry another thread's earlier call, which the
  // server runs first, so the answer would wait for a frame that waits for the answer.)
  // A lane that receives answers is pinged when quiet, its Pongs read by the receiver; a TLS lane
  // only sends, and is watched by its writes' limits above (the session's own connection is
  // pinged all the same).
  heard_.store(ticks_now(), std::memory_order_release);
  std::thread receiver;
  const bool plain = session->channel().ssl() == nullptr;
  answers_.store(plain, std::memory_order_release);
  ready_.store(true, std::memory_order_release);  // before the receiver, which may fail at once
  if (plain) {
    timeval none{};
    ::setsockopt(session->channel().fd(), SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    // Only recv() on the socket: the writer's send() may run beside it.
    receiver = std::thread([this, &channel = session->channel(), server] {
      const std::string closed = receive_answers(channel);
      if (!stopping()) fail(server, closed);
    });
  }
  std::string closed;
  Job job;
  while (next_job(session->channel(), plain, job, closed)) {
    const auto started = Keepalive::Clock::now();
    try {
      session->channel().write_all(job.head);
      session->channel().write_all(job.body);
    } catch (const std::exception& e) {
      closed = e.what();
      if (Keepalive::Clock::now() - started >= keepalive_.timeout())
        closed = "a write moved nothing for keepalive_timeout (" + closed + ")";
      post_(std::move(job.sent));
      break;
    }
    post_(std::move(job.sent));
  }
  if (!stopping()) fail(server, closed);
  if (receiver.joinable()) {
    ::shutdown(session->channel().fd(), SHUT_RDWR);  // ends its read
    receiver.join();
  }
  std::lock_guard lock(mutex_);
  fd_ = -1;
}

namespace {
bool read_exactly(BlockingChannel& channel, std::span<uint8_t> into, std::string& closed) {
  try {
    for (size_t got = 0; got < into.size();) got += channel.read_some(into.subspan(got));
    return true;
  } catch (const ChannelClosed& e) {
    closed = e.what();
    return false;
  }
}
}  // namespace

std::string BulkLane::receive_answers(BlockingChannel& channel) {
  std::vector<uint8_t> start(kFrameHeaderSize);
  std::string closed;
  for (;;) {
    if (!read_exactly(channel, start, closed)) return closed;
    FrameDecoder decoder;
    decoder.feed(start);
    FrameHeader header;
    try {
      header = *decoder.peek_header();
    } catch (const FrameError& e) {
      return std::string("malformed frame from the server: ") + e.what();
    }
    heard_.store(ticks_now(), std::memory_order_release);
    std::optional<Answer> awaited;
    {
      std::lock_guard lock(mutex_);
      if (auto it = awaited_.find(header.request_id); it != awaited_.end()) {
        awaited = std::move(it->second);
        awaited_.erase(it);
      }
    }
    Frame frame;
    if (awaited && !(header.flags & kFrameCompressed) && header.payload_len <= awaited->into.size()) {
      const std::span<uint8_t> into = awaited->into.first(header.payload_len);
      if (!read_exactly(channel, into, closed)) return closed;
      frame.header = header;
      frame.bulk = BulkPayload{into, std::move(awaited->owner)};
    } else {
      std::vector<uint8_t> payload(header.payload_len);
      if (!read_exactly(channel, payload, closed)) return closed;
      decoder.feed(payload);
      try {
        frame = std::move(*decoder.next());
      } catch (const FrameError& e) {
        return std::string("malformed frame from the server: ") + e.what();
      }
    }
    heard_.store(ticks_now(), std::memory_order_release);
    if (frame.header.type == static_cast<uint16_t>(MsgType::Pong)) continue;  // the keepalive's answer
    post_([answered = answered_, frame = std::move(frame)]() mutable { answered(std::move(frame)); });
  }
}

}  // namespace rgpu::client
