#include "server.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>
#include <unordered_map>

#include "app_protocol.hpp"
#include "auth.hpp"
#include "bulk_lane_reader.hpp"
#include "cuda_driver.hpp"
#include "cuda_session.hpp"
#include "cuda_wire.hpp"
#include "event_loop.hpp"
#include "frame.hpp"
#include "frame_link.hpp"
#include "log.hpp"
#include "loop_threads.hpp"
#include "net.hpp"
#include "tls.hpp"
#include "vulkan_instance.hpp"
#include "vulkan_session.hpp"
#include "vulkan_wire.hpp"
#include "wire.hpp"

namespace rgpu {

namespace {
using Clock = std::chrono::steady_clock;
constexpr auto kSweepInterval = std::chrono::milliseconds(500);
// How long a refused or failed peer has to read our error before the socket is closed.
constexpr auto kLingerTime = std::chrono::seconds(2);

void set_accepted_socket_options(int fd) {
  set_tcp_options(fd);
  int on = 1, idle = 30, interval = 10, count = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

template <typename Msg>
std::vector<uint8_t> frame_of(MsgType type, uint64_t request_id, const Msg& msg) {
  return encode_frame(static_cast<uint16_t>(type), request_id, encode(msg));
}
}  // namespace

class Connection;

struct Server::Impl {
  explicit Impl(ServerSettings s) : settings(std::move(s)) {}

  void accept_next();
  void on_accept(int res);
  void sweep();
  void forget(uint64_t id, bool counted);
  void forget_admission();

  ServerSettings settings;
  EventLoop loop;
  UniqueFd listen_fd;
  SslCtxPtr tls;
  uint16_t port = 0;
  uint64_t next_connection_id = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> connections;
  size_t admitted = 0;  // connections counted against max_clients
  std::atomic<size_t> connection_count{0};
  bool stopping = false;
  // Device memory quota shared by all connections of a token (token name -> budget).
  std::unordered_map<std::string, std::shared_ptr<cuda::MemoryBudget>> budgets;
  // CUDA sessions that bulk lanes may join: lane key -> the session and the token it was opened
  // with (a lane must come with the same token).
  struct LaneTarget {
    std::weak_ptr<cuda::CudaSession> session;
    const TokenEntry* token = nullptr;
    uint64_t owner = 0;           // the session's own connection
    std::vector<uint64_t> lanes;  // connections joined to it
  };
  std::unordered_map<uint64_t, LaneTarget> lane_targets;
  static constexpr size_t kMaxLanesPerSession = 16;
  // Where joined lanes are read: loop threads of their own, started with the first lane.
  std::unique_ptr<LoopThreads> lane_loops;
  std::shared_ptr<EventLoop> lane_loop() {
    if (!lane_loops) lane_loops = std::make_unique<LoopThreads>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u));
    return lane_loops->next();
  }
  void close_connection(uint64_t id, const std::string& reason);

  std::shared_ptr<cuda::MemoryBudget> budget_for(const TokenEntry* token) {
    if (token == nullptr) return std::make_shared<cuda::MemoryBudget>();
    auto& budget = budgets[token->name];
    if (!budget) {
      budget = std::make_shared<cuda::MemoryBudget>();
      budget->limit = token->max_memory.value_or(0);
    }
    return budget;
  }
};

// One client connection's protocol state, on the event loop thread; bytes move through its FrameLink.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State { AwaitFirst, TlsHandshake, AwaitHello, AwaitAuth, Ready, Refusing, Closing };

  Connection(Server::Impl& server, uint64_t id, int fd, bool admitted)
      : server_(server), id_(id), peer_(peer_name(fd)), admitted_(admitted),
        state_(admitted ? State::AwaitFirst : State::Refusing),
        deadline_(Clock::now() + server.settings.handshake_timeout),
        link_(std::make_shared<FrameLink>(server.loop, UniqueFd(fd), peer_)) {}

  void start() {
    std::weak_ptr<Connection> weak = shared_from_this();
    link_->start(FrameLink::Callbacks{
        .on_frame = [weak](Frame&& frame) { if (auto self = weak.lock()) self->on_frame(std::move(frame)); },
        .on_close = [weak](const std::string& reason) { if (auto self = weak.lock()) self->on_closed(reason); },
        .on_malformed =
            [weak](const FrameError& e) {
              if (auto self = weak.lock()) {
                LOG_WARN("malformed frame from %s: %s", self->peer_.c_str(), e.what());
                self->fail(ErrorCode::MalformedFrame, std::string("malformed frame: ") + e.what());
              }
            },
    });
  }
  uint64_t id() const { return id_; }
  bool admitted() const { return admitted_; }

  void check_deadline(Clock::time_point now) {
    if (link_->closed() || state_ == State::Ready || now < deadline_) return;
    if (state_ == State::Closing) return close("peer did not close after our error");
    fail(ErrorCode::Timeout, "handshake not completed within " +
                                 std::to_string(server_.settings.handshake_timeout.count()) + " ms");
  }

  void close(const std::string& reason) {
    if (lane_reader_) return lane_reader_->close(reason);
    link_->close(reason);
  }

 private:
  void on_closed(const std::string& reason) {
    // A session and its lanes go together: frames a closing lane held may be lost, and lanes of a
    // closed session carry nothing.
    auto target = server_.lane_targets.find(lane_key_);
    if (target != server_.lane_targets.end() && lane_) {
      std::erase(target->second.lanes, id_);
      server_.close_connection(target->second.owner, "a bulk lane of its CUDA session closed (" + reason + ")");
    } else if (target != server_.lane_targets.end()) {
      const std::vector<uint64_t> lanes = target->second.lanes;
      server_.lane_targets.erase(target);
      for (uint64_t lane : lanes) server_.close_connection(lane, "its CUDA session closed");
    }
    if (cuda_ && !lane_) cuda_->close();
    if (vulkan_) vulkan_->close();
    if (state_ == State::Ready)
      LOG_INFO("client %s (%s) disconnected: %s", peer_.c_str(), token_name_.c_str(), reason.c_str());
    else
      LOG_INFO("connection from %s closed: %s", peer_.c_str(), reason.c_str());
    server_.forget(id_, admitted_);
  }

  void queue(std::vector<uint8_t> bytes) { link_->send(std::move(bytes)); }

  // ---- protocol ---------------------------------------------------------------------------------
  void fail(ErrorCode code, const std::string& message) {
    if (link_->closed() || state_ == State::Closing) return;
    LOG_WARN("refusing %s: %s", peer_.c_str(), message.c_str());
    queue(frame_of(MsgType::Error, 0, ErrorMsg{code, message}));
    state_ = State::Closing;
    deadline_ = Clock::now() + kLingerTime;
    link_->finish_after_flush();
  }

  void on_frame(Frame frame) {
    const auto type = static_cast<MsgType>(frame.header.type);
    switch (state_) {
      case State::Refusing:
        return fail(ErrorCode::TooManyClients, "server is full (max_clients = " +
                                                   std::to_string(server_.settings.max_clients) + "); try again later");
      case State::AwaitFirst:
        if (type == MsgType::StartTls) return on_start_tls();
        if (type == MsgType::Hello && server_.tls)
          return fail(ErrorCode::TlsRequired, "this server accepts TLS connections only (use TLS: --tls auto or on)");
        [[fallthrough]];
      case State::AwaitHello:
        if (type != MsgType::Hello) return unexpected(frame, "Hello");
        return on_hello(frame);
      case State::AwaitAuth:
        if (type != MsgType::AuthResponse) return unexpected(frame, "AuthResponse");
        return on_auth(frame);
      case State::Ready: return on_request(std::move(frame));
      case State::TlsHandshake:
      case State::Closing: return;
    }
  }

  void unexpected(const Frame& frame, const char* wanted) {
    fail(ErrorCode::UnexpectedMessage,
         std::string("expected ") + wanted + ", got " + msg_type_name(frame.header.type) + " (type " +
             std::to_string(frame.header.type) + ")");
  }

  void on_start_tls() {
    if (!server_.tls)
      return fail(ErrorCode::TlsUnavailable, "this server has no TLS certificate configured (connect with --tls off)");
    if (link_->buffered() != 0)
      return fail(ErrorCode::UnexpectedMessage, "data sent after StartTls before the TLS handshake");
    queue(encode_frame(static_cast<uint16_t>(MsgType::TlsReady), 0, {}));
    state_ = State::TlsHandshake;
    std::weak_ptr<Connection> weak = shared_from_this();
    link_->start_tls_server(server_.tls.get(), [weak] {  // runs once TlsReady has left and TLS is up
      auto self = weak.lock();
      if (!self) return;
      self->state_ = State::AwaitHello;
      LOG_INFO("TLS with %s: %s", self->peer_.c_str(), tls_session_info(self->link_->ssl()).describe().c_str());
    });
  }

  void on_hello(const Frame& frame) {
    HelloMsg hello;
    try {
      hello = decode_hello(frame.payload);
    } catch (const WireError& e) {
      return fail(ErrorCode::MalformedFrame, e.what());
    }
    if (hello.min_version > kProtocolVersion || hello.max_version < kProtocolVersion)
      return fail(ErrorCode::ProtocolVersion,
                  "client speaks protocol versions " + std::to_string(hello.min_version) + "-" +
                      std::to_string(hello.max_version) + ", this server speaks version " +
                      std::to_string(kProtocolVersion) + "; install matching RGPU versions");
    client_nonce_ = hello.client_nonce;
    client_name_ = hello.client_name;
    server_nonce_ = random_nonce();
    ChallengeMsg challenge;
    challenge.version = kProtocolVersion;
    challenge.server_id = server_.settings.server_id;
    challenge.auth_required = !server_.settings.tokens.empty();
    challenge.server_nonce = server_nonce_;
    char host[256] = "rgpu";
    ::gethostname(host, sizeof host - 1);
    challenge.server_name = host;
    state_ = State::AwaitAuth;
    queue(frame_of(MsgType::Challenge, 0, challenge));
  }

  void on_auth(const Frame& frame) {
    AuthResponseMsg response;
    try {
      response = decode_auth_response(frame.payload);
    } catch (const WireError& e) {
      return fail(ErrorCode::MalformedFrame, e.what());
    }
    std::vector<uint8_t> binding;
    if (link_->ssl()) binding = tls_channel_binding(link_->ssl());
    WelcomeMsg welcome;
    if (server_.settings.tokens.empty()) {
      token_name_ = "open";
      token_ = nullptr;
    } else {
      token_ = find_token(response.client_mac, binding);
      if (token_ == nullptr) return fail(ErrorCode::AuthFailed, "the token is not valid for this server");
      token_name_ = token_->name;
      welcome.server_mac = server_auth_mac(token_->token, server_nonce_, client_nonce_, binding);
      if (token_->allowed_gpus) welcome.allowed_gpus = *token_->allowed_gpus;
      welcome.max_memory = token_->max_memory.value_or(0);
    }
    welcome.token_name = token_name_;
    state_ = State::Ready;
    LOG_INFO("client %s authenticated from %s as '%s'%s", client_name_.c_str(), peer_.c_str(), token_name_.c_str(),
             link_->ssl() ? "" : " (unencrypted)");
    queue(frame_of(MsgType::Welcome, 0, welcome));
  }

  const TokenEntry* find_token(const Mac& mac, std::span<const uint8_t> binding) const {
    const TokenEntry* match = nullptr;
    for (const auto& entry : server_.settings.tokens)  // every token is tried: no early exit to time
      if (mac_equal(client_auth_mac(entry.token, server_nonce_, client_nonce_, binding), mac)) match = &entry;
    return match;
  }

  void reply_error(uint64_t id, ErrorCode code, const std::string& message) {
    queue(frame_of(MsgType::Error, id, ErrorMsg{code, message}));
  }

  // The GPUs a SessionOpen names, each one this token may use with `api`; nullopt after replying
  // with the error (or failing the connection on a malformed payload).
  std::optional<std::vector<const GpuInfo*>> session_gpus(uint64_t id, std::span<const uint8_t> payload, AppApi api) {
    SessionOpenMsg open;
    try {
      open = decode_session_open(payload);
    } catch (const WireError& e) {
      fail(ErrorCode::MalformedFrame, e.what());
      return std::nullopt;
    }
    std::vector<const GpuInfo*> gpus;
    for (uint32_t index : open.gpu_indices) {
      const GpuInfo* gpu = nullptr;
      for (const auto& candidate : server_.settings.gpus)
        if (candidate.index == index) gpu = &candidate;
      const bool speaks = gpu != nullptr && (api == AppApi::Cuda ? gpu->cuda : gpu->vulkan);
      if (!speaks || !gpu_allowed(index)) {
        reply_error(id, ErrorCode::Forbidden,
                    "GPU " + std::to_string(index) + " is not a " + app_api_name(api) +
                        " GPU this server shares with token '" + token_name_ + "'");
        return std::nullopt;
      }
      gpus.push_back(gpu);
    }
    return gpus;
  }

  void open_vulkan(uint64_t id, std::span<const uint8_t> payload) {
    if (vulkan_ || lane_) return reply_error(id, ErrorCode::UnexpectedMessage, "a session is already open here");
    auto gpus = session_gpus(id, payload, AppApi::Vulkan);
    if (!gpus) return;
    vk::Instance& instance = vk::Instance::get();
    if (!instance.ready())
      return reply_error(id, ErrorCode::NotSupported, "this server has no working Vulkan instance: " + instance.problem());
    std::vector<vk::SessionGpu> devices;
    for (const GpuInfo* gpu : *gpus)
      devices.push_back(vk::SessionGpu{gpu->index, static_cast<uint32_t>(gpu->vulkan_ordinal)});
    std::weak_ptr<FrameLink> weak_link = link_;
    EventLoop* loop = &server_.loop;
    auto send = [loop, weak_link](std::vector<uint8_t> frame) {
      loop->post([weak_link, frame = std::move(frame)]() mutable {
        if (auto link = weak_link.lock()) link->send(std::move(frame));
      });
    };
    vulkan_ = std::make_shared<vk::VulkanSession>(std::move(devices), server_.budget_for(token_), send,
                                                  client_name_ + " from " + peer_);
    LOG_INFO("Vulkan session for %s on %zu GPU(s)", peer_.c_str(), gpus->size());
    queue(encode_frame(kMsgVulkanOpened, id, {}));
  }

  void open_cuda(uint64_t id, std::span<const uint8_t> payload) {
    if (cuda_) return reply_error(id, ErrorCode::UnexpectedMessage, "the CUDA session is already open");
    auto gpus = session_gpus(id, payload, AppApi::Cuda);
    if (!gpus) return;
    cuda::Driver& driver = cuda::Driver::get();
    if (!driver.ready())
      return reply_error(id, ErrorCode::NotSupported, "this server has no working CUDA driver: " + driver.problem());
    cuda::DeviceMap devices;
    for (const GpuInfo* gpu : *gpus) devices.real.push_back(gpu->cuda_ordinal);
    std::weak_ptr<FrameLink> weak_link = link_;
    EventLoop* loop = &server_.loop;
    auto send = [loop, weak_link](std::vector<uint8_t> head, BulkPayload tail) {
      post_send(*loop, weak_link, std::move(head), std::move(tail));
    };
    cuda_ = std::make_shared<cuda::CudaSession>(devices, server_.budget_for(token_), send,
                                                client_name_ + " from " + peer_);
    receive_into_staging();
    LOG_INFO("CUDA session for %s on %zu GPU(s)", peer_.c_str(), devices.real.size());
    // A key further connections of this token join with (bulk lanes); 0 is never one.
    while (lane_key_ == 0 || server_.lane_targets.count(lane_key_))
      if (RAND_bytes(reinterpret_cast<unsigned char*>(&lane_key_), sizeof lane_key_) != 1) lane_key_ = 0;
    server_.lane_targets[lane_key_] = Server::Impl::LaneTarget{cuda_, token_, id_, {}};
    WireWriter opened;
    opened.put(lane_key_);
    queue(encode_frame(kMsgCudaOpened, id, opened.buffer()));
  }

  // Large calls (host -> device data) are received straight into cuda_'s staging memory.
  void receive_into_staging() {
    link_->set_bulk_sink(cuda::CudaSession::staging_sink(cuda_), cuda::kBulkFrameMinSize);
  }

  // A bulk lane: this connection carries calls of the CUDA session with the key too.
  void join_cuda(uint64_t id, std::span<const uint8_t> payload) {
    if (cuda_ || vulkan_) return reply_error(id, ErrorCode::UnexpectedMessage, "a session is already open here");
    uint64_t key = 0;
    try {
      WireReader reader(payload, "CudaJoin");
      key = reader.get<uint64_t>();
      reader.expect_end();
    } catch (const WireError& e) {
      return reply_error(id, ErrorCode::MalformedFrame, e.what());
    }
    auto target = server_.lane_targets.find(key);
    auto session = target == server_.lane_targets.end() ? nullptr : target->second.session.lock();
    if (!session) return reply_error(id, ErrorCode::Forbidden, "no CUDA session has that lane key");
    if (target->second.token != token_)
      return reply_error(id, ErrorCode::Forbidden, "the CUDA session with that lane key belongs to another token");
    if (target->second.lanes.size() >= Server::Impl::kMaxLanesPerSession)
      return reply_error(id, ErrorCode::Forbidden,
                         "the CUDA session has " + std::to_string(Server::Impl::kMaxLanesPerSession) + " bulk lanes already");
    cuda_ = std::move(session);
    lane_ = true;
    lane_key_ = key;
    target->second.lanes.push_back(id_);
    // A lane is part of its application's session, not a client of its own.
    if (admitted_) server_.forget_admission();
    admitted_ = false;
    LOG_INFO("bulk lane from %s joined a CUDA session", peer_.c_str());
    // From here on the lane is read on a loop thread of its own; it sent nothing after CudaJoin.
    std::weak_ptr<Connection> weak = shared_from_this();
    link_->hand_over([weak, id](FrameLink::Handover connection) {
      auto self = weak.lock();
      if (!self) return;
      EventLoop* main_loop = &self->server_.loop;
      self->lane_reader_ = BulkLaneReader::start(
          self->server_.lane_loop(), std::move(connection), self->peer_, self->cuda_, id,
          [main_loop, weak](const std::string& reason) {
            main_loop->post([weak, reason] {
              if (auto closed = weak.lock()) closed->on_closed(reason);
            });
          });
    });
  }

  bool gpu_allowed(uint32_t index) const {
    if (token_ == nullptr || !token_->allowed_gpus) return true;
    for (uint32_t allowed : *token_->allowed_gpus)
      if (allowed == index) return true;
    return false;
  }

  void on_request(Frame frame) {
    const uint64_t id = frame.header.request_id;
    if (frame.header.version != kProtocolVersion)
      return fail(ErrorCode::MalformedFrame, "frame carries protocol version " + std::to_string(frame.header.version) +
                                                 " on a version " + std::to_string(kProtocolVersion) + " connection");
    switch (static_cast<MsgType>(frame.header.type)) {
      case MsgType::ListGpus: {
        GpuListMsg list;
        list.server_id = server_.settings.server_id;
        for (const auto& gpu : server_.settings.gpus)
          if (gpu_allowed(gpu.index)) list.gpus.push_back(gpu);
        return queue(frame_of(MsgType::GpuList, id, list));
      }
      case MsgType::Ping:
        return queue(encode_frame(static_cast<uint16_t>(MsgType::Pong), id, frame.payload, 0, Compression::Never));
      default:
        if (frame.header.type == cuda::kMsgCudaCall) {
          if (!cuda_) return reply_error(id, ErrorCode::UnexpectedMessage, "CUDA call before the CUDA session was opened");
          return cuda_->submit(std::move(frame));
        }
        if (frame.header.type == kMsgCudaOpen) return open_cuda(id, frame.payload);
        if (frame.header.type == kMsgCudaJoin) return join_cuda(id, frame.payload);
        if (frame.header.type == vk::kMsgVulkanCall) {
          if (!vulkan_)
            return reply_error(id, ErrorCode::UnexpectedMessage, "Vulkan call before the Vulkan session was opened");
          return vulkan_->submit(std::move(frame));
        }
        if (frame.header.type == kMsgVulkanOpen) return open_vulkan(id, frame.payload);
        queue(frame_of(MsgType::Error, id,
                       ErrorMsg{ErrorCode::NotSupported, std::string("message type ") + msg_type_name(frame.header.type) +
                                                             " (" + std::to_string(frame.header.type) +
                                                             ") is not supported by this server"}));
    }
  }

  Server::Impl& server_;
  uint64_t id_;
  std::string peer_;
  bool admitted_;
  State state_;
  Clock::time_point deadline_;
  std::shared_ptr<FrameLink> link_;

  Nonce client_nonce_{};
  Nonce server_nonce_{};
  std::string client_name_;
  std::string token_name_;
  const TokenEntry* token_ = nullptr;
  std::shared_ptr<cuda::CudaSession> cuda_;
  bool lane_ = false;      // cuda_ is another connection's session, joined as a bulk lane
  std::shared_ptr<BulkLaneReader> lane_reader_;  // the lane once handed over to its loop thread
  uint64_t lane_key_ = 0;  // the key of this connection's CUDA session (its own, or the one joined)
  std::shared_ptr<vk::VulkanSession> vulkan_;
};

void Server::Impl::accept_next() {
  loop.accept(listen_fd.get(), [this](int res) { on_accept(res); });
}

void Server::Impl::on_accept(int res) {
  if (stopping) return;
  if (res < 0) {
    LOG_WARN("accept failed: %s", std::strerror(-res));
    if (res == -EMFILE || res == -ENFILE) {
      loop.after(std::chrono::milliseconds(100), [this](int) { accept_next(); });
      return;
    }
  } else {
    set_accepted_socket_options(res);
    const bool admit = admitted < settings.max_clients;
    if (admit) ++admitted;
    auto connection = std::make_shared<Connection>(*this, next_connection_id++, res, admit);
    LOG_DEBUG("connection %llu from %s%s", static_cast<unsigned long long>(connection->id()), peer_name(res).c_str(),
              admit ? "" : " (over max_clients)");
    connections.emplace(connection->id(), connection);
    connection_count.store(connections.size());
    connection->start();
  }
  accept_next();
}

void Server::Impl::forget_admission() { --admitted; }

void Server::Impl::close_connection(uint64_t id, const std::string& reason) {
  auto it = connections.find(id);
  if (it == connections.end()) return;
  std::shared_ptr<Connection> connection = it->second;  // alive while it closes and is forgotten
  connection->close(reason);
}

void Server::Impl::forget(uint64_t id, bool counted) {
  if (connections.erase(id) == 0) return;
  if (counted) --admitted;
  connection_count.store(connections.size());
}

void Server::Impl::sweep() {
  if (stopping) return;
  const auto now = Clock::now();
  std::vector<std::shared_ptr<Connection>> all;
  for (auto& [id, c] : connections) all.push_back(c);
  for (auto& c : all) c->check_deadline(now);
  loop.after(kSweepInterval, [this](int) { sweep(); });
}

Server::Server(ServerSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}

Server::~Server() {
  // Connections' pending operations die with the loop, which closes their sockets.
  impl_->connections.clear();
}

void Server::start() {
  auto& s = impl_->settings;
  if (s.cert_path.has_value() != s.key_path.has_value())
    throw std::runtime_error("TLS needs both a certificate and a key (got only the " +
                             std::string(s.cert_path ? "certificate" : "key") + ")");
  if (s.cert_path) impl_->tls = make_server_tls_context(*s.cert_path, *s.key_path);
  if (s.listen_fd) {
    impl_->listen_fd = UniqueFd(*s.listen_fd);
  } else {
    impl_->listen_fd = UniqueFd(listen_tcp(s.bind, s.port));
  }
  impl_->port = bound_port(impl_->listen_fd.get());
}

uint16_t Server::port() const { return impl_->port; }
bool Server::tls_enabled() const { return impl_->tls != nullptr; }
size_t Server::connection_count() const { return impl_->connection_count.load(); }

void Server::run() {
  impl_->stopping = false;
  impl_->accept_next();
  impl_->sweep();
  impl_->loop.run();
  impl_->stopping = true;
  // The pending accept holds the listening socket inside io_uring, which the kernel tears down
  // after the process is gone: stop listening now, so that the port is free once we exit.
  ::shutdown(impl_->listen_fd.get(), SHUT_RDWR);
  std::vector<std::shared_ptr<Connection>> all;
  for (auto& [id, c] : impl_->connections) all.push_back(c);
  for (auto& c : all) c->close("server shutting down");
  impl_->lane_loops.reset();  // after the lanes' closing, which is posted to them
}

void Server::stop() { impl_->loop.stop(); }

}  // namespace rgpu
