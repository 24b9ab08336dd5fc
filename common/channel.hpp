// Blocking byte channel over a connected socket, plain or TLS.
#pragma once

#include <openssl/ssl.h>

#include <span>

#include "frame.hpp"
#include "net.hpp"
#include "tls.hpp"

namespace rgpu {

class ChannelClosed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class BlockingChannel {
 public:
  explicit BlockingChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  BlockingChannel(BlockingChannel&&) = default;
  ~BlockingChannel();
  // Takes over the socket for TLS (client side); throws TlsError.
  void start_tls_client(SSL_CTX* ctx);
  void write_all(std::span<const uint8_t> data);
  // At least one byte; throws ChannelClosed at end of stream.
  size_t read_some(std::span<uint8_t> buffer);

  void send_frame(uint16_t type, uint64_t request_id, std::span<const uint8_t> payload, uint16_t flags = 0,
                  Compression compression = Compression::IfWorthIt);
  Frame receive_frame();
  // What the peer may send from the next frame on (FrameLimits).
  void set_limits(FrameLimits limits) { decoder_.set_limits(limits); }

  int fd() const { return fd_.get(); }
  // Hands the socket (and its TLS session) over to another owner, e.g. an event loop.
  void release(UniqueFd& fd, SslPtr& ssl) {
    fd = std::move(fd_);
    ssl = std::move(ssl_);
  }
  SSL* ssl() const { return ssl_.get(); }
  // The connection's TLS session is replaced by another on the same socket (tls_rekey.hpp); the
  // old one ends without a close_notify.
  void replace_tls(SslPtr ssl) { ssl_ = std::move(ssl); }

 private:
  UniqueFd fd_;
  SslPtr ssl_;
  FrameDecoder decoder_;
};

}  // namespace rgpu
