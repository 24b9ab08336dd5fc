#include "daemon_link.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>

#include "api_state.hpp"
#include "app_link.hpp"
#include "log.hpp"
#include "wire.hpp"

namespace rgpu::cuda {

namespace {
std::mutex g_session_mutex;
ProcessSession& session_state() {
  static auto* value = new ProcessSession;  // never destroyed: see api_state.hpp
  return *value;
}
bool g_session_tried = false;
std::atomic<uint32_t> g_next_thread_id{1};
thread_local DaemonLink* t_link = nullptr;  // freed at thread exit: see api_state.hpp
thread_local bool t_link_failed = false;

}  // namespace

const ProcessSession& process_session() {
  DaemonLink::for_this_thread();  // the first link of the process performs AppHello
  std::lock_guard lock(g_session_mutex);
  return session_state();
}

DaemonLink* DaemonLink::for_this_thread() {
  if (t_link) return t_link;
  if (t_link_failed) return nullptr;
  std::unique_ptr<DaemonLink> link(new DaemonLink);
  bool first;
  {
    std::lock_guard lock(g_session_mutex);
    if (g_session_tried && !session_state().connected) {
      t_link_failed = true;
      return nullptr;
    }
    first = !g_session_tried;
    g_session_tried = true;
    if (first && !link->connect(true)) {
      t_link_failed = true;
      LOG_ERROR("%s", session_state().problem.c_str());
      return nullptr;
    }
  }
  if (!first && !link->connect(false)) {
    t_link_failed = true;
    return nullptr;
  }
  t_link = link.release();
  static thread_local ThreadExitDelete<DaemonLink> cleanup{&t_link};
  return t_link;
}

DaemonLink::~DaemonLink() {
  if (ring_) ::munmap(ring_, ring_size_);
  if (fd_ >= 0) ::close(fd_);
}

// With g_session_mutex held when first (it fills session_state()).
bool DaemonLink::connect(bool first) {
  const std::string path = default_client_socket_path();
  std::string error;
  bool refused = false;
  fd_ = connect_unix(path, error, &refused);
  if (fd_ < 0) {
    const std::string problem = refused ? "refusing the RGPU client daemon at " + path + ": " + error
                                        : "cannot reach the RGPU client daemon at " + path + ": " + error +
                                              " (start it with `rgpu client`, or set RGPU_CLIENT_SOCKET)";
    if (first) session_state().problem = problem;  // logged once, by for_this_thread()
    else LOG_ERROR("%s", problem.c_str());
    return false;
  }
  std::vector<uint8_t> frame;
  if (first) {
    AppHelloMsg hello;
    hello.pid = static_cast<uint32_t>(::getpid());
    hello.program = program_path();
    if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) {
      hello.has_visible_devices = true;
      hello.visible_devices = visible;
    }
    frame = encode_frame(static_cast<uint16_t>(AppMsg::AppHello), 0, encode(hello));
  } else {
    AppAttachMsg attach;
    {
      std::lock_guard lock(g_session_mutex);
      attach.session_id = session_state().id;
    }
    frame = encode_frame(static_cast<uint16_t>(AppMsg::AppAttach), 0, encode(attach));
  }
  AppWelcomeMsg welcome;
  int ring_fd = -1;
  if (exchange_hello(fd_, decoder_, frame, welcome, ring_fd, error)) {
    void* ring = ::mmap(nullptr, welcome.ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
    ::close(ring_fd);
    if (ring != MAP_FAILED) {
      ring_ = static_cast<uint8_t*>(ring);
      ring_size_ = welcome.ring_size;
      thread_id_ = g_next_thread_id.fetch_add(1);
      if (first) {
        for (const auto& note : welcome.notes) LOG_WARN("%s", note.c_str());
        session_state().connected = true;
        session_state().id = welcome.session_id;
        session_state().server = welcome.server;
        session_state().devices = std::move(welcome.devices);
      }
      return true;
    }
    error = std::string("cannot map the ring: ") + std::strerror(errno);
  }
  if (first) session_state().problem = error;
  else LOG_ERROR("%s", error.c_str());
  ::close(fd_);
  fd_ = -1;
  return false;
}

namespace {
constexpr std::chrono::microseconds kAnswerSpin{60};
}

bool DaemonLink::read_frame(Frame& frame, int* received_fd) {
  // Answers to synchronous calls come back within tens of microseconds: polling for them a
  // little while before sleeping spares the wake-up latency.
  return rgpu::read_frame(fd_, decoder_, frame, received_fd, kAnswerSpin);
}

CUresult DaemonLink::broken(const std::string& why) {
  if (!broken_) {
    broken_ = true;
    LOG_ERROR("the connection to the GPU server is lost: %s", why.c_str());
  }
  return kLinkLost;
}

CUresult DaemonLink::send(uint64_t request_id, uint16_t flags, std::span<const uint8_t> payload,
                          const RingSpec* ring_spec) {
  if (broken_) return kLinkLost;
  FrameHeader header;
  header.type = kMsgCudaCall;
  header.request_id = request_id;
  header.flags = flags | (ring_spec ? kFrameRing : 0);
  header.payload_len = static_cast<uint32_t>(payload.size() + (ring_spec ? sizeof(RingSpec) : 0));
  iovec parts[3];
  size_t count = 0;
  parts[count++] = {&header, sizeof header};
  if (ring_spec) parts[count++] = {const_cast<RingSpec*>(ring_spec), sizeof(RingSpec)};
  if (!payload.empty()) parts[count++] = {const_cast<uint8_t*>(payload.data()), payload.size()};
  if (!write_all(fd_, {parts, count})) return broken(std::string("write to the daemon failed: ") + std::strerror(errno));
  return CUDA_SUCCESS;
}

void DaemonLink::handle_unsolicited(const Frame& frame) {
  if (frame.header.type == static_cast<uint16_t>(MsgType::Error)) {  // about the whole connection
    broken(decode_error(frame.payload).message);
    return;
  }
  switch (static_cast<AppMsg>(frame.header.type)) {
    case AppMsg::RingRelease: {
      RingReleaseMsg release = decode_ring_release(frame.payload);
      std::erase(in_flight_, release.offset);
      return;
    }
    case AppMsg::ServerGone:
      broken(decode_error(frame.payload).message);
      return;
    default:
      LOG_WARN("unexpected %s frame from the daemon", msg_type_name(frame.header.type));
  }
}

CUresult DaemonLink::wait(uint64_t request_id, std::vector<uint8_t>& storage, std::span<const uint8_t>& answer) {
  if (auto early = early_.extract(request_id)) return take_answer(early.mapped(), storage, answer);
  for (;;) {
    if (broken_) return kLinkLost;
    Frame frame;
    if (!read_frame(frame, nullptr)) return broken("the daemon closed the connection");
    try {
      if (frame.header.type == static_cast<uint16_t>(AppMsg::RingRelease) || frame.header.request_id == 0) {
        handle_unsolicited(frame);  // an error there breaks the link, which the loop's top returns
        continue;
      }
    } catch (const WireError& e) {
      return broken(std::string("malformed frame from the daemon: ") + e.what());
    }
    if (frame.header.request_id == request_id) return take_answer(frame, storage, answer);
    early_.emplace(frame.header.request_id, std::move(frame));
  }
}

CUresult DaemonLink::take_answer(Frame& frame, std::vector<uint8_t>& storage, std::span<const uint8_t>& answer) {
  try {
    if (frame.header.type == static_cast<uint16_t>(MsgType::Error)) {
      ErrorMsg error = decode_error(frame.payload);
      LOG_ERROR("the server refused a call: %s", error.message.c_str());
      return error.code == ErrorCode::NotSupported ? CUDA_ERROR_NOT_SUPPORTED : CUDA_ERROR_INVALID_VALUE;
    }
    if (frame.header.flags & kFrameRing) {
      WireReader reader(frame.payload, "ring answer");
      RingSpec spec = reader.get<RingSpec>();
      if (spec.out_offset > ring_size_ || spec.out_capacity > ring_size_ - spec.out_offset)
        return broken("the daemon placed an answer outside the ring");
      answer = {ring_ + spec.out_offset, spec.out_capacity};
    } else {
      storage = std::move(frame.payload);
      answer = storage;
    }
    return CUDA_SUCCESS;
  } catch (const WireError& e) {
    return broken(std::string("malformed frame from the daemon: ") + e.what());
  }
}

CUresult DaemonLink::wait_released(uint64_t offset) {
  while (std::find(in_flight_.begin(), in_flight_.end(), offset) != in_flight_.end()) {
    if (broken_) return kLinkLost;
    Frame frame;
    if (!read_frame(frame, nullptr)) return broken("the daemon closed the connection");
    try {
      handle_unsolicited(frame);
    } catch (const WireError& e) {
      return broken(std::string("malformed frame from the daemon: ") + e.what());
    }
  }
  return CUDA_SUCCESS;
}

}  // namespace rgpu::cuda
