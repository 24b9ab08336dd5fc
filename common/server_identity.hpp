// How a client knows that the TLS peer is the server it meant to reach: a certificate authority
// (chain and host name checked), a pinned fingerprint of the server's public key, or the
// fingerprint it saw the first time, kept in a known-servers file the way ssh keeps known_hosts.
#pragma once

#include <openssl/ssl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "net.hpp"

namespace rgpu {

struct ServerTrust {
  std::string ca_path;        // PEM file of the CAs that may sign the server's certificate
  std::string fingerprint;    // "SHA256:<64 hex digits>" of the server's public key (normalized)
  std::string known_servers;  // file of fingerprints seen before; empty: none is kept
  // Whether a server that the file does not list yet is trusted (and recorded) on first contact.
  bool trust_on_first_use = true;
};

// The server is not the one this client trusts; what() says what differs and what to do.
class IdentityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "SHA256:" and the SHA-256 of the DER SubjectPublicKeyInfo, in lowercase hex: it stays the same
// when a certificate is renewed with the same key. Throws IdentityError.
std::string public_key_fingerprint(X509* certificate);
// The same for the first certificate of a PEM file (what `rgpu server` and `rgpu token` print).
std::string certificate_file_fingerprint(const std::string& cert_path);
// Accepts "SHA256:" followed by 64 hex digits, with or without colons, in either case; nullopt
// for anything else.
std::optional<std::string> normalize_fingerprint(std::string_view text);

// Where known servers are kept by default: $XDG_CONFIG_HOME/rgpu/known_servers, or
// ~/.config/rgpu/known_servers; empty when neither variable is set.
std::string default_known_servers_path();

// Checks the server's certificate on an established TLS connection against `trust` (a pinned
// fingerprint first, then the CA, then the known-servers file, which a first contact may add
// to). Returns how the server was recognized, for the log; throws IdentityError.
std::string check_server_identity(SSL* ssl, const HostPort& server, const ServerTrust& trust);

}  // namespace rgpu
