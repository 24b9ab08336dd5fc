#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "config.hpp"

namespace rgpu {
namespace {

// The "Full Example" from the product manual, verbatim.
const char* kFullExample = R"toml([server]
bind = "0.0.0.0"
port = 9876
server_id = 1
max_clients = 16
transport = "tcp"        # "tcp" or "quic"
# cert_path = "/etc/rgpu/cert.pem"
# key_path = "/etc/rgpu/key.pem"
# expose_gpus = [0, 1]  # Expose specific GPUs only (default: all)

[client]
gpu_ordering = "LocalFirst"  # "LocalFirst", "RemoteFirst", "ByCapability"
include_local_gpus = true

[[client.servers]]
address = "gpu-server-1.local:9876"
token = "your-token-of-at-least-32-characters"
transport = "tcp"

[[client.servers]]
address = "gpu-server-2.local:9876"
token = "another-token-of-at-least-32-chars"
transport = "quic"

[[security.tokens]]
token = "a3f8b2c1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1"
name = "workstation-1"
# allowed_gpus = [0]       # Restrict to specific GPUs
# max_memory = 4294967296  # 4 GB memory limit

[[security.tokens]]
token = "b4c9d3e2f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2"
name = "render-farm"
)toml";

std::string error_of(const std::string& text) {
  try {
    parse_config(text, "rgpu.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Config, FullExampleFromTheManual) {
  Config c = parse_config(kFullExample, "rgpu.toml");
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  EXPECT_EQ(c.server.bind, "0.0.0.0");
  EXPECT_EQ(c.server.port, 9876);
  EXPECT_EQ(c.server.server_id, 1u);
  EXPECT_EQ(c.server.max_clients, 16u);
  EXPECT_EQ(c.server.transport, Transport::Tcp);
  EXPECT_FALSE(c.server.cert_path);
  EXPECT_FALSE(c.server.expose_gpus);
  EXPECT_EQ(c.client.gpu_ordering, GpuOrdering::LocalFirst);
  EXPECT_TRUE(c.client.include_local_gpus);
  ASSERT_EQ(c.client.servers.size(), 2u);
  EXPECT_EQ(c.client.servers[0].address, "gpu-server-1.local:9876");
  EXPECT_EQ(c.client.servers[0].token, "your-token-of-at-least-32-characters");
  EXPECT_EQ(c.client.servers[1].transport, Transport::Quic);
  EXPECT_EQ(c.client.servers[1].tls, "auto");
  ASSERT_EQ(c.tokens.size(), 2u);
  EXPECT_EQ(c.tokens[0].token, "a3f8b2c1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1");
  EXPECT_EQ(c.tokens[0].name, "workstation-1");
  EXPECT_FALSE(c.tokens[0].allowed_gpus);
  EXPECT_FALSE(c.tokens[0].max_memory);
  EXPECT_EQ(c.tokens[1].name, "render-farm");
}

TEST(Config, EmptyFileGivesDefaults) {
  Config c = parse_config("", "rgpu.toml");
  EXPECT_EQ(c.server.bind, "0.0.0.0");
  EXPECT_EQ(c.server.port, 9876);
  EXPECT_EQ(c.server.server_id, 0u);
  EXPECT_EQ(c.server.max_clients, 16u);
  EXPECT_EQ(c.client.gpu_ordering, GpuOrdering::LocalFirst);
  EXPECT_TRUE(c.client.include_local_gpus);
  EXPECT_EQ(c.client.bulk_lanes, 4u);
  EXPECT_TRUE(c.tokens.empty());
}

TEST(Config, OptionalKeysAreRead) {
  Config c = parse_config(R"([server]
cert_path = "/c.pem"
key_path = "/k.pem"
expose_gpus = [0, 2]
[client]
gpu_ordering = "ByCapability"
include_local_gpus = false
bulk_lanes = 0
[[client.servers]]
address = "[::1]:9000"
tls = "on"
[[security.tokens]]
token = "0123456789abcdef0123456789abcdef"
name = "n"
allowed_gpus = [1]
max_memory = 4294967296
)",
                          "rgpu.toml");
  EXPECT_EQ(*c.server.cert_path, "/c.pem");
  EXPECT_EQ(*c.server.expose_gpus, (std::vector<uint32_t>{0, 2}));
  EXPECT_EQ(c.client.gpu_ordering, GpuOrdering::ByCapability);
  EXPECT_FALSE(c.client.include_local_gpus);
  EXPECT_EQ(c.client.bulk_lanes, 0u);
  EXPECT_EQ(c.client.servers[0].tls, "on");
  EXPECT_EQ(*c.tokens[0].allowed_gpus, std::vector<uint32_t>{1});
  EXPECT_EQ(*c.tokens[0].max_memory, 4294967296ull);
}

struct BadValue {
  const char* toml;
  const char* key;
  const char* detail;
};

class ConfigBadValue : public ::testing::TestWithParam<BadValue> {};

TEST_P(ConfigBadValue, NamesFileKeyAndWhatIsAllowed) {
  const std::string message = error_of(GetParam().toml);
  EXPECT_NE(message.find("rgpu.toml: "), std::string::npos) << message;
  EXPECT_NE(message.find(GetParam().key), std::string::npos) << message;
  EXPECT_NE(message.find(GetParam().detail), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Values, ConfigBadValue,
    ::testing::Values(BadValue{"[server]\nport = 70000", "server.port", "70000 is out of range (allowed: 1-65535)"},
                      BadValue{"[server]\nport = \"x\"", "server.port", "must be an integer"},
                      BadValue{"[server]\nmax_clients = 0", "server.max_clients", "allowed: 1-"},
                      BadValue{"[server]\nworker_timeout = 0", "server.worker_timeout", "allowed: 1-"},
                      BadValue{"[server]\nserver_id = -1", "server.server_id", "-1 is out of range"},
                      BadValue{"[server]\ntransport = \"udp\"", "server.transport", "(allowed: \"tcp\", \"quic\")"},
                      BadValue{"[server]\nbind = \"\"", "server.bind", "must not be empty"},
                      BadValue{"[server]\ncert_path = \"/c\"", "server.cert_path", "key_path is not"},
                      BadValue{"[server]\nexpose_gpus = [-1]", "server.expose_gpus", "-1 is out of range"},
                      BadValue{"[server]\nexpose_gpus = 0", "server.expose_gpus", "must be an array"},
                      BadValue{"[client]\ngpu_ordering = \"Fastest\"", "client.gpu_ordering", "\"ByCapability\""},
                      BadValue{"[client]\ninclude_local_gpus = 1", "client.include_local_gpus", "true or false"},
                      BadValue{"[client]\nbulk_lanes = 17", "client.bulk_lanes", "17 is out of range (allowed: 0-16)"},
                      BadValue{"[client]\nkeepalive_timeout = 1", "client.keepalive_timeout", "1 is out of range (allowed: 2-3600)"},
                      BadValue{"[[client.servers]]\ntoken = \"t\"", "client.servers[0].address", "is missing"},
                      BadValue{"[[client.servers]]\naddress = \"h:0\"", "client.servers[0].address", "port must be"},
                      BadValue{"[[client.servers]]\naddress = \"h\"\ntls = \"yes\"", "client.servers[0].tls", "\"auto\""},
                      BadValue{"[[security.tokens]]\nname = \"a\"", "security.tokens[0].token", "missing or empty"},
                      BadValue{"[[security.tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n[[security.tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
                               "security.tokens[1].token", "same token"},
                      BadValue{"[[security.tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\nname = \"n\"\n[[security.tokens]]\ntoken = \"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"\nname = \"n\"",
                               "security.tokens[1].name", "used by an earlier token"},
                      BadValue{"[[security.tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\nmax_memory = 0", "security.tokens[0].max_memory",
                               "0 is out of range"},
                      BadValue{"[[security.tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\nallowed_gpus = [\"0\"]",
                               "security.tokens[0].allowed_gpus", "must be integers"}));

TEST(Config, UnknownKeysWarnButParse) {
  Config c = parse_config("[server]\nprot = 1\n[extra]\na = 1\n[[security.tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\nnmae = \"y\"\n",
                          "rgpu.toml");
  ASSERT_EQ(c.warnings.size(), 3u);
  EXPECT_NE(c.warnings[0].find("rgpu.toml: unknown key 'server.prot'"), std::string::npos) << c.warnings[0];
  std::string all = c.warnings[0] + c.warnings[1] + c.warnings[2];
  EXPECT_NE(all.find("'extra'"), std::string::npos) << all;
  EXPECT_NE(all.find("'security.tokens[0].nmae'"), std::string::npos) << all;
}

TEST(Config, ShortTokensAreRefusedWithTheReason) {
  for (const char* text : {"[[security.tokens]]\ntoken = \"a\"", "[[client.servers]]\naddress = \"h\"\ntoken = \"0123456789abcdef0123456789abcde\""}) {
    const std::string message = error_of(text);
    EXPECT_NE(message.find("a token needs at least 32"), std::string::npos) << message;
    EXPECT_NE(message.find("rgpu token"), std::string::npos) << message;
  }
}

TEST(Config, TokenFileIsReadAndMustBeTheUsersOwn) {
  const std::string path = ::testing::TempDir() + "/rgpu-token-file-test";
  std::ofstream(path) << "  0123456789abcdef0123456789abcdef  \nsecond line\n";
  const std::string toml = "[[client.servers]]\naddress = \"h\"\ntoken_file = \"" + path + "\"\n";
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_EQ(parse_config(toml, "rgpu.toml").client.servers[0].token, "0123456789abcdef0123456789abcdef");
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  const std::string message = error_of(toml);
  EXPECT_NE(message.find("client.servers[0].token_file"), std::string::npos) << message;
  EXPECT_NE(message.find("open to other users (mode 0644)"), std::string::npos) << message;
  const std::string missing = error_of("[[client.servers]]\naddress = \"h\"\ntoken_file = \"/nonexistent/t\"\n");
  EXPECT_NE(missing.find("cannot read token file '/nonexistent/t'"), std::string::npos) << missing;
}

TEST(Config, ServerFingerprintMustBeASha256) {
  const std::string message = error_of("[[client.servers]]\naddress = \"h\"\nserver_fingerprint = \"SHA256:abc\"\n");
  EXPECT_NE(message.find("client.servers[0].server_fingerprint"), std::string::npos) << message;
  EXPECT_NE(message.find("64 hex digits"), std::string::npos) << message;
}

TEST(Config, SyntaxErrorNamesTheLine) {
  const std::string message = error_of("[server]\nport = 1\nbind = \"unterminated\n");
  EXPECT_NE(message.find("rgpu.toml:3:"), std::string::npos) << message;
}

TEST(Config, MissingFileNamesThePath) {
  try {
    load_config_file("/nonexistent/rgpu.toml");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/rgpu.toml: cannot read"), std::string::npos) << e.what();
  }
}

TEST(Config, LoadsAFile) {
  const std::string path = ::testing::TempDir() + "/rgpu-config-test.toml";
  std::ofstream(path) << "[server]\nport = 1234\n";
  EXPECT_EQ(load_config_file(path).server.port, 1234);
}

TEST(TokenSnippet, RoundTripsThroughTheParser) {
  for (const std::string name : {"client", "my \"quoted\" name", "back\\slash", "tab\there", "ünïcode"}) {
    Config c = parse_config(token_toml_snippet("0123456789abcdef0123456789abcdef", name), "snippet");
    ASSERT_EQ(c.tokens.size(), 1u) << name;
    EXPECT_EQ(c.tokens[0].token, "0123456789abcdef0123456789abcdef");
    EXPECT_EQ(c.tokens[0].name, name);
  }
  EXPECT_EQ(token_toml_snippet("ab", "n"), "[[security.tokens]]\ntoken = \"ab\"\nname = \"n\"\n");
}


// The configuration the packages install (units/rgpu.toml.example -> /etc/rgpu/rgpu.toml).
std::string shipped_example() {
  const std::string path = std::string(RGPU_SOURCE_DIR) + "/units/rgpu.toml.example";
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Its settings with the leading '#' removed ("#port = 9876", "#[[client.servers]]"); prose
// comments ("# text") stay comments.
std::string uncommented(const std::string& text) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 1 && line[0] == '#' && (line[1] == '[' || (line[1] >= 'a' && line[1] <= 'z'))) line.erase(0, 1);
    out += line + "\n";
  }
  return out;
}

TEST(ShippedConfig, ParsesToTheDefaults) {
  Config c = parse_config(shipped_example(), "rgpu.toml.example");
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  const Config defaults;
  EXPECT_EQ(c.server.bind, defaults.server.bind);
  EXPECT_EQ(c.server.port, defaults.server.port);
  EXPECT_FALSE(c.server.cert_path);
  EXPECT_FALSE(c.server.expose_gpus);
  EXPECT_TRUE(c.client.servers.empty());
  EXPECT_TRUE(c.tokens.empty());
}

TEST(ShippedConfig, EveryCommentedSettingIsValid) {
  // The example's token file, made where the test can.
  const std::string example_token_file = "/home/alice/.config/rgpu/gpu-server-1.token";
  const std::string token_file = ::testing::TempDir() + "/rgpu-example.token";
  std::ofstream(token_file) << "0123456789abcdef0123456789abcdef\n";
  ASSERT_EQ(::chmod(token_file.c_str(), 0600), 0);
  std::string text = uncommented(shipped_example());
  const auto at = text.find(example_token_file);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, example_token_file.size(), token_file);
  Config c = parse_config(text, "rgpu.toml.example (uncommented)");
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  // Settings that have a default show it.
  const Config defaults;
  EXPECT_EQ(c.server.bind, defaults.server.bind);
  EXPECT_EQ(c.server.port, defaults.server.port);
  EXPECT_EQ(c.server.server_id, defaults.server.server_id);
  EXPECT_EQ(c.server.max_clients, defaults.server.max_clients);
  EXPECT_EQ(c.server.transport, defaults.server.transport);
  EXPECT_EQ(c.client.gpu_ordering, defaults.client.gpu_ordering);
  EXPECT_EQ(c.client.include_local_gpus, defaults.client.include_local_gpus);
  EXPECT_EQ(c.client.bulk_lanes, defaults.client.bulk_lanes);
  EXPECT_EQ(c.client.keepalive_timeout, defaults.client.keepalive_timeout);
  // The others show an example.
  EXPECT_EQ(c.server.cert_path, "/etc/rgpu/cert.pem");
  EXPECT_EQ(c.server.key_path, "/etc/rgpu/key.pem");
  EXPECT_EQ(c.server.expose_gpus, (std::vector<uint32_t>{0, 1}));
  ASSERT_EQ(c.client.servers.size(), 2u);
  EXPECT_EQ(c.client.servers[0].address, "gpu-server-1.local:9876");
  EXPECT_EQ(c.client.servers[0].token, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(c.client.servers[0].server_fingerprint,
            "SHA256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0");
  EXPECT_EQ(c.client.servers[0].ca_path, "/etc/ssl/certs/rgpu-ca.pem");
  EXPECT_EQ(c.client.known_servers, "/home/alice/.config/rgpu/known_servers");
  EXPECT_EQ(c.server.tls, defaults.server.tls);
  EXPECT_EQ(c.server.max_unauthenticated, defaults.server.max_unauthenticated);
  EXPECT_EQ(c.server.max_unauthenticated_per_address, defaults.server.max_unauthenticated_per_address);
  EXPECT_EQ(c.client.servers[0].transport, Transport::Tcp);
  EXPECT_EQ(c.client.servers[0].tls, "auto");
  ASSERT_EQ(c.tokens.size(), 2u);
  EXPECT_EQ(c.tokens[0].name, "workstation-1");
  EXPECT_EQ(c.tokens[0].allowed_gpus, (std::vector<uint32_t>{0}));
  EXPECT_EQ(c.tokens[0].max_memory, 4294967296u);
  EXPECT_EQ(c.tokens[1].name, "render-farm");
  // Every key of the configuration reference appears.
  for (const char* key : {"bind", "port", "server_id", "max_clients", "worker_timeout", "transport", "cert_path", "key_path",
                          "expose_gpus", "gpu_ordering", "include_local_gpus", "bulk_lanes", "keepalive_timeout", "address", "token", "tls", "name",
                          "token_file", "server_fingerprint", "ca_path", "known_servers", "max_unauthenticated",
                          "max_unauthenticated_per_address",
                          "allowed_gpus", "max_memory"})
    EXPECT_NE(text.find(std::string("\n") + key + " = "), std::string::npos) << key;
}

}  // namespace
}  // namespace rgpu
