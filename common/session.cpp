#include "session.hpp"

#include <sys/socket.h>
#include <sys/time.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "auth.hpp"
#include "log.hpp"
#include "tls.hpp"
#include "tls_rekey.hpp"
#include "wire.hpp"

namespace rgpu {

std::optional<TlsMode> parse_tls_mode(std::string_view text) {
  if (text == "auto") return TlsMode::Auto;
  if (text == "on") return TlsMode::On;
  if (text == "off") return TlsMode::Off;
  return std::nullopt;
}

namespace {
using Kind = SessionError::Kind;

void set_io_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Reads the next handshake frame; an Error frame becomes the SessionError it describes.
Frame expect(BlockingChannel& channel, MsgType wanted, const std::string& server) {
  Frame frame;
  try {
    frame = channel.receive_frame();
  } catch (const ChannelClosed& e) {
    throw SessionError(Kind::Closed, "server " + server + " closed the connection during the handshake (" +
                                         e.what() + ")");
  } catch (const FrameError& e) {
    throw SessionError(Kind::Protocol, "server " + server + " sent a malformed frame: " + e.what());
  }
  if (frame.header.type == static_cast<uint16_t>(MsgType::Error)) {
    ErrorMsg error;
    try {
      error = decode_error(frame.payload);
    } catch (const WireError& e) {
      throw SessionError(Kind::Protocol, "server " + server + " sent a malformed Error: " + e.what());
    }
    Kind kind = Kind::Refused;
    if (error.code == ErrorCode::AuthFailed) kind = Kind::AuthFailed;
    if (error.code == ErrorCode::ProtocolVersion) kind = Kind::VersionMismatch;
    if (error.code == ErrorCode::TlsRequired || error.code == ErrorCode::TlsUnavailable) kind = Kind::TlsMismatch;
    throw SessionError(kind, "server " + server + " refused the connection: " + printable(error.message, 512));
  }
  if (frame.header.type != static_cast<uint16_t>(wanted))
    throw SessionError(Kind::Protocol, "server " + server + " sent " + msg_type_name(frame.header.type) +
                                           " where " + msg_type_name(static_cast<uint16_t>(wanted)) +
                                           " was expected");
  return frame;
}

// Handshakes this process runs with one server at once. A server keeps a small quota of
// unauthenticated connections per address and drops the oldest when it is exceeded; a client
// daemon starting many applications at once must stay inside it on its own.
constexpr int kHandshakesPerServer = 4;

class HandshakeGate {
 public:
  // Waits for a free handshake slot for `server`; false when none freed within `timeout`.
  bool enter(const std::string& server, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!freed_.wait_for(lock, timeout, [&] { return running_[server] < kHandshakesPerServer; })) return false;
    ++running_[server];
    return true;
  }
  void leave(const std::string& server) {
    {
      std::lock_guard lock(mutex_);
      if (--running_[server] == 0) running_.erase(server);
    }
    freed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  std::map<std::string, int> running_;
};

HandshakeGate& handshake_gate() {
  static HandshakeGate gate;
  return gate;
}

class HandshakeSlot {
 public:
  HandshakeSlot(const std::string& server, std::chrono::milliseconds timeout) : server_(server) {
    if (!handshake_gate().enter(server_, timeout))
      throw SessionError(Kind::Unreachable, "no handshake with server " + server_ + " could start within " +
                                                std::to_string(timeout.count()) + " ms (" +
                                                std::to_string(kHandshakesPerServer) + " already running)");
  }
  ~HandshakeSlot() { handshake_gate().leave(server_); }
  HandshakeSlot(const HandshakeSlot&) = delete;
  HandshakeSlot& operator=(const HandshakeSlot&) = delete;

 private:
  std::string server_;
};

std::unique_ptr<BlockingChannel> open_channel(const SessionOptions& options, std::string& tls_text,
                                              std::string& identity) {
  const std::string server = options.server.to_string();
  UniqueFd fd;
  try {
    fd = UniqueFd(connect_tcp(options.server, options.timeout));
  } catch (const NetError& e) {
    throw SessionError(Kind::Unreachable, e.what());
  }
  set_io_timeout(fd.get(), options.timeout);
  auto channel = std::make_unique<BlockingChannel>(std::move(fd));
  // Until the server has proved itself, it may send only what a handshake needs.
  channel->set_limits(kHandshakeLimits);
  if (options.tls == TlsMode::Off) return channel;
  try {
    channel->send_frame(static_cast<uint16_t>(MsgType::StartTls), 0, {});
  } catch (const ChannelClosed& e) {
    throw SessionError(Kind::Closed, "server " + server + " closed the connection: " + e.what());
  }
  try {
    expect(*channel, MsgType::TlsReady, server);
  } catch (const SessionError& e) {
    if (e.kind() != Kind::TlsMismatch) throw;
    // Never a quiet fall-back to plaintext: an attacker on the path can answer this too.
    throw SessionError(Kind::TlsMismatch, std::string(e.what()) +
                                              "; this client does not fall back to plaintext: if the server is "
                                              "meant to run without TLS (tls = \"off\" there), set tls = \"off\" "
                                              "for it here too");
  }
  static SslCtxPtr client_ctx = make_client_tls_context();
  try {
    channel->start_tls_client(client_ctx.get());
  } catch (const TlsError& e) {
    throw SessionError(Kind::TlsFailure, "TLS with server " + server + " failed: " + e.what());
  }
  ServerTrust trust = options.trust;
  trust.trust_on_first_use = trust.trust_on_first_use && options.tls == TlsMode::Auto;
  try {
    identity = check_server_identity(channel->ssl(), options.server, trust);
  } catch (const IdentityError& e) {
    throw SessionError(Kind::Identity, e.what());
  }
  tls_text = tls_session_info(channel->ssl()).describe();
  return channel;
}
}  // namespace

std::unique_ptr<Session> Session::connect(const SessionOptions& options) {
  // A server over its quota of unauthenticated connections drops the oldest one (a handshake of
  // ours, when other clients share this address): try again, a few times.
  for (int attempt = 1;; ++attempt) {
    try {
      return connect_once(options);
    } catch (const SessionError& e) {
      const bool crowded = (e.kind() == Kind::Refused && std::string_view(e.what()).find("unauthenticated connections") !=
                                                             std::string_view::npos) ||
                           e.kind() == Kind::Closed;
      if (!crowded || attempt == 3) throw;
      LOG_DEBUG("%s; trying again", e.what());
    }
  }
}

std::unique_ptr<Session> Session::connect_once(const SessionOptions& options) {
  const std::string server = options.server.to_string();
  std::unique_ptr<Session> session(new Session);
  HandshakeSlot slot(server, options.timeout);
  session->channel_ = open_channel(options, session->tls_description_, session->server_identity_);
  BlockingChannel& channel = *session->channel_;

  HelloMsg hello;
  hello.min_version = kProtocolVersion;
  hello.max_version = kProtocolVersion;
  hello.client_nonce = random_nonce();
  hello.client_name = options.client_name;
  try {
    channel.send_frame(static_cast<uint16_t>(MsgType::Hello), 0, encode(hello));
    Frame frame = expect(channel, MsgType::Challenge, server);
    session->challenge_ = decode_challenge(frame.payload);
    if (session->challenge_.version != kProtocolVersion)
      throw SessionError(Kind::VersionMismatch, "server " + server + " chose protocol version " +
                                                    std::to_string(session->challenge_.version) +
                                                    ", which this client does not speak");
    // A server that asks for no token cannot prove that it knows ours: whoever answers at that
    // address could be anyone. A client with a token talks only to servers that prove it.
    if (!session->challenge_.auth_required && !options.token.empty())
      throw SessionError(Kind::AuthFailed,
                         "server " + server +
                             " does not ask for a token, so it cannot prove it is the server that holds yours "
                             "(an impersonator, or a server without [[security.tokens]]): refusing it; connect "
                             "without a token only to a server you mean to use in open mode");
    std::vector<uint8_t> binding;
    if (channel.ssl()) binding = tls_channel_binding(channel.ssl());
    AuthResponseMsg response;
    if (session->challenge_.auth_required) {
      if (options.token.empty())
        throw SessionError(Kind::AuthFailed, "server " + server + " requires a token (--token-file, RGPU_TOKEN or token_file in rgpu.toml)");
      response.client_mac =
          client_auth_mac(options.token, session->challenge_.server_nonce, hello.client_nonce, binding);
    }
    channel.send_frame(static_cast<uint16_t>(MsgType::AuthResponse), 0, encode(response));
    frame = expect(channel, MsgType::Welcome, server);
    session->welcome_ = decode_welcome(frame.payload);
    if (session->challenge_.auth_required) {
      Mac expected = server_auth_mac(options.token, session->challenge_.server_nonce, hello.client_nonce, binding);
      if (!mac_equal(expected, session->welcome_.server_mac))
        throw SessionError(Kind::AuthFailed, "server " + server +
                                                 " could not prove that it holds the token (a man in the middle?)");
      session->server_authenticated_ = true;
    }
  } catch (const WireError& e) {
    throw SessionError(Kind::Protocol, "server " + server + " sent a malformed handshake: " + e.what());
  } catch (const ChannelClosed& e) {
    throw SessionError(Kind::Closed, "server " + server + " closed the connection: " + e.what());
  }
  channel.set_limits(FrameLimits{});
  return session;
}

Frame Session::call(MsgType type, std::span<const uint8_t> payload) { return call(static_cast<uint16_t>(type), payload); }

Frame Session::call(uint16_t type, std::span<const uint8_t> payload) {
  const uint64_t id = next_request_id();
  channel_->send_frame(type, id, payload, 0, Compression::Never);
  for (;;) {
    Frame frame = channel_->receive_frame();
    // An Error for request 0 is about the whole connection (the server closes it after).
    const bool connection_error = frame.header.request_id == 0 && frame.header.type == static_cast<uint16_t>(MsgType::Error);
    if (frame.header.request_id != id && !connection_error) {
      LOG_WARN("dropping an answer to request %llu while waiting for %llu",
               static_cast<unsigned long long>(frame.header.request_id), static_cast<unsigned long long>(id));
      continue;
    }
    if (frame.header.type == static_cast<uint16_t>(MsgType::Error)) {
      ErrorMsg error = decode_error(frame.payload);
      throw RemoteError(error.code, error.message);
    }
    return frame;
  }
}

}  // namespace rgpu

namespace rgpu {

void Session::move_to_worker() {
  if (!channel_->ssl()) return;
  try {
    const WorkerPsk psk = derive_worker_psk(channel_->ssl());
    channel_->replace_tls(rekey_as_client(channel_->fd(), psk));
  } catch (const TlsError& e) {
    throw SessionError(Kind::TlsFailure, e.what());
  }
}

uint64_t Session::open_application_session(AppApi api, std::span<const uint8_t> open) {
  const Frame opened = call(api == AppApi::Cuda ? kMsgCudaOpen : kMsgVulkanOpen, open);
  if (opened.header.type != (api == AppApi::Cuda ? kMsgCudaOpened : kMsgVulkanOpened))
    throw SessionError(Kind::Protocol, std::string("the server answered ") + app_api_name(api) + "Open with " +
                                           msg_type_name(opened.header.type));
  uint64_t key = 0;
  try {
    WireReader reader(opened.payload, "Opened");
    key = reader.get<uint64_t>();
    reader.expect_end();
  } catch (const WireError& e) {
    throw SessionError(Kind::Protocol, e.what());
  }
  move_to_worker();
  return key;
}

void Session::join_cuda_session(uint64_t key) {
  WireWriter payload;
  payload.put(key);
  const Frame joined = call(kMsgCudaJoin, payload.buffer());
  if (joined.header.type != kMsgCudaJoined)
    throw SessionError(Kind::Protocol, std::string("the server answered CudaJoin with ") + msg_type_name(joined.header.type));
  move_to_worker();
}

std::string Session::session_fate(uint64_t key) {
  WireWriter payload;
  payload.put(key);
  const Frame fate = call(kMsgSessionFate, payload.buffer());
  try {
    WireReader reader(fate.payload, "SessionFateIs");
    std::string text = reader.str(kMaxNameLength);
    reader.expect_end();
    return text;
  } catch (const WireError& e) {
    throw SessionError(Kind::Protocol, e.what());
  }
}

NvmlSnapshotMsg Session::nvml_snapshot(std::vector<uint64_t> keys) {
  const Frame answer = call(kMsgNvmlQuery, encode(NvmlQueryMsg{std::move(keys)}));
  if (answer.header.type != kMsgNvmlSnapshot)
    throw SessionError(Kind::Protocol, std::string("the server answered NvmlQuery with ") + msg_type_name(answer.header.type));
  try {
    return decode_nvml_snapshot(answer.payload);
  } catch (const WireError& e) {
    throw SessionError(Kind::Protocol, e.what());
  }
}

}  // namespace rgpu
