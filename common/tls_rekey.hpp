// An application's connections move from the server's main process, which authenticated them, to
// the worker process that runs the application's session. A TLS session cannot move between
// processes, so both ends derive a key from the first session (its exporter) and run a second TLS
// 1.3 handshake on the same socket with that key as external PSK (with ECDHE, so forward secret).
// The worker thus holds neither the server's certificate key nor the first session's keys, and
// the second session may be offloaded to the kernel (kTLS), which the first never is.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstdint>

#include "tls.hpp"

namespace rgpu {

using WorkerPsk = std::array<uint8_t, 32>;

// The key both ends derive from the first TLS session once it has carried CudaOpened/CudaJoined/
// VulkanOpened. Throws TlsError.
WorkerPsk derive_worker_psk(SSL* first_session);

// The second handshake on a connected blocking socket, with SO_RCVTIMEO/SO_SNDTIMEO as its time
// limit. Throw TlsError naming what failed; the socket then carries nothing more.
SslPtr rekey_as_client(int fd, const WorkerPsk& psk);
SslPtr rekey_as_server(int fd, const WorkerPsk& psk);

}  // namespace rgpu
