#include "local_peer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rgpu {

int create_sealed_memfd(const char* name, size_t size, std::string& error) {
  const int fd = ::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    error = std::string("memfd_create: ") + std::strerror(errno);
    return -1;
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    error = "cannot size a memfd to " + std::to_string(size) + " bytes: " + std::strerror(errno);
  } else if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    error = std::string("cannot seal a memfd: ") + std::strerror(errno);
  } else {
    return fd;
  }
  ::close(fd);
  return -1;
}

bool check_sealed_memfd(int fd, uint64_t size, std::string& error) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    error = errno == EINVAL ? "the shared memory is not a memfd that can be sealed"
                            : std::string("cannot read the shared memory's seals: ") + std::strerror(errno);
    return false;
  }
  if (!(seals & F_SEAL_SHRINK) || !(seals & F_SEAL_GROW)) {
    error = std::string("the shared memory is not sealed against ") +
            (!(seals & F_SEAL_SHRINK) && !(seals & F_SEAL_GROW) ? "shrinking and growing (F_SEAL_SHRINK, F_SEAL_GROW missing)"
             : !(seals & F_SEAL_SHRINK)                         ? "shrinking (F_SEAL_SHRINK missing)"
                                                                : "growing (F_SEAL_GROW missing)") +
            ": its sender could cut it short under the mapping";
    return false;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    error = std::string("cannot stat the shared memory: ") + std::strerror(errno);
    return false;
  }
  if (info.st_size < 0 || static_cast<uint64_t>(info.st_size) < size) {
    error = "the shared memory is " + std::to_string(info.st_size) + " bytes, less than the " + std::to_string(size) +
            " bytes it was announced with";
    return false;
  }
  return true;
}

bool check_peer_uid(int fd, uid_t expected, std::string& error) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0 || length != sizeof cred) {
    error = std::string("cannot learn who is at the other end of the socket (SO_PEERCRED): ") + std::strerror(errno);
    return false;
  }
  if (cred.uid != expected) {
    error = "the process at the other end (pid " + std::to_string(cred.pid) + ") runs as uid " +
            std::to_string(cred.uid) + ", not as uid " + std::to_string(expected);
    return false;
  }
  return true;
}

}  // namespace rgpu
