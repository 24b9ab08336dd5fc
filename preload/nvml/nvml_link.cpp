#include "nvml_link.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

#include "app_link.hpp"
#include "app_protocol.hpp"
#include "frame.hpp"
#include "messages.hpp"
#include "wire.hpp"

namespace rgpu::nvml_client {

namespace {
// The daemon asks each server in turn, each within a few seconds.
constexpr auto kAnswerTimeout = std::chrono::seconds(30);

struct Link {
  int fd = -1;
  pid_t owner = 0;  // the process that connected: a forked child makes a connection of its own
  FrameDecoder decoder{kMaxFramePayload, 0};
  uint64_t next_request = 1;
  void drop() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    decoder = FrameDecoder{kMaxFramePayload, 0};
  }
};
std::mutex g_mutex;
Link& link() {
  static auto* value = new Link;  // never destroyed: an exit handler may still ask
  return *value;
}

enum class Outcome { Answered, Broken, Refused };

Outcome exchange(Link& link, NvmlSnapshotMsg& out, std::string& error) {
  const uint64_t request = link.next_request++;
  const std::vector<uint8_t> frame = encode_frame(kMsgAppNvmlQuery, request, {}, 0, Compression::Never);
  iovec part{const_cast<uint8_t*>(frame.data()), frame.size()};
  if (!write_all(link.fd, {&part, 1})) {
    error = std::string("write to the RGPU client daemon failed: ") + std::strerror(errno);
    return Outcome::Broken;
  }
  const auto deadline = std::chrono::steady_clock::now() + kAnswerTimeout;
  for (;;) {
    Frame answer;
    switch (read_frame_until(link.fd, link.decoder, answer, nullptr, deadline)) {
      case ReadResult::Closed: error = "the RGPU client daemon closed the connection"; return Outcome::Broken;
      case ReadResult::TimedOut: error = "the RGPU client daemon did not answer within 30 s"; return Outcome::Broken;
      case ReadResult::Frame: break;
    }
    try {
      if (answer.header.type == static_cast<uint16_t>(MsgType::Error)) {
        error = "the RGPU client daemon: " + decode_error(answer.payload).message;
        if (answer.header.request_id == 0) return Outcome::Broken;  // about the connection
        if (answer.header.request_id == request) return Outcome::Refused;
        continue;
      }
      if (answer.header.request_id != request) continue;  // an answer to a question given up on
      if (answer.header.type != kMsgAppNvmlSnapshot) {
        error = std::string("the RGPU client daemon answered ") + msg_type_name(answer.header.type);
        return Outcome::Broken;
      }
      out = decode_nvml_snapshot(answer.payload);
      return Outcome::Answered;
    } catch (const WireError& e) {
      error = std::string("malformed answer from the RGPU client daemon: ") + e.what();
      return Outcome::Broken;
    }
  }
}
}  // namespace

std::optional<NvmlSnapshotMsg> ask_daemon(std::string& error) {
  std::lock_guard lock(g_mutex);
  Link& l = link();
  if (l.fd >= 0 && l.owner != ::getpid()) l.drop();  // the parent's connection: its answers are the parent's
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (l.fd < 0) {
      l.owner = ::getpid();
      const std::string path = default_client_socket_path();
      l.fd = connect_unix(path, error);
      if (l.fd < 0) {
        error = "cannot reach the RGPU client daemon at " + path + ": " + error +
                " (start it with `rgpu client`, or set RGPU_CLIENT_SOCKET)";
        return std::nullopt;
      }
    }
    NvmlSnapshotMsg snapshot;
    switch (exchange(l, snapshot, error)) {
      case Outcome::Answered: return snapshot;
      case Outcome::Refused: return std::nullopt;
      case Outcome::Broken: l.drop(); break;  // a daemon restarted since: once more
    }
  }
  return std::nullopt;
}

}  // namespace rgpu::nvml_client
