#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "auth.hpp"

namespace rgpu {
namespace {

Nonce iota_nonce(uint8_t first) {
  Nonce n{};
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(first + i);
  return n;
}

std::vector<uint8_t> bytes_of(std::string_view text) { return {text.begin(), text.end()}; }

std::string hex(const Mac& mac) {
  std::string out;
  char byte[3];
  for (uint8_t b : mac) {
    std::snprintf(byte, sizeof byte, "%02x", b);
    out += byte;
  }
  return out;
}

struct Inputs {
  std::string token = "rgpu-test-token";
  Nonce server_nonce = iota_nonce(0x00);
  Nonce client_nonce = iota_nonce(0x80);
  std::vector<uint8_t> binding = bytes_of("tls-exporter-binding");

  Mac client() const { return client_auth_mac(token, server_nonce, client_nonce, binding); }
  Mac server() const { return server_auth_mac(token, server_nonce, client_nonce, binding); }
};

// Expected values computed with the OpenSSL command line, independently of this code:
//   printf 'rgpu-client' + server_nonce + client_nonce + binding |
//     openssl dgst -sha256 -mac HMAC -macopt key:rgpu-test-token
TEST(AuthKnownAnswer, ClientMacMatchesOpensslCli) {
  EXPECT_EQ(hex(Inputs{}.client()), "b62952f3f70b9e4faadec6518c5140c96a195f32a2f71201bd96c1d33a5bf9f5");
}

TEST(AuthKnownAnswer, ServerMacMatchesOpensslCli) {
  // label "rgpu-server", then the client nonce first.
  EXPECT_EQ(hex(Inputs{}.server()), "cfc95d6934b7ed13e56ebf30f130ff3d59aeeb6805c356efae39cfe98e3688b1");
}

TEST(AuthKnownAnswer, ZeroNoncesEmptyBinding) {
  EXPECT_EQ(hex(client_auth_mac("rgpu-test-token", Nonce{}, Nonce{}, {})),
            "6f6af46be9a904a4123fa74439d63c9e7be0f1f078f7405f227ed305650554c0");
}

TEST(AuthMac, Deterministic) {
  Inputs in;
  EXPECT_EQ(in.client(), in.client());
  EXPECT_EQ(in.server(), in.server());
}

TEST(AuthMac, ClientAndServerMacsDiffer) {
  Inputs in;
  EXPECT_NE(in.client(), in.server());
  // Even with equal nonces, where only the label tells the two apart.
  in.client_nonce = in.server_nonce;
  EXPECT_NE(in.client(), in.server());
}

TEST(AuthMac, DependsOnEveryInput) {
  const Inputs base;
  auto check = [&](const Inputs& changed, const char* what) {
    EXPECT_NE(changed.client(), base.client()) << "client mac ignores " << what;
    EXPECT_NE(changed.server(), base.server()) << "server mac ignores " << what;
  };
  Inputs in = base;
  in.token.back() ^= 1;
  check(in, "the token");
  in = base;
  in.token += "x";
  check(in, "the token's length");
  in = base;
  in.server_nonce[31] ^= 1;
  check(in, "the server nonce");
  in = base;
  in.client_nonce[0] ^= 0x80;
  check(in, "the client nonce");
  in = base;
  in.binding[5] ^= 1;
  check(in, "the channel binding");
  in = base;
  in.binding.clear();
  check(in, "the channel binding's presence");
  in = base;
  std::swap(in.server_nonce, in.client_nonce);
  check(in, "the nonces' order");
}

TEST(AuthMac, ResponseForOneServerNonceFailsForAnother) {
  Inputs recorded;
  const Mac replayed = recorded.client();
  Inputs fresh = recorded;
  fresh.server_nonce = random_nonce();
  EXPECT_FALSE(mac_equal(replayed, fresh.client()));
  EXPECT_TRUE(mac_equal(replayed, recorded.client()));
}

TEST(AuthMac, RelayedOnAnotherChannelFails) {
  Inputs a;
  Inputs b = a;
  b.binding = bytes_of("another-tls-session");
  EXPECT_FALSE(mac_equal(a.client(), b.client()));
  EXPECT_FALSE(mac_equal(a.server(), b.server()));
}

TEST(AuthMacEqual, ComparesEveryByte) {
  Mac a{};
  Mac b{};
  EXPECT_TRUE(mac_equal(a, b));
  for (size_t i = 0; i < b.size(); ++i) {
    b = a;
    b[i] = 1;
    EXPECT_FALSE(mac_equal(a, b)) << "byte " << i;
  }
  a.fill(0xab);
  b.fill(0xab);
  EXPECT_TRUE(mac_equal(a, b));
}

TEST(AuthToken, Is64LowercaseHexDigits) {
  const std::string token = generate_token();
  ASSERT_EQ(token.size(), 64u);
  for (char c : token) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << "character " << c;
}

TEST(AuthToken, TwoCallsDiffer) { EXPECT_NE(generate_token(), generate_token()); }

TEST(AuthNonce, TwoCallsDifferAndAreNotZero) {
  const Nonce a = random_nonce();
  const Nonce b = random_nonce();
  EXPECT_NE(a, b);
  EXPECT_NE(a, Nonce{});
}

}  // namespace
}  // namespace rgpu
