// The server's handshake and framing rules, driven frame by frame over real loopback sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "auth.hpp"
#include "channel.hpp"
#include "rgpu_process.hpp"
#include "server/server.hpp"
#include "session.hpp"
#include "tls.hpp"
#include "wire.hpp"

namespace rgpu {
namespace {

const std::string kToken = "3c1f8e2a9b7d4c6e5f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";

// An in-process server on a loopback port, running on its own thread.
class RunningServer {
 public:
  explicit RunningServer(ServerSettings settings) : server_((settings.bind = "127.0.0.1", settings.port = 0, settings)) {
    server_.start();
    thread_ = std::thread([this] { server_.run(); });
  }
  ~RunningServer() {
    server_.stop();
    thread_.join();
  }
  HostPort address() const { return {"127.0.0.1", server_.port()}; }
  Server& server() { return server_; }

 private:
  Server server_;
  std::thread thread_;
};

ServerSettings settings_with_token(const std::string& token = kToken) {
  ServerSettings s;
  s.tokens.push_back(TokenEntry{token, "tester", std::nullopt, std::nullopt});
  GpuInfo a;
  a.index = 0;
  a.name = "first";
  GpuInfo b;
  b.index = 1;
  b.name = "second";
  s.gpus = {a, b};
  return s;
}

BlockingChannel raw_connect(const HostPort& where) {
  BlockingChannel channel(UniqueFd(connect_tcp(where, std::chrono::seconds(5))));
  timeval tv{10, 0};
  ::setsockopt(channel.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return channel;
}

void send_raw(BlockingChannel& channel, FrameHeader header, std::span<const uint8_t> payload = {}) {
  header.payload_len = static_cast<uint32_t>(payload.size());
  std::vector<uint8_t> bytes(kFrameHeaderSize);
  std::memcpy(bytes.data(), &header, kFrameHeaderSize);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  channel.write_all(bytes);
}

// Reads frames until the server closes; returns the Error it sent (fails if none).
ErrorMsg expect_error_then_close(BlockingChannel& channel) {
  Frame frame = channel.receive_frame();
  EXPECT_EQ(frame.header.type, static_cast<uint16_t>(MsgType::Error)) << msg_type_name(frame.header.type);
  ErrorMsg error = decode_error(frame.payload);
  EXPECT_THROW(channel.receive_frame(), ChannelClosed);
  return error;
}

HelloMsg hello_msg() {
  HelloMsg hello;
  hello.min_version = kProtocolVersion;
  hello.max_version = kProtocolVersion;
  hello.client_nonce = random_nonce();
  hello.client_name = "protocol test";
  return hello;
}

SessionOptions options_for(const RunningServer& server, const std::string& token = kToken) {
  SessionOptions o;
  o.server = server.address();
  o.token = token;
  o.timeout = std::chrono::seconds(10);
  return o;
}

// The server must still serve a proper client after whatever the test did to it.
void expect_server_healthy(const RunningServer& server) {
  auto session = Session::connect(options_for(server));
  Frame answer = session->call(MsgType::ListGpus);
  EXPECT_EQ(decode_gpu_list(answer.payload).gpus.size(), 2u);
}

TEST(ServerProtocol, AuthenticatesAndListsGpus) {
  RunningServer server(settings_with_token());
  auto session = Session::connect(options_for(server));
  EXPECT_TRUE(session->server_authenticated());
  EXPECT_FALSE(session->encrypted());
  EXPECT_EQ(session->welcome().token_name, "tester");
  GpuListMsg list = decode_gpu_list(session->call(MsgType::ListGpus).payload);
  ASSERT_EQ(list.gpus.size(), 2u);
  EXPECT_EQ(list.gpus[1].name, "second");
}

TEST(ServerProtocol, WrongTokenIsRefused) {
  RunningServer server(settings_with_token());
  try {
    Session::connect(options_for(server, "not-the-token"));
    FAIL() << "a wrong token was accepted";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::AuthFailed);
    EXPECT_NE(std::string(e.what()).find("token is not valid"), std::string::npos) << e.what();
  }
  expect_server_healthy(server);
}

TEST(ServerProtocol, MissingTokenIsRefusedBeforeSending) {
  RunningServer server(settings_with_token());
  try {
    Session::connect(options_for(server, ""));
    FAIL() << "no token, yet connected";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::AuthFailed);
    EXPECT_NE(std::string(e.what()).find("requires a token"), std::string::npos) << e.what();
  }
}

TEST(ServerProtocol, ReplayedResponseFailsOnANewConnection) {
  RunningServer server(settings_with_token());
  // First connection: a correct response, recorded.
  BlockingChannel first = raw_connect(server.address());
  HelloMsg hello = hello_msg();
  first.send_frame(static_cast<uint16_t>(MsgType::Hello), 0, encode(hello));
  ChallengeMsg challenge = decode_challenge(first.receive_frame().payload);
  AuthResponseMsg recorded{client_auth_mac(kToken, challenge.server_nonce, hello.client_nonce, {})};
  first.send_frame(static_cast<uint16_t>(MsgType::AuthResponse), 0, encode(recorded));
  EXPECT_EQ(first.receive_frame().header.type, static_cast<uint16_t>(MsgType::Welcome));

  // Second connection, same Hello, replayed response: the server's nonce changed, so it must fail.
  BlockingChannel second = raw_connect(server.address());
  second.send_frame(static_cast<uint16_t>(MsgType::Hello), 0, encode(hello));
  ChallengeMsg second_challenge = decode_challenge(second.receive_frame().payload);
  EXPECT_NE(second_challenge.server_nonce, challenge.server_nonce);
  second.send_frame(static_cast<uint16_t>(MsgType::AuthResponse), 0, encode(recorded));
  EXPECT_EQ(expect_error_then_close(second).code, ErrorCode::AuthFailed);
}

TEST(ServerProtocol, OpenModeNeedsNoToken) {
  ServerSettings s = settings_with_token();
  s.tokens.clear();
  RunningServer server(s);
  auto session = Session::connect(options_for(server, ""));
  EXPECT_FALSE(session->server_authenticated());
  EXPECT_EQ(session->welcome().token_name, "open");
}

TEST(ServerProtocol, OtherProtocolVersionGetsAClearError) {
  RunningServer server(settings_with_token());
  BlockingChannel channel = raw_connect(server.address());
  HelloMsg hello = hello_msg();
  hello.min_version = kProtocolVersion + 1;
  hello.max_version = kProtocolVersion + 3;
  FrameHeader header;
  header.version = kProtocolVersion + 3;
  header.type = static_cast<uint16_t>(MsgType::Hello);
  send_raw(channel, header, encode(hello));
  ErrorMsg error = expect_error_then_close(channel);
  EXPECT_EQ(error.code, ErrorCode::ProtocolVersion);
  EXPECT_NE(error.message.find("versions " + std::to_string(kProtocolVersion + 1)), std::string::npos) << error.message;
  expect_server_healthy(server);
}

struct MalformedCase {
  const char* name;
  FrameHeader header;
  std::vector<uint8_t> payload;
  const char* expected_text;
};

class ServerMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(ServerMalformed, ClosesOnlyThatConnection) {
  RunningServer server(settings_with_token());
  auto healthy = Session::connect(options_for(server));  // a bystander that must keep working
  BlockingChannel channel = raw_connect(server.address());
  const MalformedCase& c = GetParam();
  FrameHeader header = c.header;
  std::vector<uint8_t> bytes(kFrameHeaderSize);
  if (header.payload_len == 0) header.payload_len = static_cast<uint32_t>(c.payload.size());
  std::memcpy(bytes.data(), &header, kFrameHeaderSize);
  bytes.insert(bytes.end(), c.payload.begin(), c.payload.end());
  channel.write_all(bytes);
  ErrorMsg error = expect_error_then_close(channel);
  EXPECT_NE(error.message.find(c.expected_text), std::string::npos) << error.message;
  EXPECT_EQ(decode_gpu_list(healthy->call(MsgType::ListGpus).payload).gpus.size(), 2u);
  expect_server_healthy(server);
}

FrameHeader header_of(MsgType type) {
  FrameHeader h;
  h.type = static_cast<uint16_t>(type);
  return h;
}

MalformedCase bad_magic() {
  FrameHeader h = header_of(MsgType::Hello);
  h.magic = 0x50545448;  // "HTTP"
  return {"BadMagic", h, {}, "bad frame magic"};
}
MalformedCase unknown_flags() {
  FrameHeader h = header_of(MsgType::Hello);
  h.flags = 0x80;
  return {"UnknownFlags", h, {}, "unknown flag"};
}
MalformedCase reserved_set() {
  FrameHeader h = header_of(MsgType::Hello);
  h.reserved = 1;
  return {"ReservedSet", h, {}, "reserved"};
}
MalformedCase oversized() {
  FrameHeader h = header_of(MsgType::Hello);
  h.payload_len = kMaxFramePayload + 1;
  return {"Oversized", h, {}, "over the limit"};
}
MalformedCase truncated_hello() {
  return {"TruncatedHello", header_of(MsgType::Hello), {1, 0, 1}, "truncated"};
}
MalformedCase corrupt_lz4() {
  FrameHeader h = header_of(MsgType::Hello);
  h.flags = kFrameCompressed;
  return {"CorruptLz4", h, {0x00, 0x10, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff}, "corrupt"};
}
MalformedCase wrong_first_message() {
  return {"WrongFirstMessage", header_of(MsgType::ListGpus), {}, "expected Hello"};
}

INSTANTIATE_TEST_SUITE_P(Frames, ServerMalformed,
                         ::testing::Values(bad_magic(), unknown_flags(), reserved_set(), oversized(), truncated_hello(),
                                           corrupt_lz4(), wrong_first_message()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ServerProtocol, UnknownRequestGetsNotSupportedAndConnectionStays) {
  RunningServer server(settings_with_token());
  auto session = Session::connect(options_for(server));
  try {
    session->call(static_cast<MsgType>(0x7777));
    FAIL() << "unknown message answered with success";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotSupported);
  }
  std::vector<uint8_t> payload = {1, 2, 3, 4};
  EXPECT_EQ(session->call(MsgType::Ping, payload).payload, payload);
}

TEST(ServerProtocol, MaxClientsRefusesTheNextOne) {
  ServerSettings s = settings_with_token();
  s.max_clients = 2;
  RunningServer server(s);
  auto first = Session::connect(options_for(server));
  auto second = Session::connect(options_for(server));
  try {
    Session::connect(options_for(server));
    FAIL() << "third client admitted with max_clients = 2";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Refused);
    EXPECT_NE(std::string(e.what()).find("max_clients = 2"), std::string::npos) << e.what();
  }
  // A slot frees when a client leaves.
  first.reset();
  std::unique_ptr<Session> third;
  for (int attempt = 0; attempt < 50 && !third; ++attempt) {
    try {
      third = Session::connect(options_for(server));
    } catch (const SessionError& e) {
      ASSERT_EQ(e.kind(), SessionError::Kind::Refused);  // the server has not seen the close yet
    }
  }
  ASSERT_TRUE(third) << "slot never freed";
  EXPECT_EQ(decode_gpu_list(third->call(MsgType::ListGpus).payload).gpus.size(), 2u);
}

TEST(ServerProtocol, SilentPeerIsDroppedAfterHandshakeTimeout) {
  ServerSettings s = settings_with_token();
  s.handshake_timeout = std::chrono::milliseconds(300);
  RunningServer server(s);
  BlockingChannel channel = raw_connect(server.address());
  ErrorMsg error = expect_error_then_close(channel);
  EXPECT_EQ(error.code, ErrorCode::Timeout);
  expect_server_healthy(server);
}

TEST(ServerProtocol, VanishedPeerMidFrameLeavesServerHealthy) {
  RunningServer server(settings_with_token());
  {
    BlockingChannel channel = raw_connect(server.address());
    FrameHeader h = header_of(MsgType::Hello);
    h.payload_len = 1000;
    std::vector<uint8_t> partial(kFrameHeaderSize + 10);
    std::memcpy(partial.data(), &h, kFrameHeaderSize);
    channel.write_all(partial);
  }
  expect_server_healthy(server);
}

TEST(ServerProtocol, FilteredGpuListFollowsAllowedGpus) {
  ServerSettings s = settings_with_token();
  s.tokens[0].allowed_gpus = std::vector<uint32_t>{1};
  RunningServer server(s);
  auto session = Session::connect(options_for(server));
  GpuListMsg list = decode_gpu_list(session->call(MsgType::ListGpus).payload);
  ASSERT_EQ(list.gpus.size(), 1u);
  EXPECT_EQ(list.gpus[0].index, 1u);
  EXPECT_EQ(session->welcome().allowed_gpus, std::vector<uint32_t>{1});
}

class ServerTls : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = dir_.path() + "/cert.pem";
    key_ = dir_.path() + "/key.pem";
    generate_self_signed(cert_, key_, "localhost");
  }
  ServerSettings tls_settings() {
    ServerSettings s = settings_with_token();
    s.cert_path = cert_;
    s.key_path = key_;
    return s;
  }
  test::TempDir dir_;
  std::string cert_, key_;
};

TEST_F(ServerTls, AutoModeUsesTls) {
  RunningServer server(tls_settings());
  auto session = Session::connect(options_for(server));
  EXPECT_TRUE(session->encrypted());
  EXPECT_NE(session->tls_description().find("TLSv1.3"), std::string::npos) << session->tls_description();
  EXPECT_TRUE(session->server_authenticated());
  std::vector<uint8_t> big(3 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7919 >> 3);
  EXPECT_EQ(session->call(MsgType::Ping, big).payload, big);
}

// Each answer is queued from inside the TLS read loop; a long run of requests must not nest calls.
// The server reads TLS connections without blocking: a client that is connected and silent does
// not hold up the others.
TEST_F(ServerTls, SilentClientDoesNotHoldUpTheOthers) {
  RunningServer server(tls_settings());
  auto silent = Session::connect(options_for(server));
  ASSERT_TRUE(silent->encrypted());
  auto busy = Session::connect(options_for(server));
  std::vector<uint8_t> payload(64, 7);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(busy->call(MsgType::Ping, payload).payload, payload) << i;
  EXPECT_EQ(silent->call(MsgType::Ping, payload).payload, payload);
}

TEST_F(ServerTls, LongRunOfRequestsKeepsWorking) {
  RunningServer server(tls_settings());
  auto session = Session::connect(options_for(server));
  std::vector<uint8_t> payload(64, 7);
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(session->call(MsgType::Ping, payload).payload, payload) << i;
}

TEST_F(ServerTls, PlainClientIsToldTlsIsRequired) {
  RunningServer server(tls_settings());
  SessionOptions o = options_for(server);
  o.tls = TlsMode::Off;
  try {
    Session::connect(o);
    FAIL() << "plain client admitted by a TLS server";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::TlsMismatch);
    EXPECT_NE(std::string(e.what()).find("TLS connections only"), std::string::npos) << e.what();
  }
}

TEST_F(ServerTls, TlsClientIsToldServerHasNoTls) {
  RunningServer server(settings_with_token());
  SessionOptions o = options_for(server);
  o.tls = TlsMode::On;
  try {
    Session::connect(o);
    FAIL() << "TLS required, yet connected to a plain server";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::TlsMismatch);
    EXPECT_NE(std::string(e.what()).find("no TLS certificate"), std::string::npos) << e.what();
  }
  o.tls = TlsMode::Auto;  // auto falls back to plain text
  EXPECT_FALSE(Session::connect(o)->encrypted());
}

TEST_F(ServerTls, WrongTokenOverTlsIsRefused) {
  RunningServer server(tls_settings());
  try {
    Session::connect(options_for(server, "wrong"));
    FAIL();
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::AuthFailed);
  }
}

TEST_F(ServerTls, GarbageInsteadOfTlsHandshakeClosesThatConnectionOnly) {
  RunningServer server(tls_settings());
  BlockingChannel channel = raw_connect(server.address());
  channel.send_frame(static_cast<uint16_t>(MsgType::StartTls), 0, {});
  EXPECT_EQ(channel.receive_frame().header.type, static_cast<uint16_t>(MsgType::TlsReady));
  std::vector<uint8_t> garbage(100, 0x42);
  channel.write_all(garbage);
  uint8_t buf[64];
  EXPECT_THROW(while (true) channel.read_some(buf), ChannelClosed);
  auto session = Session::connect(options_for(server));
  EXPECT_TRUE(session->encrypted());
}

}  // namespace
}  // namespace rgpu
