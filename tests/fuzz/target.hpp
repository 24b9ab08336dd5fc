// What the fuzz targets share: how one reports a bug, its start, and its seeds. The seed corpora
// (tests/fuzz/corpus-*) are written by the targets themselves, with the project's own encoders:
// run a target with RGPU_FUZZ_WRITE_SEEDS=<folder> and it writes its seeds there and exits
// (docs/fuzzing.md).
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "frame.hpp"
#include "log.hpp"

namespace rgpu::fuzz {

// A bug the target itself saw (no sanitizer report): a crash for libFuzzer.
[[noreturn]] inline void fail(const char* target, const char* what) {
  std::fprintf(stderr, "%s: %s\n", target, what);
  std::abort();
}

class Seeds {
 public:
  // The folder named by RGPU_FUZZ_WRITE_SEEDS, or none.
  Seeds() : folder_(std::getenv("RGPU_FUZZ_WRITE_SEEDS") ? std::getenv("RGPU_FUZZ_WRITE_SEEDS") : "") {}
  bool wanted() const { return !folder_.empty(); }
  void write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string path = folder_ + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
      std::perror(path.c_str());
      std::exit(1);
    }
  }

 private:
  std::string folder_;
};

// A byte stream of frames (header and payload, never compressed).
class Stream {
 public:
  explicit Stream(uint8_t first) : bytes_{first} {}
  Stream& frame(uint16_t type, std::vector<uint8_t> payload = {}, uint16_t flags = 0, uint64_t request_id = 0) {
    const auto f = encode_frame(type, request_id, payload, flags, Compression::Never);
    bytes_.insert(bytes_.end(), f.begin(), f.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// LLVMFuzzerInitialize's part that every target has: no logs, no SIGPIPE (the targets with
// sockets see peers close first), and the seeds written instead of a run when they are asked for.
template <typename WriteSeeds>
void initialize(WriteSeeds write_seeds) {
  set_log_level(LogLevel::Off);
  ::signal(SIGPIPE, SIG_IGN);
  if (const Seeds seeds; seeds.wanted()) {
    write_seeds(seeds);
    std::exit(0);
  }
}

}  // namespace rgpu::fuzz
