#include "auth.hpp"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace rgpu {

namespace {
Mac hmac(std::string_view token, std::string_view label, const Nonce& first, const Nonce& second,
         std::span<const uint8_t> binding) {
  std::string message(label);
  message.append(reinterpret_cast<const char*>(first.data()), first.size());
  message.append(reinterpret_cast<const char*>(second.data()), second.size());
  message.append(reinterpret_cast<const char*>(binding.data()), binding.size());
  Mac out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &len) == nullptr ||
      len != out.size())
    throw std::runtime_error("HMAC-SHA256 failed in OpenSSL");
  return out;
}
}  // namespace

Nonce random_nonce() {
  Nonce nonce{};
  if (RAND_bytes(nonce.data(), static_cast<int>(nonce.size())) != 1)
    throw std::runtime_error("OpenSSL's random generator failed");
  return nonce;
}

std::string generate_token() {
  Nonce bytes = random_nonce();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

Mac client_auth_mac(std::string_view token, const Nonce& server_nonce, const Nonce& client_nonce,
                    std::span<const uint8_t> channel_binding) {
  return hmac(token, "rgpu-client", server_nonce, client_nonce, channel_binding);
}

Mac server_auth_mac(std::string_view token, const Nonce& server_nonce, const Nonce& client_nonce,
                    std::span<const uint8_t> channel_binding) {
  return hmac(token, "rgpu-server", client_nonce, server_nonce, channel_binding);
}

bool mac_equal(const Mac& a, const Mac& b) { return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0; }

}  // namespace rgpu
