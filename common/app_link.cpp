#include "app_link.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "local_peer.hpp"
#include "log.hpp"
#include "wire.hpp"

namespace rgpu {

std::string program_path() {
  char path[512] = {};
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : "?";
}

int connect_unix(const std::string& path, std::string& error, bool* refused) {
  if (refused) *refused = false;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    error = "socket path too long";
    ::close(fd);
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  if (std::string why; !check_peer_uid(fd, ::geteuid(), why)) {
    error = why + " (this process's); a client daemon of another user is never used";
    if (refused) *refused = true;
    ::close(fd);
    return -1;
  }
  return fd;
}

bool write_all(int fd, std::span<const iovec> parts) {
  std::vector<iovec> iov(parts.begin(), parts.end());
  size_t index = 0;
  while (index < iov.size()) {
    msghdr msg{};
    msg.msg_iov = iov.data() + index;
    msg.msg_iovlen = iov.size() - index;
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    size_t left = static_cast<size_t>(n);
    while (index < iov.size() && left >= iov[index].iov_len) left -= iov[index++].iov_len;
    if (index < iov.size()) {
      iov[index].iov_base = static_cast<uint8_t*>(iov[index].iov_base) + left;
      iov[index].iov_len -= left;
    }
  }
  return true;
}

bool read_frame(int fd, FrameDecoder& decoder, Frame& frame, int* received_fd, std::chrono::microseconds spin) {
  return read_frame_until(fd, decoder, frame, received_fd, std::chrono::steady_clock::time_point::max(), spin) ==
         ReadResult::Frame;
}

ReadResult read_frame_until(int fd, FrameDecoder& decoder, Frame& frame, int* received_fd,
                            std::chrono::steady_clock::time_point deadline, std::chrono::microseconds spin) {
  for (;;) {
    try {
      if (auto next = decoder.next()) {
        frame = std::move(*next);
        return ReadResult::Frame;
      }
    } catch (const FrameError& e) {
      LOG_ERROR("malformed frame from the daemon: %s", e.what());
      return ReadResult::Closed;
    }
    uint8_t buffer[64 * 1024];
    iovec iov{buffer, sizeof buffer};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = -1;
    const auto spin_until = std::chrono::steady_clock::now() + spin;
    do {
      n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && (errno == EAGAIN || errno == EINTR) && std::chrono::steady_clock::now() < spin_until);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (deadline == std::chrono::steady_clock::time_point::max()) {
        n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
      } else {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return ReadResult::TimedOut;
        pollfd readable{fd, POLLIN, 0};
        ::poll(&readable, 1, static_cast<int>(std::min<int64_t>(left.count(), INT32_MAX)));
        continue;  // read, or find the deadline passed
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ReadResult::Closed;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int passed;
        std::memcpy(&passed, CMSG_DATA(c), sizeof passed);
        if (received_fd && *received_fd < 0) *received_fd = passed;
        else ::close(passed);
      }
    }
    decoder.feed({buffer, static_cast<size_t>(n)});
  }
}

bool exchange_hello(int fd, FrameDecoder& decoder, std::span<const uint8_t> hello_frame, AppWelcomeMsg& welcome,
                    int& ring_fd, std::string& error) {
  ring_fd = -1;
  iovec part{const_cast<uint8_t*>(hello_frame.data()), hello_frame.size()};
  Frame answer;
  try {
    if (!write_all(fd, {&part, 1}) || !read_frame(fd, decoder, answer, &ring_fd)) {
      error = "the daemon closed the connection during the hello";
    } else if (answer.header.type == static_cast<uint16_t>(MsgType::Error)) {
      error = "the daemon refused: " + decode_error(answer.payload).message;
    } else if (answer.header.type == static_cast<uint16_t>(AppMsg::ServerGone)) {
      error = "no GPU server: " + decode_error(answer.payload).message;
    } else if (answer.header.type != static_cast<uint16_t>(AppMsg::AppWelcome)) {
      error = std::string("the daemon answered ") + msg_type_name(answer.header.type) + " to the hello";
    } else {
      welcome = decode_app_welcome(answer.payload);
      if (ring_fd < 0) throw WireError("AppWelcome came without its ring");
      std::string why;
      if (check_sealed_memfd(ring_fd, welcome.ring_size, why)) return true;
      error = "the daemon's ring is refused: " + why;
    }
  } catch (const WireError& e) {
    error = std::string("malformed answer to the hello from the daemon: ") + e.what();
  }
  if (ring_fd >= 0) ::close(ring_fd);
  ring_fd = -1;
  return false;
}

}  // namespace rgpu
