#include "socket_folder.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace rgpu::client {

namespace {
std::string octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

const char* kind_of(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISFIFO(mode)) return "a FIFO";
  return "a special file";
}

// Creates `folder` and the folders above it that are missing, each with mode 0700.
void create_missing(const std::filesystem::path& folder) {
  if (folder.empty()) return;
  struct stat info {};
  if (::stat(folder.c_str(), &info) == 0) return;
  if (errno != ENOENT) throw std::runtime_error("cannot look at " + folder.string() + ": " + std::strerror(errno));
  if (folder.has_parent_path() && folder.parent_path() != folder) create_missing(folder.parent_path());
  // EEXIST: made meanwhile, by someone; the checks that follow judge it as any existing folder.
  if (::mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create " + folder.string() + ": " + std::strerror(errno));
}
}  // namespace

void prepare_socket_path(const std::string& socket_path) {
  const std::filesystem::path path(socket_path);
  std::filesystem::path folder = path.parent_path();
  if (folder.empty()) folder = ".";
  create_missing(folder);

  const uid_t uid = ::geteuid();
  struct stat info {};
  if (::stat(folder.c_str(), &info) != 0)
    throw std::runtime_error("cannot look at " + folder.string() + ": " + std::strerror(errno));
  if (!S_ISDIR(info.st_mode)) throw std::runtime_error(folder.string() + " is not a folder");
  if (info.st_uid != uid)
    throw std::runtime_error("the socket folder " + folder.string() + " belongs to uid " + std::to_string(info.st_uid) +
                             ", not to this daemon's uid " + std::to_string(uid) +
                             ": another user could replace the socket; choose a folder of your own (mode 0700)");
  // Sticky or not: in a folder others may write, another user can take the path first.
  if (info.st_mode & (S_IWGRP | S_IWOTH))
    throw std::runtime_error("the socket folder " + folder.string() + " (mode " + octal(info.st_mode) +
                             ") is writable by group or others: another user could take the socket's path; make "
                             "it 0700 (the daemon does not change it)");

  if (::lstat(socket_path.c_str(), &info) != 0) {
    if (errno == ENOENT) return;
    throw std::runtime_error("cannot look at " + socket_path + ": " + std::strerror(errno));
  }
  if (!S_ISSOCK(info.st_mode) || info.st_uid != uid)
    throw std::runtime_error(socket_path + " exists and is not a stale socket of this user (it is " +
                             kind_of(info.st_mode) + " of uid " + std::to_string(info.st_uid) +
                             "): it is left as it is; remove it or choose another --socket");
  if (::unlink(socket_path.c_str()) != 0 && errno != ENOENT)
    throw std::runtime_error("cannot remove the stale socket " + socket_path + ": " + std::strerror(errno));
}

}  // namespace rgpu::client
