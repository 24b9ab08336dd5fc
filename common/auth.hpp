// Token authentication: HMAC-SHA256 challenge-response, bound to the TLS session when there is one.
//
// client_mac = HMAC(token, "rgpu-client" || server_nonce || client_nonce || channel_binding)
// server_mac = HMAC(token, "rgpu-server" || client_nonce || server_nonce || channel_binding)
// The server's nonce is fresh for every connection, so a recorded response is worthless on another
// one; channel_binding (the TLS exporter value) makes a relayed handshake fail; server_mac proves to
// the client that the server holds the token as well. The token itself never crosses the wire.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "messages.hpp"

namespace rgpu {

Nonce random_nonce();
// 256-bit random token, as 64 lowercase hex digits.
std::string generate_token();

Mac client_auth_mac(std::string_view token, const Nonce& server_nonce, const Nonce& client_nonce,
                    std::span<const uint8_t> channel_binding);
Mac server_auth_mac(std::string_view token, const Nonce& server_nonce, const Nonce& client_nonce,
                    std::span<const uint8_t> channel_binding);
// Constant-time comparison.
bool mac_equal(const Mac& a, const Mac& b);

}  // namespace rgpu
