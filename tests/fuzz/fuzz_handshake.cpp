// libFuzzer target: what the server does with the bytes of a peer that has not authenticated, and
// what a client does with the bytes of a server it has not authenticated yet.
//
// Input: byte 0 picks how the rest is fed (bits 2-7: chunk size - 1) and which end takes it
// (bits 0-1): 0 a server with a token, which this peer can never prove it holds; 1 a server in
// open mode, where any AuthResponse is taken and the first requests after it are reached too;
// 2 a client with a token and without TLS; 3 a client that asks for TLS. The rest is the stream.
//
// 1. The stream goes through a FrameDecoder with the handshake limits, and every frame through
//    the decoders of both ends: the server's (Hello, AuthResponse) and the client's (Challenge,
//    Welcome, Error). Whatever decodes must encode back to the same bytes.
// 2. Server: the stream goes to a real server (rgpu::Server, running on a thread of this process
//    and listening on a unix socket), in chunks, then the write side is closed. Every frame the
//    server answers must be well-formed and decode; the server must close the connection and
//    forget it.
//    Client: Session::connect (the client daemon's handshake) runs against a loopback listener that
//    answers every connection with the stream; it may only fail with a SessionError.
// Only FrameError and WireError may come out of the decoders; anything else is a bug.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "app_protocol.hpp"
#include "frame.hpp"
#include "messages.hpp"
#include "net.hpp"
#include "round_trip.hpp"
#include "server/server.hpp"
#include "session.hpp"
#include "socket_peer.hpp"
#include "target.hpp"
#include "wire.hpp"

namespace {

using namespace rgpu;
using fuzz::round_trip;
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const char* what) { fuzz::fail("fuzz_handshake", what); }

void decode_in_process(std::span<const uint8_t> stream, size_t chunk) {
  FrameDecoder decoder;
  decoder.set_limits(kHandshakeLimits);
  try {
    for (size_t pos = 0; pos < stream.size(); pos += chunk) {
      decoder.feed(stream.subspan(pos, std::min(chunk, stream.size() - pos)));
      while (auto frame = decoder.next()) {
        if (frame->payload.size() > kHandshakeLimits.max_payload) fail("a frame over the handshake limit");
        if (frame->header.flags & kFrameCompressed) fail("a compressed frame before authentication");
        round_trip(frame->payload, decode_hello);
        round_trip(frame->payload, decode_auth_response);
        round_trip(frame->payload, decode_challenge);
        round_trip(frame->payload, decode_welcome);
        round_trip(frame->payload, decode_error);
      }
    }
  } catch (const FrameError&) {
  }
}

// What a server may send must decode on the client.
void check_answer(const Frame& frame) {
  const std::span<const uint8_t> p = frame.payload;
  try {
    switch (frame.header.type) {
      case static_cast<uint16_t>(MsgType::Challenge): decode_challenge(p); return;
      case static_cast<uint16_t>(MsgType::Welcome): decode_welcome(p); return;
      case static_cast<uint16_t>(MsgType::Error): decode_error(p); return;
      case static_cast<uint16_t>(MsgType::GpuList): decode_gpu_list(p); return;
      case static_cast<uint16_t>(MsgType::Pong):
      case kMsgSessionFateIs: return;
      default: fail("the server sent a message of an unexpected type");
    }
  } catch (const WireError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    fail("the server sent a message the client cannot decode");
  }
}

// An in-process server listening on an abstract unix socket, never stopped.
class TestServer {
 public:
  explicit TestServer(bool open) : socket_(open ? "rgpu-fuzz-handshake-open" : "rgpu-fuzz-handshake") {
    ServerSettings settings;
    if (!open) settings.tokens.push_back(TokenEntry{std::string(64, 'a'), "fuzz", std::nullopt, std::nullopt});
    GpuInfo cuda_gpu;
    cuda_gpu.index = 0;
    cuda_gpu.name = "cuda";
    cuda_gpu.cuda = true;
    GpuInfo vulkan_gpu;
    vulkan_gpu.index = 1;
    vulkan_gpu.name = "vulkan";
    vulkan_gpu.vulkan = true;
    settings.gpus = {cuda_gpu, vulkan_gpu};
    // Sessions are refused at the start of their worker: no process is made.
    settings.worker_executable = "/nonexistent/rgpu";
    const int fd = socket_.listen();
    if (fd < 0) fail("cannot listen on a unix socket");
    settings.listen_fd = fd;
    server_ = new Server(std::move(settings));  // left running until the process exits
    server_->start();
    std::thread([server = server_] { server->run(); }).detach();
  }

  void talk(std::span<const uint8_t> stream, size_t chunk) {
    fuzz::exchange("fuzz_handshake", socket_, stream, chunk, 0, check_answer);
    // The server forgets the connection once it has closed it.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (server_->connection_count() != 0) {
      if (Clock::now() > deadline) fail("the server kept a closed connection");
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

 private:
  fuzz::AbstractSocket socket_;
  Server* server_ = nullptr;
};

// A loopback listener that answers each connection with the current input: its bytes in chunks,
// then the end of its writing; then it waits for the client to close.
class TestPeerServer {
 public:
  TestPeerServer() : listen_fd_(listen_tcp("127.0.0.1", 0)), port_(bound_port(listen_fd_)) {
    std::thread([this] { serve(); }).detach();
  }
  uint16_t port() const { return port_; }
  void set(std::span<const uint8_t> stream, size_t chunk) {
    std::lock_guard lock(mutex_);
    stream_.assign(stream.begin(), stream.end());
    chunk_ = chunk;
  }

 private:
  void serve() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::vector<uint8_t> stream;
      size_t chunk;
      {
        std::lock_guard lock(mutex_);
        stream = stream_;
        chunk = chunk_;
      }
      for (size_t sent = 0; sent < stream.size();) {
        const ssize_t n = ::send(fd, stream.data() + sent, std::min(chunk, stream.size() - sent), MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      ::shutdown(fd, SHUT_WR);
      timeval limit{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
      uint8_t sink[4096];
      while (::recv(fd, sink, sizeof sink, 0) > 0) {
      }
      // Closed with a reset, once the client has closed: no connection waits in TIME_WAIT (thousands
      // a minute would use up the loopback's ports).
      const linger reset{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      ::close(fd);
    }
  }

  int listen_fd_;
  uint16_t port_;
  std::mutex mutex_;
  std::vector<uint8_t> stream_;
  size_t chunk_ = 1;
};

void client_handshake(std::span<const uint8_t> stream, size_t chunk, bool tls) {
  static TestPeerServer peer;
  peer.set(stream, chunk);
  SessionOptions options;
  options.server = HostPort{"127.0.0.1", peer.port()};
  options.tls = tls ? TlsMode::On : TlsMode::Off;
  if (!tls) options.token = std::string(64, 'a');
  options.timeout = std::chrono::seconds(5);
  try {
    Session::connect(options);
  } catch (const SessionError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    fail("the client's handshake failed with an exception other than SessionError");
  }
}

void write_seeds(const fuzz::Seeds& seeds) {
  auto type = [](MsgType t) { return static_cast<uint16_t>(t); };
  HelloMsg hello;
  hello.min_version = hello.max_version = kProtocolVersion;
  hello.client_nonce.fill(7);
  hello.client_name = "rgpu client";
  const AuthResponseMsg auth;
  SessionOpenMsg open;
  open.gpu_indices = {0};
  std::vector<uint8_t> key(8, 1);
  // A server with a token: the handshake up to the refusal of a wrong MAC.
  seeds.write("hello-auth", fuzz::Stream(0x7c).frame(type(MsgType::Hello), encode(hello))
                                 .frame(type(MsgType::AuthResponse), encode(auth)).bytes());
  // An open server: the handshake, then its requests (the session's worker cannot start).
  seeds.write("open-requests",
              fuzz::Stream(0x7d).frame(type(MsgType::Hello), encode(hello))
                  .frame(type(MsgType::AuthResponse), encode(auth))
                  .frame(type(MsgType::ListGpus), {}, 0, 1)
                  .frame(type(MsgType::Ping), {1, 2, 3}, 0, 2)
                  .frame(kMsgSessionFate, key, 0, 3)
                  .frame(kMsgCudaJoin, key, 0, 4)
                  .frame(kMsgVulkanOpen, encode(SessionOpenMsg{{1, 0}}), 0, 5)
                  .frame(kMsgCudaOpen, encode(open), 0, 6)
                  .bytes());
  seeds.write("start-tls", fuzz::Stream(0x00).frame(type(MsgType::StartTls)).frame(type(MsgType::Hello), encode(hello)).bytes());
  HelloMsg old = hello;
  old.min_version = old.max_version = 1;
  seeds.write("old-version", fuzz::Stream(0x01).frame(type(MsgType::Hello), encode(old)).bytes());
  // What a server answers (a client with a token, no TLS).
  ChallengeMsg challenge;
  challenge.version = kProtocolVersion;
  challenge.auth_required = true;
  challenge.server_name = "gpu-host";
  WelcomeMsg welcome;
  welcome.token_name = "ci";
  welcome.allowed_gpus = {0, 2};
  welcome.max_memory = 1u << 30;
  seeds.write("server-answers", fuzz::Stream(0x7e).frame(type(MsgType::Challenge), encode(challenge))
                                     .frame(type(MsgType::Welcome), encode(welcome))
                                     .frame(type(MsgType::Error), encode(ErrorMsg{ErrorCode::AuthFailed, "no"}))
                                     .bytes());
  // A client that asks for TLS: refused, or a TLS handshake that goes wrong.
  seeds.write("tls-refused", fuzz::Stream(0x03).frame(type(MsgType::Error),
                                                      encode(ErrorMsg{ErrorCode::TlsUnavailable, "no TLS here"})).bytes());
  // A finding, kept as a seed: an Error that does not decode, where TlsReady was expected.
  std::vector<uint8_t> malformed = encode(ErrorMsg{ErrorCode::TlsUnavailable, "no TLS here"});
  malformed[4] = 0xff;
  seeds.write("finding-malformed-error", fuzz::Stream(0x03).frame(type(MsgType::Error), malformed).bytes());
  auto tls = fuzz::Stream(0x7f).frame(type(MsgType::TlsReady)).bytes();
  const uint8_t record[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
  tls.insert(tls.end(), record, record + sizeof record);
  seeds.write("tls-ready", tls);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::initialize(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static TestServer with_token(false), open(true);
  const size_t chunk = (data[0] >> 2) + 1u;
  const std::span<const uint8_t> stream(data + 1, size - 1);
  decode_in_process(stream, chunk);
  switch (data[0] & 3) {
    case 0: return with_token.talk(stream, chunk), 0;
    case 1: return open.talk(stream, chunk), 0;
    default: return client_handshake(stream, chunk, data[0] & 1), 0;
  }
  return 0;
}
