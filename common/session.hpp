// Client side of a server connection: TLS choice, version negotiation and token authentication.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "app_protocol.hpp"
#include "channel.hpp"
#include "messages.hpp"
#include "net.hpp"
#include "nvml_snapshot.hpp"
#include "server_identity.hpp"

namespace rgpu {

enum class TlsMode { Auto, On, Off };
// "auto", "on", "off"; nullopt otherwise.
std::optional<TlsMode> parse_tls_mode(std::string_view text);

struct SessionOptions {
  HostPort server;
  std::string token;  // empty: connect without a token (accepted only by an open server)
  // auto: TLS, the server recognized by fingerprint, CA or known-servers file (first contact
  // recorded); on: the same without trust on first contact; off: plaintext (the server must be
  // set to tls = "off" too). Never a fall-back to plaintext.
  TlsMode tls = TlsMode::Auto;
  ServerTrust trust;
  std::string client_name = "rgpu";
  std::chrono::milliseconds timeout{10000};
};

// Why a connection could not be made; what() is a sentence for the user.
class SessionError : public std::runtime_error {
 public:
  enum class Kind { Unreachable, TlsMismatch, TlsFailure, Identity, VersionMismatch, AuthFailed, Refused, Protocol, Closed };
  SessionError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// An error the server answered a request with.
class RemoteError : public std::runtime_error {
 public:
  RemoteError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

class Session {
 public:
  // Connects and authenticates; throws SessionError.
  static std::unique_ptr<Session> connect(const SessionOptions& options);


  // Sends a request and waits for the answer with the same request id; an Error answer throws RemoteError.
  Frame call(MsgType type, std::span<const uint8_t> payload = {});
  Frame call(uint16_t type, std::span<const uint8_t> payload);

  // Opens an application session (CudaOpen or VulkanOpen with `open`'s GPUs) and returns its key;
  // the connection then carries that session (with the server's worker process). Throws
  // RemoteError for the server's refusal, SessionError otherwise.
  uint64_t open_application_session(AppApi api, std::span<const uint8_t> open);
  // Makes this connection a bulk lane of the CUDA session with `key`; throws as above.
  void join_cuda_session(uint64_t key);
  // How the session with `key` ended, as the server tells it (a sentence); throws as above.
  std::string session_fate(uint64_t key);
  // What the server's NVML says about its GPUs, with the processes of the sessions with `keys`
  // (this token's); throws as above.
  NvmlSnapshotMsg nvml_snapshot(std::vector<uint64_t> keys);
  BlockingChannel& channel() { return *channel_; }
  uint64_t next_request_id() { return ++last_request_id_; }

  const ChallengeMsg& challenge() const { return challenge_; }
  const WelcomeMsg& welcome() const { return welcome_; }
  bool encrypted() const { return channel_->ssl() != nullptr; }
  const std::string& tls_description() const { return tls_description_; }
  // How the server's certificate was recognized (empty without TLS).
  const std::string& server_identity() const { return server_identity_; }
  // True when the server proved it holds our token (false in open mode).
  bool server_authenticated() const { return server_authenticated_; }

 private:
  Session() = default;
  static std::unique_ptr<Session> connect_once(const SessionOptions& options);
  // Over TLS, the second handshake, with the session's worker (tls_rekey.hpp).
  void move_to_worker();
  std::unique_ptr<BlockingChannel> channel_;
  ChallengeMsg challenge_;
  WelcomeMsg welcome_;
  std::string tls_description_;
  std::string server_identity_;
  bool server_authenticated_ = false;
  uint64_t last_request_id_ = 0;
};

}  // namespace rgpu
