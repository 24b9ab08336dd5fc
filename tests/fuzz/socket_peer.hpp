// For fuzz targets that drive a real daemon of this process through its listening socket: an
// abstract unix socket address, and one connection's exchange (the input in chunks, then the end
// of it; every frame answered goes to a check; the daemon must close the connection).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "frame.hpp"
#include "target.hpp"

namespace rgpu::fuzz {

class AbstractSocket {
 public:
  explicit AbstractSocket(const std::string& name) {
    address_.sun_family = AF_UNIX;
    const std::string unique = name + "-" + std::to_string(::getpid());
    std::strncpy(address_.sun_path + 1, unique.c_str(), sizeof address_.sun_path - 2);
    length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + std::strlen(address_.sun_path + 1));
  }
  // A listening socket at this address (for the daemon to take), or -1.
  int listen() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address_), length_) != 0 || ::listen(fd, 64) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  int connect() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&address_), length_) == 0) return fd;
    if (fd >= 0) ::close(fd);
    return -1;
  }

 private:
  sockaddr_un address_{};
  socklen_t length_ = 0;
};

// Sends `stream` over a new connection in writes of at most `chunk` bytes, then shuts the write
// side; hands every frame received to `check` (through a decoder with `link_flags`) until the peer
// closes. Fails (naming `target`) on a malformed frame, a frame cut short, or a peer that has not
// closed within `limit`.
inline void exchange(const char* target, const AbstractSocket& where, std::span<const uint8_t> stream, size_t chunk,
                     uint16_t link_flags, const std::function<void(const Frame&)>& check,
                     std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const int fd = where.connect();
  if (fd < 0) fail(target, "cannot connect");
  FrameDecoder answers(kMaxFramePayload, link_flags);
  std::vector<uint8_t> buffer(1 << 16);
  size_t sent = 0;
  bool writing = true;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (writing && sent == stream.size()) {
      ::shutdown(fd, SHUT_WR);
      writing = false;
    }
    if (std::chrono::steady_clock::now() > deadline) fail(target, "the peer did not close the connection after its end");
    pollfd p{fd, static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if (writing && (p.revents & POLLOUT)) {
      const ssize_t n = ::send(fd, stream.data() + sent, std::min(chunk, stream.size() - sent), MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) writing = false;  // the peer closed first
    }
    if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);  // descriptors passed along are dropped
    if (n == 0 || (n < 0 && errno != EAGAIN)) break;
    if (n < 0) continue;
    answers.feed({buffer.data(), static_cast<size_t>(n)});
    try {
      while (auto frame = answers.next()) check(*frame);
    } catch (const FrameError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      fail(target, "the peer sent a malformed frame");
    }
  }
  ::close(fd);
  if (answers.buffered() != 0) fail(target, "the peer's last frame was cut short");
}

}  // namespace rgpu::fuzz
