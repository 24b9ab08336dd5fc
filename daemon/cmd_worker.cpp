// rgpu worker: one application's session on this GPU server, in a process of its own (started by
// `rgpu server`, never by hand). It confines itself, reads what to run from its control socket
// (descriptor 3), starts the session's API, and then runs the connections the main process hands
// it until the session ends; then it exits, and the driver frees whatever the session left.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <memory>
#include <string>
#include <thread>

#include "app_link.hpp"
#include "commands.hpp"
#include "frame.hpp"
#include "log.hpp"
#include "messages.hpp"
#include "server/cuda_driver.hpp"
#include "server/device_memory_meter.hpp"
#include "server/memory_budget.hpp"
#include "server/vulkan_instance.hpp"
#include "server/worker_confinement.hpp"
#include "server/worker_protocol.hpp"
#include "server/worker_session.hpp"
#include "tls_rekey.hpp"

namespace rgpu {

namespace {
constexpr auto kRekeyTimeout = std::chrono::seconds(10);
constexpr auto kReleaseTime = std::chrono::seconds(5);
constexpr auto kConnectionTimeout = std::chrono::seconds(30);

void tell_main(uint16_t type, std::span<const uint8_t> payload) {
  const auto frame = encode_frame(type, 0, payload);
  const iovec part{const_cast<uint8_t*>(frame.data()), frame.size()};
  write_all(kWorkerControlFd, {&part, 1});
}

[[noreturn]] void fail_start(const std::string& why) {
  LOG_ERROR("cannot start the session: %s", why.c_str());
  tell_main(static_cast<uint16_t>(MsgType::Error), encode(ErrorMsg{ErrorCode::NotSupported, why}));
  std::_Exit(kExitFailure);
}

// The second TLS handshake of a connection (tls_rekey.hpp), on this blocking thread, with a limit.
SslPtr rekey(int fd, const WorkerPsk& psk) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // the main process's loop made it non-blocking
  timeval limit{};
  limit.tv_sec = kRekeyTimeout.count();
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  SslPtr ssl = rekey_as_server(fd, psk);
  timeval none{};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  return ssl;
}

// Reads WorkerAdopt messages until the main process closes its end; each connection goes to the
// session on the loop's thread.
void read_control(EventLoop& loop, WorkerSession& session, FrameDecoder& decoder) {
  for (;;) {
    Frame frame;
    int fd = -1;
    if (!read_frame(kWorkerControlFd, decoder, frame, &fd)) break;
    UniqueFd socket(fd);
    if (frame.header.type == kMsgWorkerPing) {  // answered by the loop: it proves the loop runs
      loop.post([] { tell_main(kMsgWorkerPong, {}); });
      continue;
    }
    WorkerAdoptMsg adopt;
    try {
      if (frame.header.type != kMsgWorkerAdopt || !socket)
        throw WireError(std::string("unexpected control message ") + msg_type_name(frame.header.type));
      adopt = decode_worker_adopt(frame.payload);
    } catch (const std::exception& e) {  // the main process and this worker disagree: nothing is safe
      const std::string why = std::string("the server's control channel failed: ") + e.what();
      loop.post([&session, why] { session.end(why); });
      return;
    }
    FrameLink::Handover connection{std::move(socket), nullptr, std::move(adopt.unread)};
    try {
      if (adopt.rekey) connection.ssl = rekey(connection.fd.get(), adopt.psk);
    } catch (const std::exception& e) {
      // A lane that fails its handshake is dropped (the session goes on without it); the
      // session's own connection failing ends the session.
      const std::string why = std::string("a connection could not be taken over: ") + e.what();
      if (adopt.role == WorkerRole::Lane) {
        LOG_WARN("%s", why.c_str());
        continue;
      }
      loop.post([&session, why] { session.end(why); });
      return;
    }
    auto handed = std::make_shared<FrameLink::Handover>(std::move(connection));
    loop.post([&session, role = adopt.role, handed] { session.adopt(role, std::move(*handed)); });
  }
  loop.post([&session] { session.end("the server's main process closed its control channel"); });
}
}  // namespace

int run_worker() {
  set_log_component("rgpu worker");
  // The worker never outlives the process that supervises it.
  const char* parent = std::getenv("RGPU_WORKER_PARENT");
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (parent == nullptr || std::to_string(::getppid()) != parent) {
    LOG_ERROR("rgpu worker is started by rgpu server, not by hand");
    return kExitUsage;
  }
  try {
    Confinement confinement = confine_worker();
    for (const auto& step : confinement.applied) LOG_DEBUG("confined: %s", step.c_str());
  } catch (const std::exception& e) {
    fail_start(std::string("cannot confine the worker: ") + e.what());
  }

  // The driver starts while no session waits for it yet (a spare worker): what takes it most
  // of its start. Whether it worked, the session's start says.
  const char* api = std::getenv("RGPU_WORKER_API");
  const AppApi kind = api != nullptr && std::string(api) == app_api_name(AppApi::Vulkan) ? AppApi::Vulkan : AppApi::Cuda;
  if (kind == AppApi::Cuda) {
    cuda::Driver::get();
    DeviceMemoryMeter::prepare();
  } else {
    vk::Instance::get();
  }

  FrameDecoder decoder;
  Frame frame;
  int budget_fd = -1;
  if (!read_frame(kWorkerControlFd, decoder, frame, &budget_fd)) fail_start("no start message from the server");
  WorkerStartMsg start;
  std::shared_ptr<MemoryBudget> budget;
  try {
    if (frame.header.type != kMsgWorkerStart || budget_fd < 0) throw WireError("the first control message is not WorkerStart");
    start = decode_worker_start(frame.payload);
    if (start.api != kind) throw WireError(std::string("a ") + app_api_name(start.api) + " session for a " + app_api_name(kind) + " worker");
    budget = MemoryBudget::attach(budget_fd, start.budget_slot);
  } catch (const std::exception& e) {
    fail_start(e.what());
  }

  EventLoop loop;
  std::unique_ptr<WorkerSession> session;
  try {
    session = std::make_unique<WorkerSession>(loop, start, budget, [&loop](const std::string&) { loop.stop(); });
  } catch (const std::exception& e) {
    fail_start(e.what());
  }
  tell_main(kMsgWorkerReady, {});
  // The application's connection follows at once; a worker that never gets one does not linger.
  loop.after(kConnectionTimeout, [&session](int) {
    if (!session->has_connection()) session->end("no connection was handed over within 30 s");
  });
  LOG_DEBUG("%s: %s session started", start.client.c_str(), app_api_name(start.api));

  std::thread control([&] { read_control(loop, *session, decoder); });
  loop.run();
  // The session is over: what it left is freed, for a while at most. Its threads, the control
  // reader among them, may be blocked (in the driver, behind a kernel that still runs): the
  // process then ends without joining them, and the driver frees what they held, as for any
  // program that exits.
  std::mutex mutex;
  std::condition_variable released;
  bool done = false;
  std::thread releaser([&] {
    session->release();
    std::lock_guard lock(mutex);
    done = true;
    released.notify_all();
  });
  {
    std::unique_lock lock(mutex);
    if (!released.wait_for(lock, kReleaseTime, [&] { return done; }))
      LOG_WARN("%s: the session's work did not finish within %lld s; ending it", start.client.c_str(),
               static_cast<long long>(kReleaseTime.count()));
  }
  std::fflush(stderr);
  std::_Exit(kExitOk);
}

}  // namespace rgpu
