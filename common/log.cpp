#include "log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace rgpu {
namespace {
std::atomic<LogLevel> g_level{LogLevel::Info};
const char* g_component = "rgpu";
std::mutex g_write_mutex;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Trace: return "TRACE";
    case LogLevel::Debug: return "DEBUG";
    case LogLevel::Info: return "INFO";
    case LogLevel::Warn: return "WARN";
    case LogLevel::Error: return "ERROR";
    case LogLevel::Off: return "OFF";
  }
  return "?";
}
}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view text) {
  if (text == "trace") return LogLevel::Trace;
  if (text == "debug") return LogLevel::Debug;
  if (text == "info") return LogLevel::Info;
  if (text == "warn" || text == "warning") return LogLevel::Warn;
  if (text == "error") return LogLevel::Error;
  if (text == "off") return LogLevel::Off;
  return std::nullopt;
}

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }
LogLevel log_level() { return g_level.load(std::memory_order_relaxed); }
void set_log_component(const char* component) { g_component = component; }

void init_logging_from_env() {
  const char* env = std::getenv("RGPU_LOG");
  if (env == nullptr || *env == '\0') return;
  if (auto level = parse_log_level(env)) {
    set_log_level(*level);
  } else {
    log_message(LogLevel::Warn,
                "RGPU_LOG=%s is not a log level (use trace, debug, info, warn, error or off); keeping info",
                env);
  }
}

void log_message(LogLevel level, const char* fmt, ...) {
  char body[2048];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(body, sizeof body, fmt, args);
  va_end(args);

  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &utc);

  std::lock_guard lock(g_write_mutex);
  std::fprintf(stderr, "%s.%03ld %-5s %s: %s\n", stamp, now.tv_nsec / 1000000, level_name(level), g_component,
               body);
}

std::string printable(std::string_view text, size_t max_length) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == max_length) return out + "...";
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char escape[5];
      std::snprintf(escape, sizeof escape, "\\x%02x", c);
      out += escape;
    }
  }
  return out;
}

}  // namespace rgpu
