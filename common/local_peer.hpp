// What crosses between processes of this machine, checked as if the other side were hostile (another
// local user, a malicious application): shared-memory descriptors and unix-socket peers.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace rgpu {

// A memfd of `size` bytes sealed against resizing (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), for
// sharing with a less trusted process: whoever holds it can neither shrink it under our mapping
// (SIGBUS on our next access) nor grow it, nor take the seals away. -1 with `error` set otherwise.
int create_sealed_memfd(const char* name, size_t size, std::string& error);

// Whether a memfd that another process handed over is safe to map `size` bytes of: it carries the
// F_SEAL_SHRINK and F_SEAL_GROW seals (so its sender cannot shrink it under the mapping) and is at
// least `size` bytes long. False with `error` naming what is wrong.
bool check_sealed_memfd(int fd, uint64_t size, std::string& error);

// Whether the process at the other end of the unix stream socket `fd` runs as `expected` (its
// effective uid when it connected or listened, SO_PEERCRED). False with `error` saying which uid
// it runs as, or why that could not be learnt. No exception for root: a per-user daemon and its
// applications run as the same user.
bool check_peer_uid(int fd, uid_t expected, std::string& error);

}  // namespace rgpu
