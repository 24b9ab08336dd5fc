#include "net.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace rgpu {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

HostPort parse_host_port(std::string_view text, uint16_t default_port) {
  HostPort out;
  out.port = default_port;
  std::string_view port_text;
  if (text.empty()) throw NetError("empty server address");
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) throw NetError("address '" + std::string(text) + "' has no closing ']'");
    out.host = std::string(text.substr(1, close - 1));
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw NetError("address '" + std::string(text) + "': expected ':port' after ']'");
      port_text = rest.substr(1);
    }
  } else {
    auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon)
      throw NetError("address '" + std::string(text) + "': write IPv6 addresses as [addr]:port");
    if (colon == std::string_view::npos) {
      out.host = std::string(text);
    } else {
      out.host = std::string(text.substr(0, colon));
      port_text = text.substr(colon + 1);
      if (port_text.empty()) throw NetError("address '" + std::string(text) + "' has an empty port");
    }
  }
  if (out.host.empty()) throw NetError("address '" + std::string(text) + "' has no host");
  if (!port_text.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 || value > 65535)
      throw NetError("address '" + std::string(text) + "': port must be a number from 1 to 65535");
    out.port = static_cast<uint16_t>(value);
  }
  return out;
}

void set_tcp_options(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int connect_tcp(const HostPort& where, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(where.port);
  int rc = ::getaddrinfo(where.host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) throw NetError("cannot resolve '" + where.host + "': " + gai_strerror(rc));
  std::string last_error = "no addresses";
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
    if (!fd) {
      last_error = std::strerror(errno);
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last_error = std::strerror(errno);
        continue;
      }
      pollfd pfd{fd.get(), POLLOUT, 0};
      int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
      if (n == 0) {
        last_error = "timed out after " + std::to_string(timeout.count()) + " ms";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (n < 0 || err != 0) {
        last_error = std::strerror(n < 0 ? errno : err);
        continue;
      }
    }
    int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
    set_tcp_options(fd.get());
    ::freeaddrinfo(list);
    return fd.release();
  }
  ::freeaddrinfo(list);
  throw NetError("cannot connect to " + where.to_string() + ": " + last_error);
}

int listen_tcp(const std::string& bind_address, uint16_t port, int backlog) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* list = nullptr;
  const std::string port_text = std::to_string(port);
  int rc = ::getaddrinfo(bind_address.c_str(), port_text.c_str(), &hints, &list);
  if (rc != 0) throw NetError("bind address '" + bind_address + "' is not an IP address: " + gai_strerror(rc));
  UniqueFd fd(::socket(list->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    ::freeaddrinfo(list);
    throw NetError(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), list->ai_addr, list->ai_addrlen) != 0) {
    int err = errno;
    ::freeaddrinfo(list);
    throw NetError("cannot bind " + bind_address + ":" + port_text + ": " + std::strerror(err));
  }
  ::freeaddrinfo(list);
  if (::listen(fd.get(), backlog) != 0) throw NetError(std::string("listen: ") + std::strerror(errno));
  return fd.release();
}

uint16_t bound_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

std::string peer_name(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  if (addr.ss_family == AF_INET6) return std::string("[") + host + "]:" + serv;
  if (addr.ss_family == AF_UNIX) return "unix";
  return std::string(host) + ":" + serv;
}

}  // namespace rgpu
