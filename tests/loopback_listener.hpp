// A loopback TCP listener for a test's fake peer, whose thread waits for the client's connection.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "net.hpp"

namespace rgpu::test {

class LoopbackListener {
 public:
  LoopbackListener() : fd_(listen_tcp("127.0.0.1", 0)), port_(bound_port(fd_.get())) {}
  HostPort address() const { return {"127.0.0.1", port_}; }

  // The next connection, however long the client takes to make it (listen_tcp's socket is
  // non-blocking, made for event loops: a bare accept() on a thread that runs before the client
  // has connected finds nothing). An invalid fd once stop() was called.
  UniqueFd accept() {
    for (;;) {
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return UniqueFd();
      UniqueFd fd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (fd || (errno != EAGAIN && errno != EINTR)) return fd;
    }
  }
  // Wakes an accept() that waits (a test that failed before its client connected).
  void stop() { ::shutdown(fd_.get(), SHUT_RDWR); }

 private:
  UniqueFd fd_;
  uint16_t port_;
};

}  // namespace rgpu::test
