#include "client_daemon.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "bulk_lane.hpp"
#include "cuda_wire.hpp"
#include "event_loop.hpp"
#include "frame_link.hpp"
#include "keepalive.hpp"
#include "local_peer.hpp"
#include "log.hpp"
#include "nvml_pool.hpp"
#include "owned_threads.hpp"
#include "socket_folder.hpp"
#include "visible_devices.hpp"
#include "vulkan_wire.hpp"
#include "wire.hpp"

namespace rgpu::client {

namespace {
template <typename Msg>
std::vector<uint8_t> frame_of(uint16_t type, uint64_t id, const Msg& msg) {
  return encode_frame(type, id, encode(msg), 0, Compression::Never);
}
std::vector<uint8_t> error_frame(uint64_t id, ErrorCode code, const std::string& message) {
  return frame_of(static_cast<uint16_t>(MsgType::Error), id, ErrorMsg{code, message});
}

ucred peer_credentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
  return cred;
}
}  // namespace

// One application thread's connection and its ring.
struct AppConnection {
  uint64_t id = 0;
  pid_t pid = 0;
  std::shared_ptr<FrameLink> link;
  uint8_t* ring = nullptr;
  size_t ring_size = 0;
  ~AppConnection() {
    if (ring) ::munmap(ring, ring_size);
  }
};

// One application process: its connections and its one server connection.
struct AppSession {
  enum class State { Connecting, Open, Closed };
  uint64_t id = 0;
  pid_t pid = 0;
  std::string program;
  AppApi api = AppApi::Cuda;
  size_t server = 0;
  std::vector<GpuInfo> devices;  // index = the application's ordinal
  std::vector<std::string> notes;
  State state = State::Connecting;
  std::shared_ptr<FrameLink> server_link;
  uint64_t key = 0;            // the session's key on the server
  bool asking_fate = false;    // its connection was lost; the server is being asked why
  std::string lost;            // Closed: why the server is gone for this application
  // Keepalive (Impl::keep_alive): when the server's connection last brought a frame.
  Keepalive keepalive;
  Keepalive::Clock::time_point heard{};
  std::map<uint64_t, std::shared_ptr<AppConnection>> connections;
  std::vector<uint64_t> waiting;  // connections to welcome once the server is open
  struct Route {
    uint64_t connection;
    uint64_t out_offset;
    uint64_t out_capacity;
  };
  std::unordered_map<uint64_t, Route> routes;  // request id -> who asked
  // Vulkan: the slots of the ring's upper half (vk::vulkan_ring_layout) holding device changes to
  // mapped memory that the ICD has not given back yet.
  std::vector<bool> incoming_busy;
  // CUDA: further connections for large copies, taken in turn.
  std::vector<std::unique_ptr<BulkLane>> lanes;
  size_t next_lane = 0;
};

namespace {
// Frames at least this large (chunks of host-to-device copies), and requests for answers at least
// this large (chunks of device-to-host copies; the interpose cuts them from 256 KiB), go through a
// bulk lane.
constexpr uint64_t kLaneMinSize = 1u << 20;
constexpr uint64_t kLaneMinAnswer = 256u << 10;
// How long a lost session's reason is worth waiting for.
constexpr auto kFateTimeout = std::chrono::seconds(3);
// How long the pool's NVML view is reused (while no session opened or ended): a polling
// nvidia-smi asks every second, many processes may ask at once.
constexpr auto kNvmlKept = std::chrono::seconds(1);
}  // namespace

struct ClientDaemon::Impl {
  explicit Impl(ClientDaemonSettings s) : settings(std::move(s)) {}

  void accept_next();
  void on_accept(int fd);
  void on_connection_frame(uint64_t connection_id, Frame&& frame);
  void on_first_frame(uint64_t connection_id, Frame&& frame);
  void on_app_frame(AppSession& session, AppConnection& connection, Frame&& frame);
  void on_server_frame(uint64_t session_id, Frame&& frame);
  // A frame came on a session's server connection: the server is alive. False for a Pong, which
  // says nothing more.
  bool heard_from_server(uint64_t session_id, const Frame& frame);
  // Pings server connections that have been quiet for a while and fails the sessions of those
  // quiet for keepalive_timeout; runs again shortly.
  void keep_alive();
  BulkPayload ring_for_answer(uint64_t session_id, const FrameHeader& header);
  BulkPayload ring_for_memory(AppSession& session, const FrameHeader& header);
  // CUDA: opens the session's bulk lanes (joined with its key); a ready lane in turn.
  void open_lanes(AppSession& session);
  // A request (its answer awaited) needs a lane that receives answers.
  BulkLane* lane_for(AppSession& session, bool request);
  void on_ring_release(AppSession& session, AppConnection& connection, const Frame& frame);
  void connect_server(uint64_t session_id);
  void on_server_connected(uint64_t session_id, UniqueFd fd, SslPtr ssl, uint64_t key, std::string error);
  void server_lost(uint64_t session_id, const std::string& reason);
  SessionOptions session_options(const ServerTarget& target, const char* name) const {
    return target.session_options(name);
  }
  void welcome(AppSession& session, uint64_t connection_id);
  void fail_session(AppSession& session, const std::string& reason);
  void drop_connection(uint64_t session_id, uint64_t connection_id);
  bool map_ring(AppConnection& connection, int& memfd);

  ClientDaemonSettings settings;
  EventLoop loop;
  UniqueFd listen_fd;
  std::string created_socket;
  uint64_t next_id = 1;
  // Connections that have not said hello yet.
  std::unordered_map<uint64_t, std::shared_ptr<AppConnection>> fresh;
  std::unordered_map<uint64_t, std::unique_ptr<AppSession>> sessions;
  std::unordered_map<uint64_t, uint64_t> session_of_connection;
  // Blocking work off the loop: connecting to a server and opening a session, asking how a
  // session ended, destroying an ended session's lanes (one still connecting can take seconds
  // to stop). Each ends within its time limits; the daemon joins them before its loop goes.
  ThreadGroup blocking;
  void retire_lanes(AppSession& session);

  // NVML (RGPU's libnvidia-ml.so.1): connections whose first frame was an NVML question, and the
  // pool's NVML view, fetched from the servers off the loop and kept a short while.
  std::unordered_map<uint64_t, std::shared_ptr<AppConnection>> nvml_connections;
  struct NvmlView {
    std::vector<uint8_t> payload;  // NvmlSnapshot for applications, or
    std::string error;             // why no server answered
    std::chrono::steady_clock::time_point taken;
    uint64_t epoch = 0;
  };
  std::optional<NvmlView> nvml_view;
  bool nvml_fetching = false;
  std::vector<std::pair<uint64_t, uint64_t>> nvml_waiting;  // (connection, request)
  uint64_t sessions_epoch = 0;  // changes when a session opens or ends: the view's processes then do
  void on_nvml_question(uint64_t connection_id, const Frame& frame);
  void nvml_fetched(std::vector<ServerNvml> answers, SessionOwners owners, uint64_t epoch);
  void answer_nvml(uint64_t connection_id, uint64_t request);
};

void ClientDaemon::Impl::accept_next() {
  loop.accept(listen_fd.get(), [this](int res) {
    if (res >= 0) on_accept(res);
    else LOG_WARN("accept failed: %s", std::strerror(-res));
    accept_next();
  });
}

void ClientDaemon::Impl::on_accept(int fd) {
  const ucred cred = peer_credentials(fd);
  auto connection = std::make_shared<AppConnection>();
  connection->id = next_id++;
  connection->pid = cred.pid;
  connection->link =
      std::make_shared<FrameLink>(loop, UniqueFd(fd), "pid " + std::to_string(cred.pid), kMaxFramePayload, kFrameRing);
  // A per-user daemon: an application of another user (root included) is refused.
  if (std::string why; !check_peer_uid(fd, ::geteuid(), why)) {
    LOG_WARN("refusing an application connection: %s, the uid this daemon serves", why.c_str());
    connection->link->start({});
    connection->link->send(error_frame(0, ErrorCode::Forbidden, "this RGPU client daemon serves another user"));
    connection->link->finish_after_flush();
    return;
  }
  const uint64_t id = connection->id;
  fresh[id] = connection;
  connection->link->start(FrameLink::Callbacks{
      .on_frame = [this, id](Frame&& frame) { on_connection_frame(id, std::move(frame)); },
      .on_close =
          [this, id](const std::string& reason) {
            if (fresh.erase(id) || nvml_connections.erase(id)) return;
            auto it = session_of_connection.find(id);
            if (it == session_of_connection.end()) return;
            LOG_DEBUG("application connection %llu closed: %s", static_cast<unsigned long long>(id), reason.c_str());
            const uint64_t session_id = it->second;
            session_of_connection.erase(it);
            drop_connection(session_id, id);
          },
      .on_malformed = [](const FrameError& e) { LOG_WARN("malformed frame from an application: %s", e.what()); },
  });
}

bool ClientDaemon::Impl::map_ring(AppConnection& connection, int& memfd) {
  // Sealed against resizing: the application cannot cut the ring short under the daemon's
  // mapping (its next access would be SIGBUS).
  std::string error;
  memfd = create_sealed_memfd("rgpu-ring", settings.ring_size, error);
  if (memfd < 0) {
    LOG_ERROR("cannot create a ring for pid %d: %s", connection.pid, error.c_str());
    return false;
  }
  void* ring = ::mmap(nullptr, settings.ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (ring == MAP_FAILED) {
    LOG_ERROR("cannot map a ring for pid %d: %s", connection.pid, std::strerror(errno));
    ::close(memfd);
    return false;
  }
  connection.ring = static_cast<uint8_t*>(ring);
  connection.ring_size = settings.ring_size;
  return true;
}

void ClientDaemon::Impl::on_first_frame(uint64_t connection_id, Frame&& frame) {
  auto it = fresh.find(connection_id);
  if (it == fresh.end()) return;
  std::shared_ptr<AppConnection> connection = it->second;
  auto refuse = [&](ErrorCode code, const std::string& message) {
    LOG_WARN("refusing pid %d: %s", connection->pid, message.c_str());
    fresh.erase(connection_id);
    connection->link->send(error_frame(0, code, message));
    connection->link->finish_after_flush();
  };
  try {
    if (frame.header.type == static_cast<uint16_t>(AppMsg::AppHello)) {
      AppHelloMsg hello = decode_app_hello(frame.payload);
      auto session = std::make_unique<AppSession>();
      session->id = next_id++;
      session->pid = connection->pid;
      session->program = printable(hello.program);  // it goes into log lines
      session->api = hello.api;
      // The application numbers the pool's GPUs of its API; CUDA_VISIBLE_DEVICES picks among those.
      std::vector<const PoolGpu*> candidates;
      std::vector<GpuInfo> candidate_infos;
      for (const auto& gpu : settings.pool.gpus) {
        if (hello.api == AppApi::Cuda ? !gpu.info.cuda : !gpu.info.vulkan) continue;
        candidates.push_back(&gpu);
        candidate_infos.push_back(gpu.info);
      }
      std::vector<size_t> chosen;
      if (hello.has_visible_devices && hello.api == AppApi::Cuda) {
        chosen = select_visible(hello.visible_devices, candidate_infos);
      } else {
        for (size_t i = 0; i < candidates.size(); ++i) chosen.push_back(i);
      }
      for (size_t position : chosen) {
        const PoolGpu& gpu = *candidates[position];
        if (!session->devices.empty() && gpu.server != session->server) {
          session->notes.push_back("GPU " + std::to_string(position) + " (" + gpu.info.name + ") is on server " +
                                   settings.servers[gpu.server].address.to_string() +
                                   "; one process uses the GPUs of one server, so it is left out");
          continue;
        }
        session->server = gpu.server;
        GpuInfo info = gpu.info;
        session->devices.push_back(info);
      }
      const uint64_t session_id = session->id;
      LOG_INFO("application %s (pid %d): %s, %zu GPU(s)", session->program.c_str(), session->pid,
               app_api_name(session->api), session->devices.size());
      fresh.erase(connection_id);
      session->connections[connection_id] = connection;
      session_of_connection[connection_id] = session_id;
      session->waiting.push_back(connection_id);
      AppSession& ref = *session;
      sessions[session_id] = std::move(session);
      if (ref.devices.empty()) {
        ref.state = AppSession::State::Open;  // nothing to run: no server needed
        welcome(ref, connection_id);
        ref.waiting.clear();
      } else {
        connect_server(session_id);
      }
      return;
    }
    if (frame.header.type == static_cast<uint16_t>(AppMsg::AppAttach)) {
      AppAttachMsg attach = decode_app_attach(frame.payload);
      auto s = sessions.find(attach.session_id);
      if (s == sessions.end() || s->second->pid != connection->pid)
        return refuse(ErrorCode::Forbidden, "no session " + std::to_string(attach.session_id) + " for this process");
      AppSession& session = *s->second;
      fresh.erase(connection_id);
      session.connections[connection_id] = connection;
      session_of_connection[connection_id] = session.id;
      if (session.state == AppSession::State::Open) {
        welcome(session, connection_id);
      } else if (session.state == AppSession::State::Closed) {  // a new thread of a failed process
        connection->link->send(
            frame_of(static_cast<uint16_t>(AppMsg::ServerGone), 0, ErrorMsg{ErrorCode::Internal, session.lost}));
        connection->link->finish_after_flush();
      } else {
        session.waiting.push_back(connection_id);
      }
      return;
    }
    if (frame.header.type == kMsgAppNvmlQuery) {
      fresh.erase(connection_id);
      nvml_connections[connection_id] = connection;
      return on_nvml_question(connection_id, frame);
    }
    refuse(ErrorCode::UnexpectedMessage,
           std::string("expected AppHello, AppAttach or NvmlQuery, got ") + msg_type_name(frame.header.type));
  } catch (const WireError& e) {
    refuse(ErrorCode::MalformedFrame, e.what());
  }
}

void ClientDaemon::Impl::welcome(AppSession& session, uint64_t connection_id) {
  auto it = session.connections.find(connection_id);
  if (it == session.connections.end()) return;
  AppConnection& connection = *it->second;
  int memfd = -1;
  if (!map_ring(connection, memfd)) {
    connection.link->send(error_frame(0, ErrorCode::Internal, "the daemon could not create a shared-memory ring"));
    connection.link->finish_after_flush();
    return;
  }
  AppWelcomeMsg welcome;
  welcome.session_id = session.id;
  welcome.ring_size = connection.ring_size;
  if (!session.devices.empty()) welcome.server = settings.servers[session.server].address.to_string();
  welcome.devices = session.devices;
  for (size_t i = 0; i < welcome.devices.size(); ++i) welcome.devices[i].index = static_cast<uint32_t>(i);
  welcome.notes = session.notes;
  connection.link->send_with_fd(frame_of(static_cast<uint16_t>(AppMsg::AppWelcome), 0, welcome), memfd);
}

void ClientDaemon::Impl::on_connection_frame(uint64_t connection_id, Frame&& frame) {
  if (fresh.count(connection_id)) return on_first_frame(connection_id, std::move(frame));
  if (nvml_connections.count(connection_id)) return on_nvml_question(connection_id, frame);
  auto owner = session_of_connection.find(connection_id);
  if (owner == session_of_connection.end()) return;
  auto s = sessions.find(owner->second);
  if (s == sessions.end()) return;
  auto c = s->second->connections.find(connection_id);
  if (c == s->second->connections.end()) return;
  std::shared_ptr<AppConnection> connection = c->second;  // alive while its frame is handled
  on_app_frame(*s->second, *connection, std::move(frame));
}

void ClientDaemon::Impl::connect_server(uint64_t session_id) {
  AppSession& session = *sessions.at(session_id);
  const ServerTarget target = settings.servers[session.server];
  SessionOpenMsg open;
  for (const auto& device : session.devices) open.gpu_indices.push_back(device.index);
  // The TLS and token handshake and the session's opening block: they run off the event loop,
  // then the socket is handed over.
  blocking.start([this, session_id, target, api = session.api, open = encode(open)] {
    UniqueFd fd;
    SslPtr ssl;
    uint64_t key = 0;
    std::string error;
    try {
      auto connection = Session::connect(session_options(target, "rgpu client"));
      key = connection->open_application_session(api, open);
      connection->channel().release(fd, ssl);
    } catch (const std::exception& e) {
      error = e.what();
    }
    auto fd_raw = fd.release();
    SSL* ssl_raw = ssl.release();
    loop.post([this, session_id, fd_raw, ssl_raw, key, error] {
      on_server_connected(session_id, UniqueFd(fd_raw), SslPtr(ssl_raw), key, error);
    });
  });
}

void ClientDaemon::Impl::on_server_connected(uint64_t session_id, UniqueFd fd, SslPtr ssl, uint64_t key,
                                             std::string error) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;  // the application left meanwhile; fd closes here
  AppSession& session = *it->second;
  const std::string server = settings.servers[session.server].address.to_string();
  if (!error.empty()) return fail_session(session, error);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  timeval none{};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
  session.key = key;
  session.keepalive = Keepalive(settings.keepalive_timeout);
  session.heard = Keepalive::Clock::now();
  session.server_link = std::make_shared<FrameLink>(loop, std::move(fd), server);
  // Before the link reads anything: what already waits on the socket is TLS records.
  if (ssl) session.server_link->adopt_tls(std::move(ssl));
  session.server_link->start(FrameLink::Callbacks{
      .on_frame =
          [this, session_id](Frame&& frame) {
            if (heard_from_server(session_id, frame)) on_server_frame(session_id, std::move(frame));
          },
      .on_close = [this, session_id, server](const std::string& reason) {
        server_lost(session_id, "server " + server + " closed the connection: " + reason);
      },
      .on_malformed = [server](const FrameError& e) { LOG_WARN("malformed frame from %s: %s", server.c_str(), e.what()); },
  });
  // Large answers (device -> host data) are received straight into the asking thread's ring.
  session.server_link->set_bulk_sink([this, session_id](const FrameHeader& header) { return ring_for_answer(session_id, header); },
                                     cuda::kBulkFrameMinSize);
  session.state = AppSession::State::Open;
  ++sessions_epoch;
  if (session.api == AppApi::Cuda) open_lanes(session);
  for (uint64_t id : session.waiting) welcome(session, id);
  session.waiting.clear();
}

// The session's connection (or a lane) is gone. The server knows why (its worker for this
// application may have crashed): ask it on a connection of our own, then tell the application.
void ClientDaemon::Impl::server_lost(uint64_t session_id, const std::string& reason) {
  auto it = sessions.find(session_id);
  if (it == sessions.end() || it->second->state == AppSession::State::Closed || it->second->asking_fate) return;
  AppSession& session = *it->second;
  session.asking_fate = true;
  const ServerTarget target = settings.servers[session.server];
  blocking.start([this, session_id, target, key = session.key, reason] {
    std::string why = reason;
    try {
      SessionOptions options = session_options(target, "rgpu client");
      options.timeout = kFateTimeout;
      why = Session::connect(options)->session_fate(key);
    } catch (const std::exception& e) {
      LOG_DEBUG("could not learn how session %llx ended: %s", static_cast<unsigned long long>(key), e.what());
    }
    loop.post([this, session_id, why] {
      auto s = sessions.find(session_id);
      if (s != sessions.end() && s->second->state != AppSession::State::Closed) fail_session(*s->second, why);
    });
  });
}

bool ClientDaemon::Impl::heard_from_server(uint64_t session_id, const Frame& frame) {
  if (auto it = sessions.find(session_id); it != sessions.end()) it->second->heard = Keepalive::Clock::now();
  return frame.header.type != static_cast<uint16_t>(MsgType::Pong);
}

// A server that stops (SIGSTOP, a hang) or a network that silently stops delivering closes
// nothing: without this, the application's calls would wait forever. The worker answers a Ping
// from its event loop, whatever driver call runs, so a long kernel or wait is not silence.
void ClientDaemon::Impl::keep_alive() {
  const auto now = Keepalive::Clock::now();
  std::vector<uint64_t> silent;
  for (auto& [id, session] : sessions) {
    if (session->state != AppSession::State::Open || !session->server_link) continue;
    switch (session->keepalive.check(now, session->heard)) {
      case Keepalive::Due::Nothing: break;
      case Keepalive::Due::Ping:
        session->server_link->send(encode_frame(static_cast<uint16_t>(MsgType::Ping), 0, {}, 0, Compression::Never));
        break;
      case Keepalive::Due::Gone: silent.push_back(id); break;
    }
  }
  for (uint64_t id : silent) {
    AppSession& session = *sessions.at(id);
    fail_session(session, "server " + settings.servers[session.server].address.to_string() + " " +
                              session.keepalive.silence() +
                              ": it is taken as gone (stopped, hung, or the network no longer delivers)");
  }
  loop.after(Keepalive(settings.keepalive_timeout).period(), [this](int) { keep_alive(); });
}

BulkPayload ClientDaemon::Impl::ring_for_answer(uint64_t session_id, const FrameHeader& header) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return {};
  AppSession& session = *it->second;
  if (header.type == vk::kMsgVulkanMemory) return ring_for_memory(session, header);
  if (header.type != cuda::kMsgCudaReply) return {};
  auto route = session.routes.find(header.request_id);
  if (route == session.routes.end() || route->second.out_capacity < header.payload_len) return {};
  auto c = session.connections.find(route->second.connection);
  if (c == session.connections.end()) return {};
  const std::shared_ptr<AppConnection>& connection = c->second;
  return BulkPayload{{connection->ring + route->second.out_offset, route->second.out_capacity}, connection};
}

// A free slot of the ring's upper half for device changes to mapped memory (an ICD has one
// connection); none when all are taken: the frame then comes through the socket.
BulkPayload ClientDaemon::Impl::ring_for_memory(AppSession& session, const FrameHeader& header) {
  if (session.api != AppApi::Vulkan || session.connections.size() != 1) return {};
  const std::shared_ptr<AppConnection>& connection = session.connections.begin()->second;
  const vk::VulkanRingLayout layout = vk::vulkan_ring_layout(connection->ring_size);
  if (connection->ring == nullptr || header.payload_len > layout.incoming_slot || header.payload_len < vk::kRingMemoryMin)
    return {};
  session.incoming_busy.resize(layout.incoming_slots, false);
  auto free = std::find(session.incoming_busy.begin(), session.incoming_busy.end(), false);
  if (free == session.incoming_busy.end()) return {};
  *free = true;
  const uint64_t offset = layout.incoming_base + (free - session.incoming_busy.begin()) * layout.incoming_slot;
  return BulkPayload{{connection->ring + offset, header.payload_len}, connection};
}

void ClientDaemon::Impl::on_ring_release(AppSession& session, AppConnection& connection, const Frame& frame) {
  const RingReleaseMsg release = decode_ring_release(frame.payload);
  const vk::VulkanRingLayout layout = vk::vulkan_ring_layout(connection.ring_size);
  const uint64_t slot = release.offset >= layout.incoming_base
                            ? (release.offset - layout.incoming_base) / layout.incoming_slot
                            : session.incoming_busy.size();
  if (slot >= session.incoming_busy.size() || !session.incoming_busy[slot] ||
      release.offset != layout.incoming_base + slot * layout.incoming_slot) {
    connection.link->send(error_frame(0, ErrorCode::MalformedFrame,
                                      "RingRelease of ring offset " + std::to_string(release.offset) +
                                          ", which holds nothing given to the application"));
    return connection.link->finish_after_flush();
  }
  session.incoming_busy[slot] = false;
}

void ClientDaemon::Impl::on_server_frame(uint64_t session_id, Frame&& frame) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;
  AppSession& session = *it->second;
  if (frame.header.request_id == 0) {
    if (frame.bulk.owner) {
      // Received into a ring slot (ring_for_memory): the ICD is told where.
      auto& connection = *static_cast<AppConnection*>(frame.bulk.owner.get());
      const RingSpec spec{0, 0, static_cast<uint64_t>(frame.bulk.bytes.data() - connection.ring), frame.bulk.bytes.size()};
      connection.link->send(encode_frame(frame.header.type, 0, {reinterpret_cast<const uint8_t*>(&spec), sizeof spec},
                                         static_cast<uint16_t>(frame.header.flags | kFrameRing), Compression::Never));
      return;
    }
    for (auto& [id, connection] : session.connections)
      connection->link->send(encode_frame(frame.header.type, 0, frame.payload, frame.header.flags, Compression::Never));
    return;
  }
  auto route = session.routes.find(frame.header.request_id);
  if (route == session.routes.end()) {
    LOG_WARN("answer to unknown request %llu from the server; dropped",
             static_cast<unsigned long long>(frame.header.request_id));
    return;
  }
  const AppSession::Route r = route->second;
  session.routes.erase(route);
  auto c = session.connections.find(r.connection);
  if (c == session.connections.end()) return;  // that thread is gone
  AppConnection& connection = *c->second;
  auto answer_in_ring = [&](size_t size) {
    RingSpec spec{0, 0, r.out_offset, size};
    connection.link->send(encode_frame(frame.header.type, frame.header.request_id,
                                       {reinterpret_cast<const uint8_t*>(&spec), sizeof spec},
                                       static_cast<uint16_t>(frame.header.flags | kFrameRing), Compression::Never));
  };
  if (frame.bulk.owner) return answer_in_ring(frame.bulk.bytes.size());  // received into the ring
  if (r.out_capacity > 0 && frame.payload.size() <= r.out_capacity) {
    std::memcpy(connection.ring + r.out_offset, frame.payload.data(), frame.payload.size());
    return answer_in_ring(frame.payload.size());
  }
  connection.link->send(
      encode_frame(frame.header.type, frame.header.request_id, frame.payload, frame.header.flags, Compression::Never));
}

void ClientDaemon::Impl::on_app_frame(AppSession& session, AppConnection& connection, Frame&& frame) {
  if (frame.header.type == static_cast<uint16_t>(AppMsg::RingRelease)) {
    try {
      return on_ring_release(session, connection, frame);
    } catch (const WireError& e) {
      connection.link->send(error_frame(0, ErrorCode::MalformedFrame, e.what()));
      return connection.link->finish_after_flush();
    }
  }
  const bool wants_answer = !(frame.header.flags & kFrameNoReply);
  if (session.state != AppSession::State::Open || !session.server_link) {
    // A call that waits gets its answer; one that does not is told at its next wait (request 0).
    connection.link->send(error_frame(wants_answer ? frame.header.request_id : 0, ErrorCode::UnexpectedMessage,
                                      "no server for this process"));
    return;
  }
  if (!(frame.header.flags & kFrameRing)) {
    if (wants_answer) session.routes[frame.header.request_id] = {connection.id, 0, 0};
    session.server_link->send(
        encode_frame(frame.header.type, frame.header.request_id, frame.payload, frame.header.flags, Compression::Never));
    return;
  }
  RingSpec spec;
  if (frame.payload.size() < sizeof spec) {
    connection.link->send(error_frame(frame.header.request_id, ErrorCode::MalformedFrame, "ring frame without RingSpec"));
    return connection.link->finish_after_flush();
  }
  std::memcpy(&spec, frame.payload.data(), sizeof spec);
  const size_t inline_size = frame.payload.size() - sizeof spec;
  if (!ring_spec_fits(spec, connection.ring_size, inline_size)) {
    connection.link->send(error_frame(frame.header.request_id, ErrorCode::MalformedFrame, "ring range outside the ring"));
    return connection.link->finish_after_flush();
  }
  if (wants_answer) session.routes[frame.header.request_id] = {connection.id, spec.out_offset, spec.out_capacity};
  FrameHeader header = frame.header;
  header.flags = static_cast<uint16_t>(header.flags & ~(kFrameRing | kFrameCompressed));
  header.payload_len = static_cast<uint32_t>(inline_size + spec.in_length);
  std::vector<uint8_t> head(kFrameHeaderSize + inline_size);
  std::memcpy(head.data(), &header, kFrameHeaderSize);
  std::memcpy(head.data() + kFrameHeaderSize, frame.payload.data() + sizeof spec, inline_size);
  // The bytes are sent from the ring: its connection (which unmaps it when it goes) is kept until
  // they have left; then a no-reply frame's part of the ring is given back.
  std::shared_ptr<AppConnection> ring_owner = session.connections.at(connection.id);
  const bool give_back = !wants_answer && spec.in_length > 0;
  std::function<void()> release = [ring_owner, give_back, spec] {
    if (give_back)
      ring_owner->link->send(
          frame_of(static_cast<uint16_t>(AppMsg::RingRelease), 0, RingReleaseMsg{spec.in_offset, spec.in_length}));
  };
  const std::span<const uint8_t> data{connection.ring + spec.in_offset, spec.in_length};
  if (BulkLane* lane = !wants_answer && spec.in_length >= kLaneMinSize ? lane_for(session, false) : nullptr)
    return lane->send(std::move(head), data, std::move(release));
  // A request for much data (a chunk of a device-to-host copy): its answer comes over the lane,
  // straight into the ring.
  if (BulkLane* lane = wants_answer && spec.out_capacity >= kLaneMinAnswer ? lane_for(session, true) : nullptr)
    return lane->send(std::move(head), data, std::move(release),
                      BulkLane::Answer{frame.header.request_id, {connection.ring + spec.out_offset, spec.out_capacity},
                                       ring_owner});
  session.server_link->send_borrowed(std::move(head), data, std::move(release));
}

void ClientDaemon::Impl::open_lanes(AppSession& session) {
  SessionOptions options = session_options(settings.servers[session.server], "rgpu client (bulk lane)");
  // The session's own connection was just made: a lane that takes longer is not worth waiting for
  // (a session that ends waits for its lanes' threads).
  options.timeout = std::chrono::seconds(2);
  const uint64_t key = session.key;
  const uint64_t session_id = session.id;
  for (uint32_t i = 0; i < settings.bulk_lanes; ++i) {
    session.lanes.push_back(std::make_unique<BulkLane>(
        options, key, settings.keepalive_timeout, [this](std::function<void()> work) { loop.post(std::move(work)); },
        [this, session_id](const std::string& why) { server_lost(session_id, why); },
        [this, session_id](Frame&& answer) { on_server_frame(session_id, std::move(answer)); }));
  }
}

BulkLane* ClientDaemon::Impl::lane_for(AppSession& session, bool request) {
  for (size_t tried = 0; tried < session.lanes.size(); ++tried) {
    BulkLane& lane = *session.lanes[session.next_lane++ % session.lanes.size()];
    if (lane.ready() && (!request || lane.answers())) return &lane;
  }
  return nullptr;
}

void ClientDaemon::Impl::retire_lanes(AppSession& session) {
  if (session.lanes.empty()) return;
  // Before the server can see the session end and close them: a lane closed now is not lost.
  for (auto& lane : session.lanes) lane->retire();
  for (auto& lane : session.lanes) lane->stop();
  auto lanes = std::make_shared<std::vector<std::unique_ptr<BulkLane>>>(std::move(session.lanes));
  blocking.start([lanes] { lanes->clear(); });
  session.lanes.clear();
}

void ClientDaemon::Impl::fail_session(AppSession& session, const std::string& reason) {
  LOG_WARN("application %s (pid %d): %s", session.program.c_str(), session.pid, reason.c_str());
  session.state = AppSession::State::Closed;
  ++sessions_epoch;
  session.lost = reason;
  for (auto& [id, connection] : session.connections) {
    connection->link->send(frame_of(static_cast<uint16_t>(AppMsg::ServerGone), 0, ErrorMsg{ErrorCode::Internal, reason}));
    connection->link->finish_after_flush();
  }
  retire_lanes(session);
  if (session.server_link) session.server_link->close(reason);
}

void ClientDaemon::Impl::drop_connection(uint64_t session_id, uint64_t connection_id) {
  auto it = sessions.find(session_id);
  if (it == sessions.end()) return;
  AppSession& session = *it->second;
  session.connections.erase(connection_id);
  std::erase(session.waiting, connection_id);
  if (!session.connections.empty()) return;
  LOG_INFO("application %s (pid %d) finished", session.program.c_str(), session.pid);
  session.state = AppSession::State::Closed;
  ++sessions_epoch;
  retire_lanes(session);
  if (session.server_link) session.server_link->close("the application finished");
  sessions.erase(it);
}

void ClientDaemon::Impl::on_nvml_question(uint64_t connection_id, const Frame& frame) {
  auto it = nvml_connections.find(connection_id);
  if (it == nvml_connections.end()) return;
  AppConnection& connection = *it->second;
  if (frame.header.type != kMsgAppNvmlQuery || !frame.payload.empty() || frame.header.flags != 0) {
    connection.link->send(error_frame(0, ErrorCode::UnexpectedMessage,
                                      std::string("an NVML connection carries only empty NvmlQuery frames, got ") +
                                          msg_type_name(frame.header.type)));
    nvml_connections.erase(it);
    return connection.link->finish_after_flush();
  }
  if (nvml_waiting.size() >= 256) {  // many processes asking at once: they wait for one fetch
    connection.link->send(error_frame(frame.header.request_id, ErrorCode::TooManyClients, "too many NVML questions at once"));
    return;
  }
  nvml_waiting.emplace_back(connection_id, frame.header.request_id);
  const bool fresh_enough = nvml_view && nvml_view->epoch == sessions_epoch &&
                            std::chrono::steady_clock::now() - nvml_view->taken < kNvmlKept;
  if (fresh_enough) {
    for (auto [id, request] : std::exchange(nvml_waiting, {})) answer_nvml(id, request);
    return;
  }
  if (nvml_fetching) return;
  nvml_fetching = true;
  // Only this daemon's own sessions are named: the servers show no other process.
  SessionOwners owners;
  for (const auto& [id, session] : sessions)
    if (session->state == AppSession::State::Open && session->key != 0)
      owners[{session->server, session->key}] = static_cast<uint32_t>(session->pid);
  blocking.start([this, owners, epoch = sessions_epoch] {
    auto answers = fetch_nvml(settings.servers, settings.pool, owners);
    loop.post([this, answers = std::move(answers), owners, epoch]() mutable {
      nvml_fetched(std::move(answers), std::move(owners), epoch);
    });
  });
}

void ClientDaemon::Impl::nvml_fetched(std::vector<ServerNvml> answers, SessionOwners owners, uint64_t epoch) {
  nvml_fetching = false;
  NvmlView view;
  view.taken = std::chrono::steady_clock::now();
  view.epoch = epoch;
  std::string errors;
  bool any = false;
  for (const ServerNvml& answer : answers) {
    any = any || answer.answered;
    if (!answer.answered) {
      LOG_WARN("NVML of %s", answer.error.c_str());
      errors += (errors.empty() ? "" : "; ") + answer.error;
    }
  }
  if (any || answers.empty()) view.payload = encode(pool_nvml_view(settings.pool, answers, owners));
  else view.error = "no GPU server answered: " + errors;
  nvml_view = std::move(view);
  for (auto [id, request] : std::exchange(nvml_waiting, {})) answer_nvml(id, request);
}

void ClientDaemon::Impl::answer_nvml(uint64_t connection_id, uint64_t request) {
  auto it = nvml_connections.find(connection_id);
  if (it == nvml_connections.end() || !nvml_view) return;
  if (!nvml_view->error.empty())
    return it->second->link->send(error_frame(request, ErrorCode::Internal, nvml_view->error));
  it->second->link->send(encode_frame(kMsgAppNvmlSnapshot, request, nvml_view->payload, 0, Compression::Never));
}

ClientDaemon::ClientDaemon(ClientDaemonSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}

ClientDaemon::~ClientDaemon() {
  impl_->sessions.clear();
  impl_->fresh.clear();
  impl_->nvml_connections.clear();
  if (!impl_->created_socket.empty()) ::unlink(impl_->created_socket.c_str());
}

void ClientDaemon::start() {
  auto& s = impl_->settings;
  if (s.listen_fd) {
    impl_->listen_fd = UniqueFd(*s.listen_fd);
    return;
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (s.socket_path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + s.socket_path);
  std::memcpy(addr.sun_path, s.socket_path.c_str(), s.socket_path.size() + 1);
  prepare_socket_path(s.socket_path);  // a folder of our own; only a stale socket of ours is removed
  const mode_t old_mask = ::umask(0177);
  const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_mask);
  if (rc != 0) throw std::runtime_error("cannot listen on " + s.socket_path + ": " + std::strerror(errno));
  if (::listen(fd.get(), 128) != 0) throw std::runtime_error("listen on " + s.socket_path + ": " + std::strerror(errno));
  impl_->listen_fd = std::move(fd);
  impl_->created_socket = s.socket_path;
}

void ClientDaemon::run() {
  impl_->accept_next();
  impl_->keep_alive();
  impl_->loop.run();
  ::shutdown(impl_->listen_fd.get(), SHUT_RDWR);
}

void ClientDaemon::stop() { impl_->loop.stop(); }

}  // namespace rgpu::client
