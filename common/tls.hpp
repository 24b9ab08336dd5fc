// TLS 1.3 through OpenSSL, with kernel TLS offload where the kernel provides it.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace rgpu {

class TlsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// OpenSSL's queued errors as one line (and clears the queue).
std::string openssl_errors();

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// Server side: TLS 1.3 only, no session tickets (nothing here resumes sessions), no kTLS (see
// tls_rekey.hpp). Throws TlsError naming the file at fault.
SslCtxPtr make_server_tls_context(const std::string& cert_path, const std::string& key_path);
// Client side: TLS 1.3 only, no kTLS (see tls_rekey.hpp). The server certificate is not checked against a CA:
// the token handshake is bound to this TLS session (auth.hpp), which defeats a man in the middle.
SslCtxPtr make_client_tls_context();

// Writes a self-signed certificate (P-256, valid `days`) and its private key (mode 0600).
void generate_self_signed(const std::string& cert_path, const std::string& key_path, const std::string& common_name,
                          int days = 365);

struct TlsSessionInfo {
  std::string version;
  std::string cipher;
  bool ktls_send = false;
  bool ktls_recv = false;
  std::string describe() const;
};
TlsSessionInfo tls_session_info(SSL* ssl);

// 32 bytes of RFC 5705 exporter output that both ends of this TLS session share (channel binding).
std::vector<uint8_t> tls_channel_binding(SSL* ssl);

// Whether this kernel offers the "tls" upper-layer protocol at all.
bool kernel_tls_available();

}  // namespace rgpu
