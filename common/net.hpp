// TCP addresses, listening and connecting sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rgpu {

inline constexpr uint16_t kDefaultPort = 9876;

class NetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct HostPort {
  std::string host;
  uint16_t port = kDefaultPort;
  std::string to_string() const;
};

// "host", "host:port", "[v6addr]:port"; throws NetError naming what is wrong.
HostPort parse_host_port(std::string_view text, uint16_t default_port = kDefaultPort);

// Blocking TCP connect with a timeout; returns a blocking socket with TCP_NODELAY set.
int connect_tcp(const HostPort& where, std::chrono::milliseconds timeout);
// Listening socket (SO_REUSEADDR, non-blocking, close-on-exec).
int listen_tcp(const std::string& bind_address, uint16_t port, int backlog = 128);
// Port a listening socket is bound to (for port 0 in tests).
uint16_t bound_port(int fd);
std::string peer_name(int fd);
void set_tcp_options(int fd);

// Owns a file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace rgpu
