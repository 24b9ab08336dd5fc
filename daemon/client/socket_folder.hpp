// Where the client daemon may put its listening socket. Another local user must not be able to
// take the path over (connect applications to a daemon of its own, or swap the socket), and the
// daemon must not change folders or remove files that are not its own.
#pragma once

#include <string>

namespace rgpu::client {

// Makes `socket_path` ready to bind, or throws std::runtime_error saying why not:
// - folders on the way that do not exist are created with mode 0700 (the daemon's own);
// - the socket's folder must be owned by this process's effective uid and writable by no one else
//   (sticky bit or not): a folder of another user, or a shared one such as /tmp, is refused, and no
//   folder's mode or owner is ever changed;
// - an existing socket_path is removed only when it is a socket owned by this uid (a stale socket
//   of an earlier run); a regular file, a folder, or another user's socket is left alone, refused.
void prepare_socket_path(const std::string& socket_path);

}  // namespace rgpu::client
