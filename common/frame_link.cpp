#include "frame_link.hpp"

#include <fcntl.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <openssl/err.h>

#include "log.hpp"

namespace rgpu {

namespace {
constexpr size_t kReadChunk = 256 * 1024;
// A link that takes only small frames reads in small pieces: an idle stranger costs little.
size_t read_chunk_for(uint32_t max_payload) {
  return std::clamp<size_t>(size_t{max_payload} + kFrameHeaderSize, 16 * 1024, kReadChunk);
}
}  // namespace

FrameLink::FrameLink(EventLoop& loop, UniqueFd fd, std::string peer, uint32_t max_payload, uint16_t link_flags)
    : loop_(loop), fd_(std::move(fd)), peer_(std::move(peer)), decoder_(max_payload, link_flags),
      read_chunk_(read_chunk_for(max_payload)) {}

void FrameLink::set_limits(FrameLimits limits) {
  decoder_.set_limits(limits);
  read_chunk_ = read_chunk_for(limits.max_payload);
}

FrameLink::~FrameLink() {
  for (auto& item : out_) {
    if (item.release) item.release();
    if (item.fd >= 0) ::close(item.fd);
  }
}

void FrameLink::start(Callbacks callbacks) {
  callbacks_ = std::move(callbacks);
  if (decoder_.buffered() > 0) take_frames();
  if (ssl_) return drive_tls();
  arm_recv();
}

void FrameLink::prime(std::span<const uint8_t> bytes) { decoder_.feed(bytes); }

void FrameLink::hand_over(std::function<void(Handover)> take) {
  if (closed_) return;
  handover_ = std::move(take);
  paused_ = true;
  // Not from inside the frame handler that asked: the reading code above it still uses the socket.
  loop_.post([self = shared_from_this()] { self->finish_handover(); });
}

void FrameLink::finish_handover() {
  if (closed_ || !handover_ || send_armed_ || !out_.empty()) return;  // on_flushed comes back here
  if (recv_armed_ || bulk_) return close("cannot hand over a connection in the middle of a receive");
  Handover handover{std::move(fd_), std::move(ssl_), decoder_.take_rest()};
  auto take = std::move(handover_);
  closed_ = true;
  callbacks_ = {};
  take(std::move(handover));
}

void FrameLink::close(const std::string& reason) {
  if (closed_) return;
  auto keep_alive = shared_from_this();  // the close handler may drop the last owner
  closed_ = true;
  ::shutdown(fd_.get(), SHUT_RDWR);  // completes pending operations; the fd closes with the object
  if (callbacks_.on_close) {
    auto on_close = std::move(callbacks_.on_close);
    on_close(reason);
  }
  callbacks_ = {};
}

// ---- receiving ---------------------------------------------------------------------------------

void FrameLink::arm_recv() {
  if (closed_ || ssl_ || recv_armed_ || pending_tls_ctx_ || tls_handshaking_) return;
  // Not while a receive is pending: the kernel writes into the buffer it was given.
  if (read_buffer_.size() != read_chunk_) {
    read_buffer_.resize(read_chunk_);
    read_buffer_.shrink_to_fit();
  }
  recv_armed_ = true;
  if (bulk_) {  // the rest of a bulk payload goes straight to its memory
    std::span<uint8_t> rest = bulk_->bulk.bytes.subspan(bulk_filled_);
    loop_.recv(fd_.get(), rest, [self = shared_from_this()](int res) { self->on_recv(res); });
    return;
  }
  loop_.recv(fd_.get(), read_buffer_, [self = shared_from_this()](int res) { self->on_recv(res); });
}

void FrameLink::on_recv(int res) {
  recv_armed_ = false;
  if (closed_) return;
  if (res == 0) return close("peer closed the connection");
  if (res < 0) return close(std::string("receive failed: ") + std::strerror(-res));
  if (bulk_) {
    bulk_received(static_cast<size_t>(res));
    take_frames();  // frames that were buffered behind it
  } else {
    take_bytes({read_buffer_.data(), static_cast<size_t>(res)});
  }
  if (!paused_) arm_recv();
}

void FrameLink::pause_reading() { paused_ = true; }

void FrameLink::set_bulk_sink(BulkSink sink, size_t min_size) {
  bulk_sink_ = std::move(sink);
  bulk_min_size_ = min_size;
}

void FrameLink::take_bytes(std::span<const uint8_t> bytes) {
  if (finishing_) return;  // draining a peer we already answered
  if (bulk_) {             // bytes read through TLS for a bulk payload
    const size_t n = std::min(bytes.size(), bulk_->bulk.bytes.size() - bulk_filled_);
    std::memcpy(bulk_->bulk.bytes.data() + bulk_filled_, bytes.data(), n);
    bytes = bytes.subspan(n);
    bulk_received(n);
    if (closed_ || finishing_) return;
  }
  decoder_.feed(bytes);
  take_frames();
}

void FrameLink::take_frames() {
  try {
    while (callbacks_.on_frame && !closed_ && !paused_ && !finishing_ && !bulk_) {  // none before start()
      if (bulk_sink_ && !bulk_declined_) {
        std::optional<FrameHeader> header = decoder_.peek_header();
        if (header && header->payload_len >= bulk_min_size_ && !(header->flags & kFrameCompressed)) {
          if (start_bulk(*header)) continue;
          bulk_declined_ = true;  // asked once per frame
        }
      }
      auto frame = decoder_.next();
      if (!frame) break;
      bulk_declined_ = false;
      callbacks_.on_frame(std::move(*frame));
    }
  } catch (const FrameError& e) {
    if (callbacks_.on_malformed) callbacks_.on_malformed(e);
    if (!finishing_) close(std::string("malformed frame: ") + e.what());
  }
}

bool FrameLink::start_bulk(const FrameHeader& header) {
  BulkPayload memory = bulk_sink_(header);
  if (!memory.owner || memory.bytes.size() < header.payload_len) return false;
  bulk_.emplace();
  bulk_->header = header;
  bulk_->bulk = {memory.bytes.first(header.payload_len), std::move(memory.owner)};
  bulk_filled_ = 0;
  bulk_received(decoder_.take_into(bulk_->bulk.bytes));
  return true;
}

// Delivers the bulk frame once its payload is complete.
void FrameLink::bulk_received(size_t bytes) {
  bulk_filled_ += bytes;
  if (bulk_filled_ < bulk_->bulk.bytes.size()) return;
  Frame frame = std::move(*bulk_);
  bulk_.reset();
  callbacks_.on_frame(std::move(frame));
}

// ---- sending -----------------------------------------------------------------------------------

void FrameLink::send(std::vector<uint8_t> bytes) {
  if (closed_) return;
  out_.push_back(Outgoing{std::move(bytes), {}, {}, 0});
  if (ssl_) return drive_tls();
  if (!send_armed_) send_next();
}

void FrameLink::send_with_fd(std::vector<uint8_t> bytes, int fd) {
  if (closed_ || ssl_) {
    ::close(fd);
    return;
  }
  out_.push_back(Outgoing{std::move(bytes), {}, {}, 0, fd});
  if (!send_armed_) send_next();
}

void FrameLink::send_frame(uint16_t type, uint64_t request_id, std::span<const uint8_t> payload, uint16_t flags,
                           Compression compression) {
  send(encode_frame(type, request_id, payload, flags, compression));
}

void FrameLink::send_borrowed(std::vector<uint8_t> header, std::span<const uint8_t> payload,
                              std::function<void()> release) {
  if (closed_) {
    if (release) release();
    return;
  }
  out_.push_back(Outgoing{std::move(header), payload, std::move(release), 0});
  if (ssl_) return drive_tls();
  if (!send_armed_) send_next();
}

// Everything queued goes in one sendmsg (up to kMaxSendParts pieces): many small frames, such as
// a burst of pipelined calls, cost one system call rather than one each.
void FrameLink::send_next() {
  size_t n = 0;
  for (size_t i = 0; i < out_.size() && n + 2 <= kMaxSendParts; ++i) {
    Outgoing& item = out_[i];
    if (i > 0 && item.fd >= 0) break;  // a descriptor travels with its own frame's first byte
    if (item.offset < item.owned.size()) {
      iov_[n++] = {item.owned.data() + item.offset, item.owned.size() - item.offset};
      if (!item.borrowed.empty()) iov_[n++] = {const_cast<uint8_t*>(item.borrowed.data()), item.borrowed.size()};
    } else {
      const size_t skip = item.offset - item.owned.size();
      iov_[n++] = {const_cast<uint8_t*>(item.borrowed.data()) + skip, item.borrowed.size() - skip};
    }
  }
  Outgoing& front = out_.front();
  message_ = {};
  message_.msg_iov = iov_;
  message_.msg_iovlen = n;
  if (front.fd >= 0 && front.offset == 0) {
    message_.msg_control = control_;
    message_.msg_controllen = sizeof control_;
    cmsghdr* c = CMSG_FIRSTHDR(&message_);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &front.fd, sizeof(int));
  }
  send_armed_ = true;
  loop_.sendmsg(fd_.get(), &message_, [self = shared_from_this()](int res) { self->on_sent(res); });
}

// `bytes` left from the front of the queue: finished items go (their release runs).
void FrameLink::complete_sent(size_t bytes) {
  while (!out_.empty()) {
    Outgoing& front = out_.front();
    if (front.fd >= 0 && bytes > 0) {  // the descriptor went with the first byte
      ::close(front.fd);
      front.fd = -1;
    }
    const size_t taken = std::min(bytes, front.size() - front.offset);
    front.offset += taken;
    bytes -= taken;
    if (front.offset < front.size()) return;
    auto release = std::move(front.release);
    out_.pop_front();
    if (release) release();
  }
}

void FrameLink::on_sent(int res) {
  if (closed_) {
    send_armed_ = false;
    return;
  }
  if (res < 0) {
    send_armed_ = false;
    return close(std::string("send failed: ") + std::strerror(-res));
  }
  // Still armed while releases run: one that sends on this link only queues (the next sendmsg
  // starts below, from offsets that count what just left).
  complete_sent(static_cast<size_t>(res));
  send_armed_ = false;
  if (closed_) return;
  if (!out_.empty()) return send_next();
  on_flushed();
}

void FrameLink::on_flushed() {
  if (pending_tls_ctx_) return begin_tls();
  if (handover_) return finish_handover();
  if (finishing_ && !write_shut_) {
    write_shut_ = true;
    ::shutdown(fd_.get(), SHUT_WR);  // the peer reads what we sent, then sees the end of the stream
    paused_ = false;
    arm_recv();
  }
}

void FrameLink::finish_after_flush() {
  if (closed_ || finishing_) return;
  finishing_ = true;
  if (ssl_) return drive_tls();
  if (!send_armed_ && out_.empty()) on_flushed();
}

// ---- TLS ---------------------------------------------------------------------------------------

void FrameLink::start_tls_server(SSL_CTX* ctx, std::function<void()> done) {
  pending_tls_ctx_ = ctx;
  tls_done_ = std::move(done);
  paused_ = true;
  if (!send_armed_ && out_.empty()) begin_tls();
}

void FrameLink::begin_tls() {
  SslPtr ssl(SSL_new(pending_tls_ctx_));
  pending_tls_ctx_ = nullptr;
  if (!ssl || SSL_set_fd(ssl.get(), fd_.get()) != 1) return close("cannot set up TLS: " + openssl_errors());
  make_nonblocking();
  SSL_set_accept_state(ssl.get());
  ssl_ = std::move(ssl);
  tls_handshaking_ = true;
  paused_ = false;
  drive_tls();
}

void FrameLink::adopt_tls(SslPtr ssl) {
  make_nonblocking();
  ssl_ = std::move(ssl);
  if (callbacks_.on_frame) drive_tls();
}

// OpenSSL reads and writes the socket itself, on the event loop's thread: it must never block.
void FrameLink::make_nonblocking() {
  const int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
}

bool FrameLink::handle_ssl_result(int ret, const char* what) {
  switch (SSL_get_error(ssl_.get(), ret)) {
    case SSL_ERROR_WANT_READ: want_poll(POLLIN); return true;
    case SSL_ERROR_WANT_WRITE: want_poll(POLLOUT); return true;
    case SSL_ERROR_ZERO_RETURN: close("peer closed the TLS session"); return false;
    case SSL_ERROR_SYSCALL:
      close(std::string("TLS ") + what + " failed: " + (errno ? std::strerror(errno) : "peer went away"));
      return false;
    default: close(std::string("TLS ") + what + " failed: " + openssl_errors()); return false;
  }
}

void FrameLink::want_poll(short events) {
  if (poll_armed_ & events) return;
  poll_armed_ |= events;
  loop_.poll(fd_.get(), events, [self = shared_from_this(), events](int res) {
    self->poll_armed_ &= static_cast<short>(~events);
    if (self->closed_) return;
    if (res < 0) return self->close(std::string("poll failed: ") + std::strerror(-res));
    self->drive_tls();
  });
}

// Reading may deliver a frame whose handler queues an answer, which drives TLS again: that inner
// call only asks this loop to go round once more, so the stack stays flat.
void FrameLink::drive_tls() {
  if (driving_) {
    drive_again_ = true;
    return;
  }
  driving_ = true;
  auto keep_alive = shared_from_this();
  do {
    drive_again_ = false;
    drive_tls_once();
  } while (drive_again_ && !closed_);
  driving_ = false;
}

void FrameLink::drive_tls_once() {
  if (closed_) return;
  if (tls_handshaking_) {
    ERR_clear_error();  // SSL_get_error() reads this thread's error queue
    int ret = SSL_do_handshake(ssl_.get());
    if (ret != 1) {
      handle_ssl_result(ret, "handshake");
      return;
    }
    tls_handshaking_ = false;
    if (tls_done_) {
      auto done = std::move(tls_done_);
      done();
      if (closed_) return;
    }
  }
  while (!out_.empty()) {
    Outgoing& front = out_.front();
    const uint8_t* data;
    size_t size;
    if (front.offset < front.owned.size()) {
      data = front.owned.data() + front.offset;
      size = front.owned.size() - front.offset;
    } else {
      data = front.borrowed.data() + (front.offset - front.owned.size());
      size = front.size() - front.offset;
    }
    size_t written = 0;
    ERR_clear_error();
    int ret = SSL_write_ex(ssl_.get(), data, size, &written);
    if (ret != 1) {
      if (!handle_ssl_result(ret, "write")) return;
      break;
    }
    complete_sent(written);
  }
  if (out_.empty() && finishing_ && !write_shut_) {
    write_shut_ = true;
    ::shutdown(fd_.get(), SHUT_WR);
  }
  if (out_.empty() && handover_) {
    loop_.post([self = shared_from_this()] { self->finish_handover(); });
    return;
  }
  if (read_buffer_.size() != read_chunk_) read_buffer_.resize(read_chunk_);
  while (!paused_ || finishing_) {
    size_t got = 0;
    ERR_clear_error();
    int ret = SSL_read_ex(ssl_.get(), read_buffer_.data(), read_buffer_.size(), &got);
    if (ret != 1) {
      handle_ssl_result(ret, "read");
      return;
    }
    take_bytes({read_buffer_.data(), got});
    if (closed_ || drive_again_) return;  // answers were queued: send them before reading on
  }
}

void post_send(EventLoop& loop, std::weak_ptr<FrameLink> link, std::vector<uint8_t> head, BulkPayload tail) {
  loop.post([link = std::move(link), head = std::move(head), tail = std::move(tail)]() mutable {
    auto alive = link.lock();
    if (!alive) return;
    if (!tail.owner) return alive->send(std::move(head));
    alive->send_borrowed(std::move(head), tail.bytes, [owner = std::move(tail.owner)]() mutable { owner.reset(); });
  });
}

}  // namespace rgpu
