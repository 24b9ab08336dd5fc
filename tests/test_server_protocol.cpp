// The server's handshake and framing rules, driven frame by frame over real loopback sockets.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <fstream>
#include <thread>

#include "auth.hpp"
#include "channel.hpp"
#include "loopback_listener.hpp"
#include "rgpu_process.hpp"
#include "server/server.hpp"
#include "server_identity.hpp"
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
  o.tls = TlsMode::Off;  // these servers have no certificate (tls = "off" on both ends)
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
// Before authentication a frame may hold only a few KiB: a Hello just over the limit is refused
// from its header, before its payload is read or buffered.
MalformedCase hello_over_handshake_limit() {
  FrameHeader h = header_of(MsgType::Hello);
  h.payload_len = kHandshakeLimits.max_payload + 1;
  return {"HelloOverHandshakeLimit", h, {}, "over this link's limit of 4096"};
}
MalformedCase truncated_hello() {
  return {"TruncatedHello", header_of(MsgType::Hello), {1, 0, 1}, "truncated"};
}
MalformedCase corrupt_lz4() {
  FrameHeader h = header_of(MsgType::Hello);
  h.flags = kFrameCompressed;
  return {"CorruptLz4", h, {0x00, 0x10, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff}, "compressed frame before authentication"};
}
MalformedCase wrong_first_message() {
  return {"WrongFirstMessage", header_of(MsgType::ListGpus), {}, "expected Hello"};
}

INSTANTIATE_TEST_SUITE_P(Frames, ServerMalformed,
                         ::testing::Values(bad_magic(), unknown_flags(), reserved_set(), oversized(),
                                           hello_over_handshake_limit(), truncated_hello(), corrupt_lz4(),
                                           wrong_first_message()),
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

// A connection is counted against max_clients once it has authenticated and asks for something
// (a bulk lane that joins a running session is not counted again).
TEST(ServerProtocol, MaxClientsRefusesTheNextOne) {
  ServerSettings s = settings_with_token();
  s.max_clients = 2;
  RunningServer server(s);
  auto first = Session::connect(options_for(server));
  auto second = Session::connect(options_for(server));
  auto list_gpus = [&] {
    auto session = Session::connect(options_for(server));
    return decode_gpu_list(session->call(MsgType::ListGpus).payload).gpus.size();
  };
  try {
    list_gpus();
    FAIL() << "third client served with max_clients = 2";
  } catch (const RemoteError& e) {
    EXPECT_EQ(e.code(), ErrorCode::TooManyClients);
    EXPECT_NE(std::string(e.what()).find("max_clients = 2"), std::string::npos) << e.what();
  }
  // A slot frees when a client leaves.
  first.reset();
  size_t listed = 0;
  for (int attempt = 0; attempt < 50 && listed == 0; ++attempt) {
    try {
      listed = list_gpus();
    } catch (const RemoteError& e) {
      ASSERT_EQ(e.code(), ErrorCode::TooManyClients);  // the server has not seen the close yet
    }
  }
  EXPECT_EQ(listed, 2u) << "slot never freed";
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
  // TLS, the server's key pinned as `rgpu server` logs it.
  SessionOptions tls_options(const RunningServer& server, const std::string& token = kToken) {
    SessionOptions o = options_for(server, token);
    o.tls = TlsMode::Auto;
    o.trust.fingerprint = certificate_file_fingerprint(cert_);
    return o;
  }
  // TLS, the server recognized through a known-servers file of this test.
  SessionOptions first_use_options(const RunningServer& server) {
    SessionOptions o = options_for(server);
    o.tls = TlsMode::Auto;
    o.trust.known_servers = known_servers_;
    return o;
  }
  test::TempDir dir_;
  std::string known_servers_ = dir_.path() + "/known_servers";
  std::string cert_, key_;
};

TEST_F(ServerTls, AutoModeUsesTls) {
  RunningServer server(tls_settings());
  auto session = Session::connect(tls_options(server));
  EXPECT_TRUE(session->encrypted());
  EXPECT_NE(session->tls_description().find("TLSv1.3"), std::string::npos) << session->tls_description();
  EXPECT_TRUE(session->server_authenticated());
  // The control connection takes frames of up to 64 KiB (bulk data goes to the session's worker).
  std::vector<uint8_t> big(kControlLimits.max_payload);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7919 >> 3);
  for (int i = 0; i < 48; ++i) ASSERT_EQ(session->call(MsgType::Ping, big).payload, big) << i;
  big.push_back(0);
  EXPECT_THROW(session->call(MsgType::Ping, big), std::exception) << "a frame over the control limit was taken";
}

// Each answer is queued from inside the TLS read loop; a long run of requests must not nest calls.
// The server reads TLS connections without blocking: a client that is connected and silent does
// not hold up the others.
TEST_F(ServerTls, SilentClientDoesNotHoldUpTheOthers) {
  RunningServer server(tls_settings());
  auto silent = Session::connect(tls_options(server));
  ASSERT_TRUE(silent->encrypted());
  auto busy = Session::connect(tls_options(server));
  std::vector<uint8_t> payload(64, 7);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(busy->call(MsgType::Ping, payload).payload, payload) << i;
  EXPECT_EQ(silent->call(MsgType::Ping, payload).payload, payload);
}

TEST_F(ServerTls, LongRunOfRequestsKeepsWorking) {
  RunningServer server(tls_settings());
  auto session = Session::connect(tls_options(server));
  std::vector<uint8_t> payload(64, 7);
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(session->call(MsgType::Ping, payload).payload, payload) << i;
}

TEST_F(ServerTls, PlainClientIsToldTlsIsRequired) {
  RunningServer server(tls_settings());
  SessionOptions o = options_for(server);
  try {
    Session::connect(o);
    FAIL() << "plain client admitted by a TLS server";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::TlsMismatch);
    EXPECT_NE(std::string(e.what()).find("TLS connections only"), std::string::npos) << e.what();
  }
}

// What a server without TLS answers StartTls is what an attacker on the path who strips TLS
// answers: "unavailable". Neither "auto" nor "on" falls back to plaintext; only "off" on both
// ends talks plaintext.
TEST_F(ServerTls, StrippedStartTlsIsRefusedNotDowngraded) {
  RunningServer server(settings_with_token());
  SessionOptions o = options_for(server);
  for (TlsMode mode : {TlsMode::Auto, TlsMode::On}) {
    o.tls = mode;
    try {
      Session::connect(o);
      FAIL() << "TLS refused by the peer, yet connected in plaintext";
    } catch (const SessionError& e) {
      EXPECT_EQ(e.kind(), SessionError::Kind::TlsMismatch);
      EXPECT_NE(std::string(e.what()).find("no TLS certificate"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("does not fall back to plaintext"), std::string::npos) << e.what();
    }
  }
  o.tls = TlsMode::Off;
  EXPECT_FALSE(Session::connect(o)->encrypted());
}

TEST_F(ServerTls, WrongTokenOverTlsIsRefused) {
  RunningServer server(tls_settings());
  try {
    Session::connect(tls_options(server, "wrong-token-of-thirty-two-characters"));
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
  auto session = Session::connect(tls_options(server));
  EXPECT_TRUE(session->encrypted());
}

}  // namespace
}  // namespace rgpu

namespace rgpu {
namespace {

// A one-connection server of the test's own: an impersonator at the address the client expects.
class FakeServer {
 public:
  explicit FakeServer(std::function<void(BlockingChannel&)> behaviour) {
    thread_ = std::thread([this, behaviour = std::move(behaviour)] {
      UniqueFd fd = listener_.accept();
      if (!fd) return;
      BlockingChannel channel(std::move(fd));
      try {
        behaviour(channel);
      } catch (const std::exception&) {
        // The client hung up: what it concluded is what the test checks.
      }
    });
  }
  ~FakeServer() {
    listener_.stop();
    thread_.join();
  }
  HostPort address() const { return listener_.address(); }

 private:
  test::LoopbackListener listener_;
  std::thread thread_;
};

// Answers a Hello as a server that knows no token would, pretending it asked for one.
void pretend_to_know_the_token(BlockingChannel& channel) {
  HelloMsg hello = decode_hello(channel.receive_frame().payload);
  ChallengeMsg challenge;
  challenge.version = kProtocolVersion;
  challenge.auth_required = true;
  challenge.server_nonce = random_nonce();
  challenge.server_name = "impersonator";
  channel.send_frame(static_cast<uint16_t>(MsgType::Challenge), 0, encode(challenge));
  channel.receive_frame();  // the client's proof, useless without the token
  WelcomeMsg welcome;
  welcome.server_mac = server_auth_mac("a-guess-at-the-token-000000000000", challenge.server_nonce, hello.client_nonce, {});
  welcome.token_name = "tester";
  channel.send_frame(static_cast<uint16_t>(MsgType::Welcome), 0, encode(welcome));
  uint8_t byte;
  channel.read_some({&byte, 1});  // until the client hangs up
}

TEST(ServerAuthentication, AnOpenServerIsRefusedByAClientWithAToken) {
  ServerSettings s = settings_with_token();
  s.tokens.clear();  // a stranger's open-mode server at the expected address
  RunningServer server(s);
  try {
    Session::connect(options_for(server));
    FAIL() << "a client holding a token accepted a server that never proved it";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::AuthFailed);
    EXPECT_NE(std::string(e.what()).find("cannot prove it is the server that holds yours"), std::string::npos)
        << e.what();
  }
}

TEST(ServerAuthentication, AServerThatCannotProveTheTokenIsRefused) {
  FakeServer impersonator(pretend_to_know_the_token);
  SessionOptions o;
  o.server = impersonator.address();
  o.token = kToken;
  o.tls = TlsMode::Off;
  try {
    Session::connect(o);
    FAIL() << "a server without the token was accepted";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::AuthFailed);
    EXPECT_NE(std::string(e.what()).find("could not prove that it holds the token"), std::string::npos) << e.what();
  }
}

TEST(ServerAuthentication, TheRealServerProvesItHoldsTheToken) {
  RunningServer server(settings_with_token());
  EXPECT_TRUE(Session::connect(options_for(server))->server_authenticated());
}

TEST_F(ServerTls, APinnedKeyThatDiffersIsRefused) {
  RunningServer server(tls_settings());
  SessionOptions o = tls_options(server);
  o.trust.fingerprint = "SHA256:" + std::string(64, 'a');
  try {
    Session::connect(o);
    FAIL() << "a server with another key was accepted";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Identity);
    EXPECT_NE(std::string(e.what()).find("not the configured server_fingerprint"), std::string::npos) << e.what();
  }
}

TEST_F(ServerTls, AKeyFirstMetIsRecordedAndAChangedOneRefusedLoudly) {
  RunningServer server(tls_settings());
  EXPECT_TRUE(Session::connect(first_use_options(server))->encrypted());
  const std::string name = server.address().to_string();
  std::ifstream in(known_servers_);
  std::string recorded((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(recorded, name + " " + certificate_file_fingerprint(cert_) + "\n");
  EXPECT_TRUE(Session::connect(first_use_options(server))->encrypted());  // recognized, not added twice

  // The same address now answers with another key (a man in the middle, or a replaced server).
  const std::string other_cert = dir_.path() + "/other-cert.pem", other_key = dir_.path() + "/other-key.pem";
  generate_self_signed(other_cert, other_key, "localhost");
  std::ofstream(known_servers_) << name << " " << certificate_file_fingerprint(other_cert) << "\n";
  try {
    Session::connect(first_use_options(server));
    FAIL() << "a changed server key was accepted";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Identity);
    EXPECT_NE(std::string(e.what()).find("THE IDENTITY OF SERVER " + name + " HAS CHANGED"), std::string::npos)
        << e.what();
  }
}

TEST_F(ServerTls, TlsOnTrustsNoServerOnFirstContact) {
  RunningServer server(tls_settings());
  SessionOptions o = first_use_options(server);
  o.tls = TlsMode::On;
  try {
    Session::connect(o);
    FAIL() << "tls = on accepted a server it never met";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Identity);
    EXPECT_NE(std::string(e.what()).find("set server_fingerprint = \"" + certificate_file_fingerprint(cert_)),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::ifstream(known_servers_)) << "tls = on must not record a key";
}

TEST_F(ServerTls, ACaChecksTheChainAndTheHostName) {
  RunningServer server(tls_settings());  // its certificate names "localhost"
  SessionOptions o = options_for(server);
  o.tls = TlsMode::On;
  o.trust.ca_path = cert_;
  o.server.host = "localhost";
  EXPECT_TRUE(Session::connect(o)->encrypted());

  o.server.host = "127.0.0.1";  // the certificate does not name this host
  try {
    Session::connect(o);
    FAIL() << "a certificate for another host was accepted";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Identity) << e.what();
  }

  const std::string other_cert = dir_.path() + "/other-ca.pem", other_key = dir_.path() + "/other-ca-key.pem";
  generate_self_signed(other_cert, other_key, "localhost");
  o.server.host = "localhost";
  o.trust.ca_path = other_cert;  // a CA that did not sign the server's certificate
  try {
    Session::connect(o);
    FAIL() << "a certificate no trusted CA signed was accepted";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Identity) << e.what();
  }
}

// Over TLS the proofs are bound to the TLS channel: a proof taken from one TLS connection (a
// relay between two) does not authenticate another.
TEST_F(ServerTls, AProofMadeForAnotherChannelIsRefused) {
  RunningServer server(tls_settings());
  BlockingChannel channel = raw_connect(server.address());
  channel.send_frame(static_cast<uint16_t>(MsgType::StartTls), 0, {});
  ASSERT_EQ(channel.receive_frame().header.type, static_cast<uint16_t>(MsgType::TlsReady));
  static SslCtxPtr ctx = make_client_tls_context();
  channel.start_tls_client(ctx.get());
  HelloMsg hello = hello_msg();
  channel.send_frame(static_cast<uint16_t>(MsgType::Hello), 0, encode(hello));
  ChallengeMsg challenge = decode_challenge(channel.receive_frame().payload);
  AuthResponseMsg unbound{client_auth_mac(kToken, challenge.server_nonce, hello.client_nonce, {})};
  channel.send_frame(static_cast<uint16_t>(MsgType::AuthResponse), 0, encode(unbound));
  EXPECT_EQ(expect_error_then_close(channel).code, ErrorCode::AuthFailed);
}

long max_rss_kib() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

// A 628-byte frame flagged compressed that claims 64 MiB once made the server allocate and fill
// 64 MiB on its main loop. Before authentication nothing compressed is taken: 400 such frames are
// each refused from their header and cost no memory.
TEST(PreAuthentication, CompressedFramesAreRefusedWithoutDecompressing) {
  RunningServer server(settings_with_token());
  const long before = max_rss_kib();
  std::vector<uint8_t> payload(628, 0);
  const uint32_t claimed = 64u << 20;
  std::memcpy(payload.data(), &claimed, sizeof claimed);
  for (int i = 0; i < 400; ++i) {
    BlockingChannel channel = raw_connect(server.address());
    FrameHeader h = header_of(MsgType::Hello);
    h.flags = kFrameCompressed;
    send_raw(channel, h, payload);
    ErrorMsg error = expect_error_then_close(channel);
    ASSERT_NE(error.message.find("compressed frame before authentication"), std::string::npos) << error.message;
  }
  EXPECT_LT(max_rss_kib() - before, 16 * 1024) << "the server's peak memory grew while refusing the frames";
  expect_server_healthy(server);
}

// Each stranger may make the server hold a few KiB, not 64 MiB: fourteen sockets that each
// announce a frame of the largest size are refused from the header alone.
TEST(PreAuthentication, LargeFramesFromStrangersAreRefusedFromTheirHeader) {
  RunningServer server(settings_with_token());
  const long before = max_rss_kib();
  std::vector<BlockingChannel> strangers;
  for (int i = 0; i < 14; ++i) {
    strangers.push_back(raw_connect(server.address()));
    FrameHeader h = header_of(MsgType::Hello);
    h.payload_len = kMaxFramePayload;
    std::vector<uint8_t> start(kFrameHeaderSize + 64 * 1024, 0x41);
    std::memcpy(start.data(), &h, kFrameHeaderSize);
    try {
      strangers.back().write_all(start);
    } catch (const ChannelClosed&) {
      // already refused
    }
  }
  for (auto& channel : strangers) {
    Frame frame = channel.receive_frame();
    ASSERT_EQ(frame.header.type, static_cast<uint16_t>(MsgType::Error));
    EXPECT_NE(decode_error(frame.payload).message.find("limit of 4096 before authentication"), std::string::npos);
  }
  EXPECT_LT(max_rss_kib() - before, 16 * 1024);
  expect_server_healthy(server);
}

// Silent sockets, reopened as soon as they are dropped, once took every max_clients slot. Now
// strangers have a quota of their own; over it the oldest stranger is dropped (as sshd's
// MaxStartups does), and authenticated clients never compete with them.
TEST(PreAuthentication, SilentSocketsDoNotKeepAuthenticatedClientsOut) {
  ServerSettings s = settings_with_token();
  s.max_clients = 2;
  s.max_unauthenticated = 4;
  s.max_unauthenticated_per_address = 3;
  RunningServer server(s);
  std::vector<BlockingChannel> silent;
  for (int i = 0; i < 6; ++i) silent.push_back(raw_connect(server.address()));
  for (int round = 0; round < 5; ++round) {
    auto session = Session::connect(options_for(server));
    EXPECT_EQ(decode_gpu_list(session->call(MsgType::ListGpus).payload).gpus.size(), 2u) << round;
    silent.push_back(raw_connect(server.address()));  // the attacker reopens what was dropped
  }
  // The oldest silent sockets were the ones dropped, each told why.
  ErrorMsg error = expect_error_then_close(silent.front());
  EXPECT_EQ(error.code, ErrorCode::TooManyClients);
  EXPECT_NE(error.message.find("unauthenticated"), std::string::npos) << error.message;
  // Authenticated clients still have both max_clients slots.
  auto first = Session::connect(options_for(server));
  auto second = Session::connect(options_for(server));
  EXPECT_EQ(decode_gpu_list(second->call(MsgType::ListGpus).payload).gpus.size(), 2u);
}

}  // namespace
}  // namespace rgpu
