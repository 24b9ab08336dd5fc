// The application side of the unix socket to the client daemon, shared by the CUDA interpose and
// the Vulkan ICD: connecting, writing frames, reading frames (with the ring's memfd when one
// comes along) and the AppHello/AppAttach -> AppWelcome exchange.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <span>
#include <string>

#include "app_protocol.hpp"
#include "frame.hpp"

namespace rgpu {

// This process's executable, for the daemon's logs ("?" when unknown).
std::string program_path();

// A unix stream socket connected to the client daemon at `path`, or -1 with `error` set. The
// daemon must run as this process's effective uid (SO_PEERCRED, check_peer_uid): a socket that
// another user's process listens on is refused, and *refused (when given) is set then.
int connect_unix(const std::string& path, std::string& error, bool* refused = nullptr);

// Writes every byte of `parts`; false (errno set) when the socket broke.
bool write_all(int fd, std::span<const iovec> parts);

// Reads until `decoder` yields one frame. A file descriptor passed with SCM_RIGHTS goes to
// *received_fd when it is still -1 (else it is closed). Polls for `spin` before it sleeps in
// recvmsg. False when the daemon closed the socket or sent a malformed frame (logged).
bool read_frame(int fd, FrameDecoder& decoder, Frame& frame, int* received_fd,
                std::chrono::microseconds spin = std::chrono::microseconds(0));
// The same, giving up at `deadline`: what arrived of a frame by then stays in `decoder`.
enum class ReadResult { Frame, Closed, TimedOut };
ReadResult read_frame_until(int fd, FrameDecoder& decoder, Frame& frame, int* received_fd,
                            std::chrono::steady_clock::time_point deadline,
                            std::chrono::microseconds spin = std::chrono::microseconds(0));

// Sends the first frame of a connection (AppHello or AppAttach, encoded) and reads the daemon's
// AppWelcome with the ring's memfd, which must be sealed against resizing and hold the ring size
// the welcome announces (check_sealed_memfd). False with `error` saying why; no descriptor is left
// open then.
bool exchange_hello(int fd, FrameDecoder& decoder, std::span<const uint8_t> hello_frame, AppWelcomeMsg& welcome,
                    int& ring_fd, std::string& error);

}  // namespace rgpu
