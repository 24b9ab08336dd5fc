// A framed connection driven by the io_uring event loop: plain TCP or unix sockets through
// io_uring recv/send, TLS through OpenSSL on readiness (in the kernel when kTLS is active).
// Owned by shared_ptr: pending operations keep it alive until they complete.
#pragma once

#include <openssl/ssl.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <sys/uio.h>
#include <vector>

#include "event_loop.hpp"
#include "frame.hpp"
#include "net.hpp"
#include "tls.hpp"

namespace rgpu {

class FrameLink : public std::enable_shared_from_this<FrameLink> {
 public:
  struct Callbacks {
    std::function<void(Frame&&)> on_frame;
    // Called once, after which the link does nothing more. The reason is for logs.
    std::function<void(const std::string& reason)> on_close;
    // A malformed frame arrived; the link closes right after (the handler may queue an answer first).
    std::function<void(const FrameError&)> on_malformed;
  };

  // link_flags: frame flag bits this link defines on top of the frame's own (see FrameDecoder).
  FrameLink(EventLoop& loop, UniqueFd fd, std::string peer, uint32_t max_payload = kMaxFramePayload,
            uint16_t link_flags = 0);
  ~FrameLink();

  void start(Callbacks callbacks);
  // Queues bytes (one or more whole encoded frames) for sending.
  void send(std::vector<uint8_t> bytes);
  void send_frame(uint16_t type, uint64_t request_id, std::span<const uint8_t> payload, uint16_t flags = 0,
                  Compression compression = Compression::IfWorthIt);
  // Queues one encoded frame and a file descriptor that travels with its first byte (SCM_RIGHTS,
  // unix sockets only). The link owns `fd` from here on and closes it once it has been sent.
  void send_with_fd(std::vector<uint8_t> bytes, int fd);
  // Queues a header and a payload that lives elsewhere (a shared-memory ring): no copy is made.
  // `release` runs once the payload has been handed to the kernel.
  void send_borrowed(std::vector<uint8_t> header, std::span<const uint8_t> payload, std::function<void()> release);

  // Stops taking frames after the current one (before a TLS upgrade).
  void pause_reading();
  // Server side: once everything queued has left, runs a TLS accept on this socket; `done` reports it.
  void start_tls_server(SSL_CTX* ctx, std::function<void()> done);
  // Takes over a TLS session already established on this socket (blocking handshake done elsewhere).
  // Call it before start(): the socket may already hold TLS records.
  void adopt_tls(SslPtr ssl);

  // Gives the connection to another owner (a link on another event loop): stops reading after the
  // current frame and, once everything queued has left, hands over the socket, its TLS session and
  // any bytes received past that frame. The link is closed from then on, without on_close; if it
  // closes first, `take` never runs.
  struct Handover {
    UniqueFd fd;
    SslPtr ssl;
    std::vector<uint8_t> unread;
  };
  void hand_over(std::function<void(Handover)> take);
  // Bytes received before this link existed (a handover's `unread`); call it before start().
  void prime(std::span<const uint8_t> bytes);

  // Sends what is queued, then half-closes; the link closes when the peer does (or on close()).
  void finish_after_flush();
  void close(const std::string& reason);

  bool closed() const { return closed_; }
  SSL* ssl() const { return ssl_.get(); }
  const std::string& peer() const { return peer_; }
  int fd() const { return fd_.get(); }
  size_t buffered() const { return decoder_.buffered(); }

  // What the peer may send from the next frame on (FrameLimits); the receive buffer shrinks or
  // grows with it.
  void set_limits(FrameLimits limits);

  // Large uncompressed frames (payload of at least `min_size` bytes) may be received straight into
  // memory the sink provides for their header: pinned staging memory, a shared ring. The sink
  // returns an empty owner (or too small a span) to take the frame the usual way.
  using BulkSink = std::function<BulkPayload(const FrameHeader&)>;
  void set_bulk_sink(BulkSink sink, size_t min_size);

 private:
  void make_nonblocking();
  struct Outgoing {
    std::vector<uint8_t> owned;
    std::span<const uint8_t> borrowed;
    std::function<void()> release;
    size_t offset = 0;
    int fd = -1;  // passed with the first byte, then closed
    size_t size() const { return owned.size() + borrowed.size(); }
  };

  void arm_recv();
  void on_recv(int res);
  void take_bytes(std::span<const uint8_t> bytes);
  void take_frames();
  bool start_bulk(const FrameHeader& header);
  void bulk_received(size_t bytes);
  void send_next();
  void on_sent(int res);
  void on_flushed();
  void begin_tls();
  bool handle_ssl_result(int ret, const char* what);
  void want_poll(short events);
  void drive_tls();
  void drive_tls_once();
  void complete_sent(size_t bytes);
  void finish_handover();

  EventLoop& loop_;
  UniqueFd fd_;
  std::string peer_;
  Callbacks callbacks_;
  bool closed_ = false;
  bool paused_ = false;
  bool finishing_ = false;
  bool write_shut_ = false;

  FrameDecoder decoder_;
  std::vector<uint8_t> read_buffer_;
  size_t read_chunk_;  // the size read_buffer_ takes at the next receive
  bool recv_armed_ = false;
  BulkSink bulk_sink_;
  size_t bulk_min_size_ = 0;
  std::optional<Frame> bulk_;  // the frame whose payload is being received into bulk memory
  size_t bulk_filled_ = 0;
  bool bulk_declined_ = false;  // the sink declined the frame at the front
  std::deque<Outgoing> out_;
  bool send_armed_ = false;
  static constexpr size_t kMaxSendParts = 64;
  iovec iov_[kMaxSendParts]{};
  msghdr message_{};
  alignas(cmsghdr) char control_[CMSG_SPACE(sizeof(int))]{};

  SslPtr ssl_;
  SSL_CTX* pending_tls_ctx_ = nullptr;
  std::function<void()> tls_done_;
  std::function<void(Handover)> handover_;
  bool tls_handshaking_ = false;
  short poll_armed_ = 0;
  bool driving_ = false;
  bool drive_again_ = false;
};

// Sends a frame's encoded start and, when `tail` has an owner, the bytes it holds after it, from
// any thread: the send runs on `loop`, if the link is still there; the owner goes once sent.
void post_send(EventLoop& loop, std::weak_ptr<FrameLink> link, std::vector<uint8_t> head, BulkPayload tail);

}  // namespace rgpu
