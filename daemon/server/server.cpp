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
#include <utility>

#include "app_protocol.hpp"
#include "auth.hpp"
#include "cuda_wire.hpp"
#include "event_loop.hpp"
#include "frame.hpp"
#include "frame_link.hpp"
#include "log.hpp"
#include "memory_budget.hpp"
#include "net.hpp"
#include "nvml_reader.hpp"
#include "nvml_snapshot.hpp"
#include "owned_threads.hpp"
#include "tls.hpp"
#include "vulkan_wire.hpp"
#include "wire.hpp"
#include "worker_process.hpp"

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

// The peer's IP address alone (no port): what the strangers' per-address quota counts by.
std::string peer_address(int fd) {
  const std::string peer = peer_name(fd);
  const auto colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

template <typename Msg>
std::vector<uint8_t> frame_of(MsgType type, uint64_t request_id, const Msg& msg) {
  return encode_frame(static_cast<uint16_t>(type), request_id, encode(msg));
}

// Whether `token` may use the GPU with the server's `index` (open mode: every GPU).
bool token_allows(const TokenEntry* token, uint32_t index) {
  if (token == nullptr || !token->allowed_gpus) return true;
  return std::find(token->allowed_gpus->begin(), token->allowed_gpus->end(), index) != token->allowed_gpus->end();
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
  // Whether another connection may be counted against max_clients (and counts it if so).
  bool admit();

  ServerSettings settings;
  EventLoop loop;
  UniqueFd listen_fd;
  SslCtxPtr tls;
  uint16_t port = 0;
  uint64_t next_connection_id = 1;
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> connections;
  size_t admitted = 0;  // connections and sessions counted against max_clients
  // Connections not authenticated yet, oldest first: they have a quota of their own
  // (max_unauthenticated, per address too) and take no max_clients place.
  std::deque<uint64_t> strangers;
  void make_room_for_stranger(const std::string& address);
  void authenticated(uint64_t id) { std::erase(strangers, id); }
  std::atomic<size_t> connection_count{0};
  bool stopping = false;
  // Device memory quota of each token, shared by its workers (token name -> budget; "" in open mode).
  std::unordered_map<std::string, std::shared_ptr<MemoryBudget>> budgets;
  std::shared_ptr<MemoryBudget> budget_for(const TokenEntry* token);

  // The worker process of each application session, by session key (the key CudaOpened and
  // VulkanOpened give, which bulk lanes join with and SessionFate asks about).
  struct WorkerEntry {
    std::shared_ptr<WorkerProcess> process;
    const TokenEntry* token = nullptr;
    std::string client;
    AppApi api = AppApi::Cuda;
    WorkerProcess::Kind kind;  // a spare of this kind is made when the session ends
    std::shared_ptr<MemoryBudget> budget;
    uint32_t budget_slot = 0;
    uint64_t opener = 0;  // the connection waiting for the worker to start (0 once handed over)
    size_t lanes = 0;
    bool holds_admission = false;  // the session's connection was counted against max_clients
    std::vector<std::pair<uint64_t, uint64_t>> fate_waiters;  // (connection, request) asking how it ended
  };
  std::unordered_map<uint64_t, WorkerEntry> workers;
  // How ended sessions ended, for SessionFate (kept a while: the client asks right after).
  struct Fate {
    std::string text;
    const TokenEntry* token = nullptr;
    Clock::time_point when;
  };
  std::unordered_map<uint64_t, Fate> fates;
  static constexpr auto kFateKept = std::chrono::minutes(5);
  static constexpr size_t kMaxFateWaiters = 4;  // per session

  // Workers started ahead of need, one for each kind of session last seen (their drivers already
  // started, so that an application's first call does not wait for that). A spare is made when a
  // session of its kind ends, not while one runs: a driver starting beside a running session
  // slowed its copies by up to half on the H200.
  std::unordered_map<std::string, std::shared_ptr<WorkerProcess>> spares;
  static constexpr size_t kMaxSpares = 4;
  std::vector<std::shared_ptr<WorkerProcess>> evicted;  // spares ended to make room, until reaped
  // A spare of that kind, or a new worker; a new spare takes the place of the one taken. Throws
  // std::runtime_error when no worker can be started.
  std::shared_ptr<WorkerProcess> take_worker(const WorkerProcess::Kind& kind);
  void make_spare(const WorkerProcess::Kind& kind);

  // NvmlQuery: what NVML says about the GPUs now. One reading at a time, off the loop; the
  // questions that come meanwhile are answered from it too.
  struct NvmlQuestion {
    uint64_t connection = 0;
    uint64_t request = 0;
    const TokenEntry* token = nullptr;
    std::vector<uint64_t> keys;  // the asker's own sessions: only their processes are shown
  };
  std::vector<NvmlQuestion> nvml_questions;
  static constexpr size_t kMaxNvmlQuestions = 4;  // per connection
  bool nvml_reading = false;
  std::string nvml_problem;  // the last one logged, so that a polling client does not flood the log
  void ask_nvml(NvmlQuestion question);
  void answer_nvml(const NvmlReading& reading);
  // Declared after `loop`: destroyed first, so that a reading still running is waited for.
  ThreadGroup nvml_thread;

  uint64_t new_session_key();
  void worker_ready(uint64_t key);
  void worker_exited(uint64_t key, const std::string& fate, const std::string& start_error);
  void answer_fate(uint64_t connection, uint64_t request, const std::string& text);
  std::shared_ptr<Connection> connection(uint64_t id);
  void close_connection(uint64_t id, const std::string& reason);
};

// One client connection's protocol state, on the event loop thread; bytes move through its FrameLink.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class State { AwaitFirst, TlsHandshake, AwaitHello, AwaitAuth, Ready, Opening, Closing };

  Connection(Server::Impl& server, uint64_t id, int fd, std::string address)
      : server_(server), id_(id), peer_(peer_name(fd)), address_(std::move(address)), admitted_(false),
        state_(State::AwaitFirst), deadline_(Clock::now() + server.settings.handshake_timeout),
        link_(std::make_shared<FrameLink>(server.loop, UniqueFd(fd), peer_)) {
    // A stranger may send only small, uncompressed frames until it has authenticated.
    link_->set_limits(kHandshakeLimits);
  }

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
  const std::string& address() const { return address_; }

  void check_deadline(Clock::time_point now) {
    // An application's worker that is starting has worker_timeout for it (WorkerProcess).
    if (link_->closed() || state_ == State::Opening || now < deadline_) return;
    if (state_ == State::Ready && admitted_) return;
    if (state_ == State::Closing) return close("peer did not close after our error");
    if (state_ == State::Ready)  // authenticated while the server was full, and no lane joined
      return fail(ErrorCode::TooManyClients, server_full());
    fail(ErrorCode::Timeout, "handshake not completed within " +
                                 std::to_string(server_.settings.handshake_timeout.count()) + " ms");
  }

  void close(const std::string& reason) { link_->close(reason); }
  void drop_as_oldest_stranger(const std::string& why) {
    if (state_ == State::TlsHandshake) return close(why);  // no channel to say it on yet
    fail(ErrorCode::TooManyClients, why);
  }

  // The session's worker has started: the application's connection becomes the worker's.
  void session_ready(uint64_t key) {
    WireWriter opened;
    opened.put(key);
    queue(encode_frame(opening_api_ == AppApi::Vulkan ? kMsgVulkanOpened : kMsgCudaOpened, opening_request_,
                       opened.buffer()));
    give_to_worker(key, WorkerRole::Session);
  }
  bool opening() const { return state_ == State::Opening; }

  // It could not start (or died starting): the Open gets the reason, and the connection ends.
  void session_failed(const std::string& why) {
    reply_error(opening_request_, ErrorCode::NotSupported, why);
    state_ = State::Closing;
    deadline_ = Clock::now() + kLingerTime;
    link_->finish_after_flush();
  }
  void answer(std::vector<uint8_t> frame) { queue(std::move(frame)); }

 private:
  void on_closed(const std::string& reason) {
    const bool was_open = state_ == State::Ready || state_ == State::Opening;
    abandon_opening();  // the application left before its worker started
    if (was_open)
      LOG_INFO("client %s (%s) disconnected: %s", peer_.c_str(), token_name_.c_str(), reason.c_str());
    else
      LOG_INFO("connection from %s closed: %s", peer_.c_str(), reason.c_str());
    server_.forget(id_, admitted_);
  }

  void queue(std::vector<uint8_t> bytes) { link_->send(std::move(bytes)); }

  // Leaving the Opening state other than by session_ready: the worker starting for it is ended.
  void abandon_opening() {
    if (state_ != State::Opening) return;
    state_ = State::Closing;
    auto worker = server_.workers.find(opening_key_);
    if (worker != server_.workers.end() && worker->second.opener == id_) worker->second.process->kill();
  }

  // ---- protocol ---------------------------------------------------------------------------------
  void fail(ErrorCode code, const std::string& message) {
    if (link_->closed() || state_ == State::Closing) return;
    abandon_opening();
    LOG_WARN("refusing %s: %s", peer_.c_str(), message.c_str());
    queue(frame_of(MsgType::Error, 0, ErrorMsg{code, message}));
    state_ = State::Closing;
    deadline_ = Clock::now() + kLingerTime;
    link_->finish_after_flush();
  }

  void on_frame(Frame frame) {
    const auto type = static_cast<MsgType>(frame.header.type);
    switch (state_) {
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
      case State::Opening:  // reading is paused; nothing comes here
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
    client_name_ = printable(hello.client_name, 64);  // it goes into log lines
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
    server_.authenticated(id_);
    link_->set_limits(kControlLimits);
    // A server at max_clients still lets a lane join the session it belongs to (the session holds
    // the place); anything else is refused then.
    admitted_ = server_.admit();
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

  // CudaOpen / VulkanOpen: the session runs in a worker process of its own, which gets this
  // connection once it has started (session_ready).
  void open_session(uint64_t id, std::span<const uint8_t> payload, AppApi api) {
    auto gpus = session_gpus(id, payload, api);
    if (!gpus) return;
    WorkerStartMsg start;
    start.api = api;
    start.client = client_name_ + " from " + peer_ + " (token '" + token_name_ + "')";
    for (const GpuInfo* gpu : *gpus) start.gpus.push_back(WorkerGpu{gpu->index, gpu->uuid, gpu->vulkan_ordinal});
    auto budget = server_.budget_for(token_);
    start.budget_slot = budget->take_slot();
    if (start.budget_slot >= budget->slot_count())
      return reply_error(id, ErrorCode::TooManyClients, "token '" + token_name_ + "' has no session slot left");
    const uint64_t key = server_.new_session_key();
    std::shared_ptr<WorkerProcess> process;
    WorkerProcess::Kind kind{api, {}};
    for (const GpuInfo* gpu : *gpus) kind.gpus.push_back(gpu->uuid);
    // A worker finds its devices by UUID: the order and repeats in the Open do not make a kind.
    std::sort(kind.gpus.begin(), kind.gpus.end());
    kind.gpus.erase(std::unique(kind.gpus.begin(), kind.gpus.end()), kind.gpus.end());
    try {
      process = server_.take_worker(kind);
      Server::Impl* server = &server_;
      process->start(start, budget,
                     WorkerProcess::Events{
                         .on_ready = [server, key] { server->worker_ready(key); },
                         .on_exit = [server, key](const std::string& fate, const std::string& start_error) {
                           server->worker_exited(key, fate, start_error);
                         }});
    } catch (const std::exception& e) {
      budget->free_slot(start.budget_slot);
      LOG_ERROR("%s", e.what());
      return reply_error(id, ErrorCode::Internal, e.what());
    }
    LOG_INFO("%s session for %s on %zu GPU(s): worker %d", app_api_name(api), peer_.c_str(), gpus->size(),
             process->pid());
    server_.workers[key] = Server::Impl::WorkerEntry{
        .process = process, .token = token_, .client = start.client, .api = api, .kind = kind, .budget = budget,
        .budget_slot = start.budget_slot, .opener = id_, .lanes = 0, .holds_admission = false, .fate_waiters = {}};
    state_ = State::Opening;
    opening_key_ = key;
    opening_request_ = id;
    opening_api_ = api;
    link_->pause_reading();
  }

  // The session key a CudaJoin or SessionFate carries; nullopt after replying with the error.
  std::optional<uint64_t> session_key(uint64_t id, std::span<const uint8_t> payload, const char* what) {
    try {
      WireReader reader(payload, what);
      const auto key = reader.get<uint64_t>();
      reader.expect_end();
      return key;
    } catch (const WireError& e) {
      reply_error(id, ErrorCode::MalformedFrame, e.what());
      return std::nullopt;
    }
  }

  // A bulk lane: this connection carries calls of the CUDA session with the key too.
  void join_cuda(uint64_t id, std::span<const uint8_t> payload) {
    const auto key = session_key(id, payload, "CudaJoin");
    if (!key) return;
    auto worker = server_.workers.find(*key);
    if (worker == server_.workers.end() || worker->second.api != AppApi::Cuda || !worker->second.process->ready())
      return reply_error(id, ErrorCode::Forbidden, "no CUDA session has that lane key");
    if (worker->second.token != token_)
      return reply_error(id, ErrorCode::Forbidden, "the CUDA session with that lane key belongs to another token");
    if (worker->second.lanes >= kMaxLanesPerSession)
      return reply_error(id, ErrorCode::Forbidden,
                         "the CUDA session has " + std::to_string(kMaxLanesPerSession) + " bulk lanes already");
    ++worker->second.lanes;
    queue(encode_frame(kMsgCudaJoined, id, {}));
    LOG_DEBUG("bulk lane from %s joins the CUDA session of worker %d", peer_.c_str(), worker->second.process->pid());
    give_to_worker(*key, WorkerRole::Lane);
  }

  // Once everything queued here has left, the socket goes to the session's worker.
  void give_to_worker(uint64_t key, WorkerRole role) {
    // A session counts against max_clients as its worker (until it ends); a lane is part of it.
    if (admitted_ && role == WorkerRole::Lane) server_.forget_admission();
    if (admitted_ && role == WorkerRole::Session) server_.workers[key].holds_admission = true;
    admitted_ = false;
    Server::Impl* server = &server_;
    const uint64_t id = id_;
    const std::string peer = peer_;
    link_->hand_over([server, key, role, id, peer](FrameLink::Handover connection) {
      server->forget(id, false);
      auto worker = server->workers.find(key);
      if (worker == server->workers.end()) return;  // it ended meanwhile; the socket closes here
      if (connection.ssl && !connection.unread.empty()) {  // the socket closes here
        LOG_WARN("%s sent data before the worker's TLS handshake; %s", peer.c_str(),
                 role == WorkerRole::Lane ? "the lane is dropped" : "its session ends");
        if (role == WorkerRole::Session) worker->second.process->kill();
        return;
      }
      try {
        worker->second.process->adopt(role, std::move(connection));
      } catch (const std::exception& e) {
        LOG_WARN("cannot hand %s to its worker: %s", peer.c_str(), e.what());
        worker->second.process->kill();
      }
    });
  }

  // SessionFate: how the session with this key ended (asked by a client whose connection to it closed).
  void session_fate(uint64_t id, std::span<const uint8_t> payload) {
    const auto key = session_key(id, payload, "SessionFate");
    if (!key) return;
    if (auto fate = server_.fates.find(*key); fate != server_.fates.end() && fate->second.token == token_)
      return server_.answer_fate(id_, id, fate->second.text);
    if (auto worker = server_.workers.find(*key); worker != server_.workers.end() && worker->second.token == token_) {
      // Its connection closed before the worker was seen to end: the answer waits for that.
      if (worker->second.fate_waiters.size() >= Server::Impl::kMaxFateWaiters)
        return reply_error(id, ErrorCode::Forbidden, "too many questions about that session at once");
      worker->second.fate_waiters.emplace_back(id_, id);
      return;
    }
    reply_error(id, ErrorCode::Forbidden, "no session of this token has that key");
  }

  bool gpu_allowed(uint32_t index) const { return token_allows(token_, index); }

  // NvmlQuery: the GPUs this token may use, with the processes of the sessions named (this token's).
  void nvml_query(uint64_t id, std::span<const uint8_t> payload) {
    NvmlQueryMsg query;
    try {
      query = decode_nvml_query(payload);
    } catch (const WireError& e) {
      return reply_error(id, ErrorCode::MalformedFrame, e.what());
    }
    const auto waiting = std::count_if(server_.nvml_questions.begin(), server_.nvml_questions.end(),
                                       [this](const auto& question) { return question.connection == id_; });
    if (waiting >= static_cast<long>(Server::Impl::kMaxNvmlQuestions))
      return reply_error(id, ErrorCode::Forbidden, "too many NVML questions at once on this connection");
    server_.ask_nvml(Server::Impl::NvmlQuestion{id_, id, token_, std::move(query.session_keys)});
  }

  std::string server_full() const {
    return "server is full (max_clients = " + std::to_string(server_.settings.max_clients) + "); try again later";
  }

  void on_request(Frame frame) {
    const uint64_t id = frame.header.request_id;
    if (frame.header.version != kProtocolVersion)
      return fail(ErrorCode::MalformedFrame, "frame carries protocol version " + std::to_string(frame.header.version) +
                                                 " on a version " + std::to_string(kProtocolVersion) + " connection");
    if (!admitted_ && frame.header.type != kMsgCudaJoin && frame.header.type != kMsgSessionFate &&
        frame.header.type != kMsgNvmlQuery)
      return fail(ErrorCode::TooManyClients, server_full());
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
        if (frame.header.type == cuda::kMsgCudaCall)
          return reply_error(id, ErrorCode::UnexpectedMessage, "CUDA call before the CUDA session was opened");
        if (frame.header.type == vk::kMsgVulkanCall)
          return reply_error(id, ErrorCode::UnexpectedMessage, "Vulkan call before the Vulkan session was opened");
        if (frame.header.type == kMsgCudaOpen) return open_session(id, frame.payload, AppApi::Cuda);
        if (frame.header.type == kMsgVulkanOpen) return open_session(id, frame.payload, AppApi::Vulkan);
        if (frame.header.type == kMsgCudaJoin) return join_cuda(id, frame.payload);
        if (frame.header.type == kMsgSessionFate) return session_fate(id, frame.payload);
        if (frame.header.type == kMsgNvmlQuery) return nvml_query(id, frame.payload);
        queue(frame_of(MsgType::Error, id,
                       ErrorMsg{ErrorCode::NotSupported, std::string("message type ") + msg_type_name(frame.header.type) +
                                                             " (" + std::to_string(frame.header.type) +
                                                             ") is not supported by this server"}));
    }
  }

  Server::Impl& server_;
  uint64_t id_;
  std::string peer_;
  std::string address_;  // the peer's IP address, for the strangers' per-address quota
  bool admitted_;
  State state_;
  Clock::time_point deadline_;
  std::shared_ptr<FrameLink> link_;

  Nonce client_nonce_{};
  Nonce server_nonce_{};
  std::string client_name_;
  std::string token_name_;
  const TokenEntry* token_ = nullptr;
  // While Opening: the session whose worker is starting, and the Open request to answer.
  uint64_t opening_key_ = 0;
  uint64_t opening_request_ = 0;
  AppApi opening_api_ = AppApi::Cuda;
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
    const std::string address = peer_address(res);
    make_room_for_stranger(address);
    auto connection = std::make_shared<Connection>(*this, next_connection_id++, res, address);
    LOG_DEBUG("connection %llu from %s", static_cast<unsigned long long>(connection->id()), peer_name(res).c_str());
    connections.emplace(connection->id(), connection);
    strangers.push_back(connection->id());
    connection_count.store(connections.size());
    connection->start();
  }
  accept_next();
}

std::shared_ptr<MemoryBudget> Server::Impl::budget_for(const TokenEntry* token) {
  auto& budget = budgets[token ? token->name : std::string()];
  // A token cannot have more sessions than the server has clients.
  if (!budget) budget = MemoryBudget::create_shared(token ? token->max_memory.value_or(0) : 0, settings.max_clients);
  return budget;
}

std::shared_ptr<WorkerProcess> Server::Impl::take_worker(const WorkerProcess::Kind& kind) {
  std::shared_ptr<WorkerProcess> worker;
  if (auto spare = spares.find(kind.key()); spare != spares.end()) {
    worker = std::move(spare->second);
    spares.erase(spare);
    if (worker->exited()) worker.reset();
  }
  if (!worker) worker = WorkerProcess::spawn(loop, settings.worker_executable, kind);
  return worker;
}

void Server::Impl::make_spare(const WorkerProcess::Kind& kind) {
  if (stopping || kind.gpus.empty()) return;
  if (auto spare = spares.find(kind.key()); spare != spares.end() && !spare->second->exited()) return;
  if (spares.size() >= kMaxSpares && !spares.contains(kind.key())) {
    // The oldest kind makes room. It is ended without waiting here (a driver call can keep it a
    // while); it is dropped once its end has been seen.
    auto oldest = std::min_element(spares.begin(), spares.end(), [](const auto& a, const auto& b) {
      return a.second->born() < b.second->born();
    });
    oldest->second->kill();
    evicted.push_back(std::move(oldest->second));
    spares.erase(oldest);
  }
  try {
    spares[kind.key()] = WorkerProcess::spawn(loop, settings.worker_executable, kind);
  } catch (const std::exception& e) {
    LOG_WARN("no spare worker for %s sessions: %s", kind.key().c_str(), e.what());
  }
}

void Server::Impl::ask_nvml(NvmlQuestion question) {
  nvml_questions.push_back(std::move(question));
  if (nvml_reading) return;
  nvml_reading = true;
  nvml_thread.start([this, gpus = settings.gpus] {
    auto reading = std::make_shared<NvmlReading>(read_nvml(gpus));
    loop.post([this, reading] { answer_nvml(*reading); });
  });
}

void Server::Impl::answer_nvml(const NvmlReading& reading) {
  nvml_reading = false;
  if (reading.problem != nvml_problem) {
    nvml_problem = reading.problem;
    if (!reading.problem.empty()) LOG_WARN("NVML: %s", reading.problem.c_str());
  }
  if (!reading.pids_are_ours && nvml_problem.empty()) {
    nvml_problem = "the server runs in a PID namespace of its own: no process is reported to clients";
    LOG_WARN("NVML: %s", nvml_problem.c_str());
  }
  // Each asker sees its token's GPUs, and of the processes only its own sessions' workers, each
  // named by its session key: another tenant's processes (and the host's own) stay hidden.
  for (const NvmlQuestion& question : std::exchange(nvml_questions, {})) {
    auto asker = connection(question.connection);
    if (!asker) continue;
    std::unordered_map<pid_t, uint64_t> mine;
    for (uint64_t key : question.keys)
      if (auto worker = workers.find(key); worker != workers.end() && worker->second.token == question.token)
        mine.emplace(worker->second.process->pid(), key);
    NvmlSnapshotMsg answer = reading.snapshot;
    std::erase_if(answer.gpus, [&](const NvmlGpu& gpu) { return !token_allows(question.token, gpu.gpu_index); });
    for (NvmlGpu& gpu : answer.gpus) {
      std::vector<NvmlProcess> shown;
      for (const NvmlProcess& process : gpu.processes)
        if (auto owner = mine.find(static_cast<pid_t>(process.owner)); owner != mine.end())
          shown.push_back(NvmlProcess{owner->second, process.used_memory, process.graphics});
      gpu.processes = std::move(shown);
    }
    asker->answer(encode_frame(kMsgNvmlSnapshot, question.request, encode(answer)));
  }
}

uint64_t Server::Impl::new_session_key() {
  uint64_t key = 0;
  while (key == 0 || workers.count(key) || fates.count(key))
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&key), sizeof key) != 1) key = 0;
  return key;
}

std::shared_ptr<Connection> Server::Impl::connection(uint64_t id) {
  auto it = connections.find(id);
  return it == connections.end() ? nullptr : it->second;
}

void Server::Impl::worker_ready(uint64_t key) {
  auto worker = workers.find(key);
  if (worker == workers.end()) return;
  auto opener = connection(std::exchange(worker->second.opener, 0));
  // The application left meanwhile, or its connection is failing: the worker has nobody to serve.
  if (!opener || !opener->opening()) return worker->second.process->kill();
  opener->session_ready(key);
}

void Server::Impl::worker_exited(uint64_t key, const std::string& fate, const std::string& start_error) {
  auto worker = workers.find(key);
  if (worker == workers.end()) return;
  WorkerEntry entry = std::move(worker->second);
  workers.erase(worker);
  entry.budget->free_slot(entry.budget_slot);
  if (entry.holds_admission) --admitted;
  const pid_t pid = entry.process->pid();
  const bool clean = fate == "exited with status 0";
  std::string text = "the GPU server's worker for this application " + fate;
  if (!start_error.empty()) text += ": " + start_error;
  if (clean)
    LOG_INFO("worker %d for %s ended", pid, entry.client.c_str());
  else
    LOG_WARN("worker %d for %s %s%s%s", pid, entry.client.c_str(), fate.c_str(), start_error.empty() ? "" : ": ",
             start_error.c_str());
  if (entry.opener != 0) {  // it never started: the Open is answered with why
    if (auto opener = connection(entry.opener)) opener->session_failed(start_error.empty() ? text : start_error);
    return;
  }
  fates[key] = Fate{text, entry.token, Clock::now()};
  make_spare(entry.kind);
  for (auto [connection_id, request] : entry.fate_waiters) answer_fate(connection_id, request, text);
}

void Server::Impl::answer_fate(uint64_t connection_id, uint64_t request, const std::string& text) {
  if (auto asker = connection(connection_id)) {
    WireWriter answer;
    answer.str(text);
    asker->answer(encode_frame(kMsgSessionFateIs, request, answer.buffer()));
  }
}

void Server::Impl::forget_admission() { --admitted; }

bool Server::Impl::admit() {
  if (admitted >= settings.max_clients) return false;
  ++admitted;
  return true;
}

// As sshd's MaxStartups: a stranger over the quota ends the oldest stranger from its own address
// (or the oldest of all), so that silent sockets cannot lock out a client that authenticates.
void Server::Impl::make_room_for_stranger(const std::string& address) {
  uint64_t oldest_here = 0;
  size_t here = 0;
  for (uint64_t id : strangers)
    if (auto c = connection(id); c && c->address() == address && here++ == 0) oldest_here = id;
  uint64_t victim = 0;
  const char* quota = nullptr;
  if (here >= settings.max_unauthenticated_per_address) {
    victim = oldest_here;
    quota = "max_unauthenticated_per_address";
  } else if (strangers.size() >= settings.max_unauthenticated) {
    victim = strangers.front();
    quota = "max_unauthenticated";
  }
  if (victim == 0) return;
  std::erase(strangers, victim);
  const uint32_t limit = victim == oldest_here && here >= settings.max_unauthenticated_per_address
                             ? settings.max_unauthenticated_per_address
                             : settings.max_unauthenticated;
  if (auto c = connection(victim))
    c->drop_as_oldest_stranger("too many unauthenticated connections (" + std::string(quota) + " = " +
                               std::to_string(limit) + "): this one was the oldest");
}

void Server::Impl::close_connection(uint64_t id, const std::string& reason) {
  auto it = connections.find(id);
  if (it == connections.end()) return;
  std::shared_ptr<Connection> connection = it->second;  // alive while it closes and is forgotten
  connection->close(reason);
}

void Server::Impl::forget(uint64_t id, bool counted) {
  if (connections.erase(id) == 0) return;
  std::erase(strangers, id);
  if (counted) --admitted;
  connection_count.store(connections.size());
}

void Server::Impl::sweep() {
  if (stopping) return;
  const auto now = Clock::now();
  std::erase_if(fates, [now](const auto& fate) { return now - fate.second.when > kFateKept; });
  for (auto& [key, worker] : workers) worker.process->check_alive(now, settings.worker_timeout);
  std::erase_if(evicted, [](const auto& spare) { return spare->exited(); });
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
  // The likeliest sessions, on every GPU of an API, get a worker ready before anyone asks.
  for (AppApi api : {AppApi::Cuda, AppApi::Vulkan}) {
    WorkerProcess::Kind kind{api, {}};
    for (const auto& gpu : impl_->settings.gpus)
      if (api == AppApi::Cuda ? gpu.cuda : gpu.vulkan) kind.gpus.push_back(gpu.uuid);
    impl_->make_spare(kind);
  }
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
  impl_->workers.clear();  // each worker is ended and waited for
  impl_->spares.clear();
  impl_->evicted.clear();
}

void Server::stop() { impl_->loop.stop(); }

}  // namespace rgpu
