// `rgpu server` and `rgpu info` as users run them: real processes, real sockets, this machine's
// GPUs (in CI: Mesa's lavapipe, a Vulkan GPU on the CPU).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "auth.hpp"
#include "channel.hpp"
#include "messages.hpp"
#include "net.hpp"
#include "rgpu_process.hpp"

namespace rgpu::test {
namespace {

const std::string kToken = "5b1c0a2e9d8f7e6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a3928170605";

class ServerE2E : public ::testing::Test {
 protected:
  std::string config(const std::string& extra = "") {
    return dir_.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n\n[[security.tokens]]\ntoken = \"" + kToken +
                                      "\"\nname = \"ci\"\n" + extra);
  }
  TempDir dir_;
};

TEST_F(ServerE2E, InfoListsLavapipeAsAVulkanGpu) {
  ServerProcess server({"--config", config()});
  CommandResult r = run_rgpu({"info", "--server", server.address(), "--token", kToken});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Connected to RGPU server at " + server.address()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Available GPUs:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GPU 0: llvmpipe"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Type:     Cpu"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Vulkan:   true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CUDA:     false"), std::string::npos) << r.out;
}

TEST_F(ServerE2E, WrongTokenExitsWithTheAuthCode) {
  ServerProcess server({"--config", config()});
  CommandResult r = run_rgpu({"info", "--server", server.address(), "--token", std::string(64, '0')});
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_NE(r.err.find("token is not valid"), std::string::npos) << r.err;
  EXPECT_NE(server.log().find("refusing 127.0.0.1"), std::string::npos) << server.log();
  // The server keeps serving.
  EXPECT_EQ(run_rgpu({"info", "--server", server.address(), "--token", kToken}).exit_code, 0);
}

TEST_F(ServerE2E, AShortTokenIsRefusedBeforeConnecting) {
  CommandResult r = run_rgpu({"info", "--server", "127.0.0.1:1", "--token", "a"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("a token needs at least 32"), std::string::npos) << r.err;
}

// A token on the command line is visible to every local user (ps); a file or the environment
// keeps it private.
TEST_F(ServerE2E, TokenFromAFileOrTheEnvironment) {
  ServerProcess server({"--config", config()});
  const std::string file = dir_.file("token", kToken + "\n");
  ASSERT_EQ(::chmod(file.c_str(), 0600), 0);
  CommandResult from_file = run_rgpu({"info", "--server", server.address(), "--token-file", file});
  EXPECT_EQ(from_file.exit_code, 0) << from_file.err;
  CommandResult from_env =
      run_program({RGPU_BINARY, "info", "--server", server.address()}, {"RGPU_TOKEN=" + kToken});
  EXPECT_EQ(from_env.exit_code, 0) << from_env.err;

  ASSERT_EQ(::chmod(file.c_str(), 0644), 0);
  CommandResult shared = run_rgpu({"info", "--server", server.address(), "--token-file", file});
  EXPECT_EQ(shared.exit_code, 2);
  EXPECT_NE(shared.err.find("is open to other users (mode 0644)"), std::string::npos) << shared.err;
}

TEST_F(ServerE2E, ThePrintedFingerprintPinsTheServer) {
  ServerProcess server({"--config", config()});
  const std::string log = server.log();
  const auto at = log.find("server_fingerprint = \"");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string fingerprint = log.substr(at + 22, 7 + 64);
  CommandResult pinned = run_rgpu({"info", "--server", server.address(), "--token", kToken, "--tls", "on",
                                   "--server-fingerprint", fingerprint});
  EXPECT_EQ(pinned.exit_code, 0) << pinned.err;
  CommandResult other = run_rgpu({"info", "--server", server.address(), "--token", kToken,
                                  "--server-fingerprint", "SHA256:" + std::string(64, 'b')});
  EXPECT_EQ(other.exit_code, 5);
  EXPECT_NE(other.err.find("not the configured server_fingerprint"), std::string::npos) << other.err;
}

// `rgpu token --config` prints the client's entry with the key of the server that configuration
// runs (here: the certificate the server made itself at its first start).
TEST_F(ServerE2E, TokenCommandPrintsTheServersFingerprint) {
  const std::string state = "XDG_STATE_HOME=" + dir_.path() + "/state";
  ServerProcess server({"--config", config()}, {state});
  CommandResult r = run_program({RGPU_BINARY, "token", "--name", "laptop", "--config", config()}, {state});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("server_fingerprint = \"" + server.fingerprint() + "\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("token_file = "), std::string::npos) << r.out;
}

// A peer's name goes into the server's log escaped: a newline in it cannot forge a log line.
TEST_F(ServerE2E, PeerTextCannotForgeLogLines) {
  ServerProcess server({"--config", config(), "--tls", "off"});
  BlockingChannel channel(UniqueFd(connect_tcp({"127.0.0.1", server.port()}, std::chrono::seconds(5))));
  HelloMsg hello;
  hello.min_version = hello.max_version = kProtocolVersion;
  hello.client_nonce = random_nonce();
  hello.client_name = "laptop\n12:00:00.000 INFO  rgpu server: client admin authenticated";
  channel.send_frame(static_cast<uint16_t>(MsgType::Hello), 0, encode(hello));
  ChallengeMsg challenge = decode_challenge(channel.receive_frame().payload);
  AuthResponseMsg response{client_auth_mac(kToken, challenge.server_nonce, hello.client_nonce, {})};
  channel.send_frame(static_cast<uint16_t>(MsgType::AuthResponse), 0, encode(response));
  ASSERT_EQ(channel.receive_frame().header.type, static_cast<uint16_t>(MsgType::Welcome));
  const std::string log = server.log();
  EXPECT_EQ(log.find("\n12:00:00.000 INFO"), std::string::npos) << log;
  EXPECT_NE(log.find("laptop\\x0a12:00:00.000"), std::string::npos) << log;
}

TEST_F(ServerE2E, UnreachableServerExitsWithItsCode) {
  ServerProcess server({"--config", config()});
  const std::string address = server.address();
  EXPECT_EQ(server.stop(), 0);
  CommandResult r = run_rgpu({"info", "--server", address, "--token", kToken});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("cannot connect to " + address), std::string::npos) << r.err;
}

TEST_F(ServerE2E, TlsServerWithGeneratedCertificate) {
  const std::string cert = dir_.path() + "/cert.pem", key = dir_.path() + "/key.pem";
  ServerProcess server({"--config", config(), "--cert", cert, "--key", key, "--generate-cert"});
  EXPECT_NE(server.log().find("wrote a self-signed certificate"), std::string::npos) << server.log();
  CommandResult r = run_rgpu({"info", "--server", server.address(), "--token", kToken});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  CommandResult plain = run_rgpu({"info", "--server", server.address(), "--token", kToken, "--tls", "off"});
  EXPECT_EQ(plain.exit_code, 5);
  EXPECT_NE(plain.err.find("TLS connections only"), std::string::npos) << plain.err;
  EXPECT_NE(server.log().find("TLSv1.3"), std::string::npos) << server.log();
}

// Plaintext only where both ends say tls = "off": a client that expects TLS is never
// downgraded, whether it says "on" or "auto".
TEST_F(ServerE2E, PlainServerRefusesTlsClientsAndWarnsAtStartup) {
  ServerProcess server({"--config", config(), "--tls", "off"});
  for (const char* mode : {"on", "auto"}) {
    CommandResult r = run_rgpu({"info", "--server", server.address(), "--token", kToken, "--tls", mode});
    EXPECT_EQ(r.exit_code, 5) << mode;
    EXPECT_NE(r.err.find("no TLS certificate"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("does not fall back to plaintext"), std::string::npos) << r.err;
  }
  CommandResult plain = run_rgpu({"info", "--server", server.address(), "--token", kToken, "--tls", "off"});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_NE(server.log().find("NOT encrypted"), std::string::npos) << server.log();
}

TEST_F(ServerE2E, TlsOffWithACertificateIsAUsageError) {
  const std::string cert = dir_.path() + "/cert.pem", key = dir_.path() + "/key.pem";
  CommandResult r = run_rgpu({"server", "--config", config(), "--tls", "off", "--cert", cert, "--key", key,
                              "--generate-cert"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("choose one"), std::string::npos) << r.err;
}

TEST_F(ServerE2E, ExposeGpusHidesTheOthers) {
  const std::string path = dir_.file("hidden.toml", "[server]\nbind = \"127.0.0.1\"\nexpose_gpus = [5]\n");
  ServerProcess hidden({"--config", path});
  CommandResult r = run_rgpu({"info", "--server", hidden.address()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("No GPUs available."), std::string::npos) << r.out;
  EXPECT_NE(hidden.log().find("expose_gpus lists GPU 5"), std::string::npos) << hidden.log();
  EXPECT_NE(hidden.log().find("open mode"), std::string::npos) << hidden.log();
}

TEST_F(ServerE2E, BadConfigValueStopsStartupWithItsName) {
  const std::string path = dir_.file("bad.toml", "[server]\nmax_clients = 0\n");
  CommandResult r = run_rgpu({"server", "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(path + ": server.max_clients: 0 is out of range"), std::string::npos) << r.err;
  CommandResult missing = run_rgpu({"server", "--config", dir_.path() + "/none.toml"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("none.toml: cannot read"), std::string::npos) << missing.err;
  CommandResult quic = run_rgpu({"server", "--config", dir_.file("q.toml", "[server]\ntransport = \"quic\"\n")});
  EXPECT_EQ(quic.exit_code, 2);
  EXPECT_NE(quic.err.find("QUIC transport is not available"), std::string::npos) << quic.err;
}

TEST_F(ServerE2E, TokenCommandPrintsAUsableEntry) {
  CommandResult r = run_rgpu({"token", "--name", "laptop"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.rfind("Generated RGPU token for 'laptop':\n\n  ", 0), 0u) << r.out;
  const std::string token = r.out.substr(r.out.find("  ") + 2, 64);
  EXPECT_EQ(token.find_first_not_of("0123456789abcdef"), std::string::npos) << token;
  EXPECT_NE(r.out.find("  [[security.tokens]]\n  token = \"" + token + "\"\n  name = \"laptop\"\n"), std::string::npos)
      << r.out;
  // The printed token admits a client.
  const std::string path = dir_.file("t.toml", "[server]\nbind = \"127.0.0.1\"\n[[security.tokens]]\ntoken = \"" +
                                                    token + "\"\nname = \"laptop\"\n");
  ServerProcess server({"--config", path});
  EXPECT_EQ(run_rgpu({"info", "--server", server.address(), "--token", token}).exit_code, 0);
}

}  // namespace
}  // namespace rgpu::test
