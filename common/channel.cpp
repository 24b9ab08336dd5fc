#include "channel.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <openssl/err.h>

namespace rgpu {

namespace {
// A blocking socket reports WANT_READ/WANT_WRITE only when a signal interrupted the call (retry)
// or its send/receive timeout expired (an error).
bool interrupted(int ssl_error) {
  if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) return false;
  if (errno == EINTR) return true;
  throw ChannelClosed("timed out waiting for the peer");
}
}  // namespace

BlockingChannel::~BlockingChannel() {
  if (ssl_) SSL_shutdown(ssl_.get());  // sends close_notify; the peer's answer is not awaited
}

void BlockingChannel::start_tls_client(SSL_CTX* ctx) {
  SslPtr ssl(SSL_new(ctx));
  if (!ssl || SSL_set_fd(ssl.get(), fd_.get()) != 1) throw TlsError("cannot set up TLS: " + openssl_errors());
  for (;;) {
    ERR_clear_error();  // SSL_get_error() reads this thread's error queue
    const int ret = SSL_connect(ssl.get());
    if (ret == 1) break;
    // A signal (a profiler's timer, say) interrupting the blocking handshake is not a failure.
    const int error = SSL_get_error(ssl.get(), ret);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      if (errno == EINTR) continue;
      throw TlsError("TLS handshake failed: timed out waiting for the server");
    }
    throw TlsError("TLS handshake failed: " + openssl_errors());
  }
  ssl_ = std::move(ssl);
}

void BlockingChannel::write_all(std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    if (ssl_) {
      size_t written = 0;
      ERR_clear_error();
      if (SSL_write_ex(ssl_.get(), data.data() + done, data.size() - done, &written) != 1) {
        if (interrupted(SSL_get_error(ssl_.get(), 0))) continue;
        throw ChannelClosed("TLS write failed: " + openssl_errors());
      }
      done += written;
    } else {
      ssize_t n = ::send(fd_.get(), data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw ChannelClosed(std::string("send failed: ") + std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
  }
}

size_t BlockingChannel::read_some(std::span<uint8_t> buffer) {
  for (;;) {
    if (ssl_) {
      size_t got = 0;
      ERR_clear_error();
      if (SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &got) == 1) return got;
      const int err = SSL_get_error(ssl_.get(), 0);
      if (interrupted(err)) continue;
      if (err == SSL_ERROR_ZERO_RETURN) throw ChannelClosed("peer closed the TLS connection");
      if (err == SSL_ERROR_SYSCALL)
        throw ChannelClosed(std::string("TLS read failed: ") + (errno ? std::strerror(errno) : "peer closed the connection"));
      throw ChannelClosed("TLS read failed (SSL error " + std::to_string(err) + ", errno " + std::to_string(errno) +
                          "): " + openssl_errors());
    }
    ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) throw ChannelClosed("peer closed the connection");
    if (errno == EINTR) continue;
    throw ChannelClosed(std::string("receive failed: ") + std::strerror(errno));
  }
}

void BlockingChannel::send_frame(uint16_t type, uint64_t request_id, std::span<const uint8_t> payload, uint16_t flags,
                                 Compression compression) {
  write_all(encode_frame(type, request_id, payload, flags, compression));
}

Frame BlockingChannel::receive_frame() {
  for (;;) {
    if (auto frame = decoder_.next()) return std::move(*frame);
    uint8_t buffer[64 * 1024];
    size_t n = read_some(buffer);
    decoder_.feed({buffer, n});
  }
}

}  // namespace rgpu
