#include "tls_rekey.hpp"

#include <openssl/err.h>

#include <cstring>
#include <string>

namespace rgpu {

namespace {
constexpr char kExporterLabel[] = "EXPORTER-rgpu-worker-psk";
constexpr unsigned char kIdentity[] = "rgpu-worker";
// TLS_AES_128_GCM_SHA256: the PSK's hash must be the suite's, and the kernel offloads AES-GCM.
constexpr unsigned char kSuite[] = {0x13, 0x01};

int psk_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

SSL_SESSION* psk_session(SSL* ssl) {
  auto* psk = static_cast<const WorkerPsk*>(SSL_get_ex_data(ssl, psk_index()));
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kSuite);
  if (psk == nullptr || cipher == nullptr) return nullptr;
  SSL_SESSION* session = SSL_SESSION_new();
  if (session == nullptr) return nullptr;
  if (SSL_SESSION_set1_master_key(session, psk->data(), psk->size()) != 1 ||
      SSL_SESSION_set_cipher(session, cipher) != 1 || SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(session);
    return nullptr;
  }
  return session;
}

int use_psk(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len, SSL_SESSION** out) {
  SSL_SESSION* session = psk_session(ssl);
  if (session == nullptr) return 0;
  if (md != nullptr && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(session))) {
    SSL_SESSION_free(session);  // a HelloRetryRequest chose another hash: no PSK fits
    *out = nullptr;
    return 1;
  }
  *id = kIdentity;
  *id_len = sizeof kIdentity - 1;
  *out = session;
  return 1;
}

int find_psk(SSL* ssl, const unsigned char* id, size_t id_len, SSL_SESSION** out) {
  *out = nullptr;
  if (id_len != sizeof kIdentity - 1 || std::memcmp(id, kIdentity, id_len) != 0) return 1;  // unknown: no PSK
  *out = psk_session(ssl);
  return *out != nullptr ? 1 : 0;
}

SslCtxPtr psk_context(bool server) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) throw TlsError("cannot create a TLS context: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_ENABLE_KTLS | SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_ciphersuites(ctx.get(), "TLS_AES_128_GCM_SHA256");
  if (server) {
    SSL_CTX_set_num_tickets(ctx.get(), 0);
    SSL_CTX_set_psk_find_session_callback(ctx.get(), find_psk);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);  // authenticated by the PSK alone
    SSL_CTX_set_psk_use_session_callback(ctx.get(), use_psk);
  }
  return ctx;
}

SslPtr handshake(int fd, const WorkerPsk& psk, bool server) {
  static SslCtxPtr server_ctx = psk_context(true);
  static SslCtxPtr client_ctx = psk_context(false);
  SslPtr ssl(SSL_new(server ? server_ctx.get() : client_ctx.get()));
  if (!ssl) throw TlsError("cannot create a TLS session: " + openssl_errors());
  SSL_set_ex_data(ssl.get(), psk_index(), const_cast<WorkerPsk*>(&psk));
  SSL_set_fd(ssl.get(), fd);
  for (;;) {
    ERR_clear_error();  // SSL_get_error() reads this thread's error queue
    const int ret = server ? SSL_accept(ssl.get()) : SSL_connect(ssl.get());
    if (ret == 1) break;
    const int error = SSL_get_error(ssl.get(), ret);
    const bool want = error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE;
    if (want && errno == EINTR) continue;  // a signal, not a failure
    std::string what = openssl_errors();
    if (want) what = "timed out waiting for the peer";
    if (error == SSL_ERROR_SYSCALL) what = errno == 0 ? "the peer closed the connection" : std::strerror(errno);
    SSL_set_ex_data(ssl.get(), psk_index(), nullptr);
    throw TlsError(std::string("the TLS handshake with the worker's key failed: ") + what);
  }
  SSL_set_ex_data(ssl.get(), psk_index(), nullptr);  // `psk` is the caller's
  // The PSK proves the peer: a handshake that used none (only possible if our callbacks declined)
  // would be unauthenticated.
  if (SSL_session_reused(ssl.get()) != 1) throw TlsError("the TLS handshake with the worker's key did not use it");
  return ssl;
}
}  // namespace

WorkerPsk derive_worker_psk(SSL* first_session) {
  WorkerPsk psk{};
  if (SSL_export_keying_material(first_session, psk.data(), psk.size(), kExporterLabel, sizeof kExporterLabel - 1,
                                 nullptr, 0, 0) != 1)
    throw TlsError("cannot derive the worker's TLS key: " + openssl_errors());
  return psk;
}

SslPtr rekey_as_client(int fd, const WorkerPsk& psk) { return handshake(fd, psk, false); }
SslPtr rekey_as_server(int fd, const WorkerPsk& psk) { return handshake(fd, psk, true); }

}  // namespace rgpu
