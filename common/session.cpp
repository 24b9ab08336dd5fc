#include "session.hpp"

#include <sys/socket.h>
#include <sys/time.h>

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
    ErrorMsg error = decode_error(frame.payload);
    Kind kind = Kind::Refused;
    if (error.code == ErrorCode::AuthFailed) kind = Kind::AuthFailed;
    if (error.code == ErrorCode::ProtocolVersion) kind = Kind::VersionMismatch;
    if (error.code == ErrorCode::TlsRequired || error.code == ErrorCode::TlsUnavailable) kind = Kind::TlsMismatch;
    throw SessionError(kind, "server " + server + " refused the connection: " + error.message);
  }
  if (frame.header.type != static_cast<uint16_t>(wanted))
    throw SessionError(Kind::Protocol, "server " + server + " sent " + msg_type_name(frame.header.type) +
                                           " where " + msg_type_name(static_cast<uint16_t>(wanted)) +
                                           " was expected");
  return frame;
}

std::unique_ptr<BlockingChannel> open_channel(const SessionOptions& options, bool with_tls, std::string& tls_text) {
  const std::string server = options.server.to_string();
  UniqueFd fd;
  try {
    fd = UniqueFd(connect_tcp(options.server, options.timeout));
  } catch (const NetError& e) {
    throw SessionError(Kind::Unreachable, e.what());
  }
  set_io_timeout(fd.get(), options.timeout);
  auto channel = std::make_unique<BlockingChannel>(std::move(fd));
  if (!with_tls) return channel;
  try {
    channel->send_frame(static_cast<uint16_t>(MsgType::StartTls), 0, {});
  } catch (const ChannelClosed& e) {
    throw SessionError(Kind::Closed, "server " + server + " closed the connection: " + e.what());
  }
  expect(*channel, MsgType::TlsReady, server);
  static SslCtxPtr client_ctx = make_client_tls_context();
  try {
    channel->start_tls_client(client_ctx.get());
  } catch (const TlsError& e) {
    throw SessionError(Kind::TlsFailure, "TLS with server " + server + " failed: " + e.what());
  }
  tls_text = tls_session_info(channel->ssl()).describe();
  return channel;
}
}  // namespace

std::unique_ptr<Session> Session::connect(const SessionOptions& options) {
  const std::string server = options.server.to_string();
  std::unique_ptr<Session> session(new Session);
  const bool try_tls = options.tls != TlsMode::Off;
  try {
    session->channel_ = open_channel(options, try_tls, session->tls_description_);
  } catch (const SessionError& e) {
    if (e.kind() != Kind::TlsMismatch || options.tls != TlsMode::Auto) throw;
    // Only "this server has no TLS" leads to a plain retry, and only in auto mode.
    LOG_WARN("server %s does not use TLS: this connection is NOT encrypted", server.c_str());
    session->channel_ = open_channel(options, false, session->tls_description_);
  }
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
    std::vector<uint8_t> binding;
    if (channel.ssl()) binding = tls_channel_binding(channel.ssl());
    AuthResponseMsg response;
    if (session->challenge_.auth_required) {
      if (options.token.empty())
        throw SessionError(Kind::AuthFailed, "server " + server + " requires a token (pass --token)");
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
  return session;
}

Frame Session::call(MsgType type, std::span<const uint8_t> payload) { return call(static_cast<uint16_t>(type), payload); }

Frame Session::call(uint16_t type, std::span<const uint8_t> payload) {
  const uint64_t id = next_request_id();
  channel_->send_frame(type, id, payload, 0, Compression::Never);
  for (;;) {
    Frame frame = channel_->receive_frame();
    if (frame.header.request_id != id) {
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

}  // namespace rgpu
