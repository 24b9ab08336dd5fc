// What the fuzz targets share: how one reports a bug, its start, and its seeds. The seed corpora
// (tests/fuzz/corpus-*) are written by the targets themselves, with the project's own encoders:
// run a target with RGPU_FUZZ_WRITE_SEEDS=<folder> and it writes its seeds there and exits
// (docs/fuzzing.md).
#pragma once

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <span>
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

// Inputs that are sequences of calls (fuzz_cuda_calls, fuzz_vulkan_replay). Each call: its id (a
// byte, an index into the target's table of ids, or 0xff followed by a raw u32 id), the target's
// flag bytes, a u16 length and that many argument bytes (fewer where the input ends first).
struct InputCall {
  uint32_t id = 0;
  std::span<const uint8_t> flags;
  std::span<const uint8_t> args;
};

// Takes the next call off `in`; none when too few bytes are left.
inline std::optional<InputCall> next_call(std::span<const uint8_t>& in, std::span<const uint32_t> ids,
                                          size_t flag_bytes) {
  const size_t at = !in.empty() && in[0] == 0xff ? 5 : 1;
  if (in.size() < at + flag_bytes + 2) return std::nullopt;
  InputCall call;
  if (at == 5) std::memcpy(&call.id, in.data() + 1, 4);
  else call.id = ids[in[0] % ids.size()];
  call.flags = in.subspan(at, flag_bytes);
  uint16_t length;
  std::memcpy(&length, in.data() + at + flag_bytes, 2);
  in = in.subspan(at + flag_bytes + 2);
  call.args = in.first(std::min<size_t>(length, in.size()));
  in = in.subspan(call.args.size());
  return call;
}

// A call in that form, with a raw id (seeds do not depend on the tables).
inline void put_call(std::vector<uint8_t>& out, uint32_t id, std::initializer_list<uint8_t> flags,
                     std::span<const uint8_t> args) {
  const uint16_t length = static_cast<uint16_t>(args.size());
  out.push_back(0xff);
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&id), reinterpret_cast<const uint8_t*>(&id) + 4);
  out.insert(out.end(), flags.begin(), flags.end());
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&length), reinterpret_cast<const uint8_t*>(&length) + 2);
  out.insert(out.end(), args.begin(), args.end());
}

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
