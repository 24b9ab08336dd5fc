// Leveled logging to stderr; the level comes from RGPU_LOG (trace|debug|info|warn|error).
#pragma once

#include <cstdarg>
#include <optional>
#include <string>
#include <string_view>

namespace rgpu {

enum class LogLevel { Trace = 0, Debug, Info, Warn, Error, Off };

std::optional<LogLevel> parse_log_level(std::string_view text);
void set_log_level(LogLevel level);
LogLevel log_level();
// Reads RGPU_LOG; an unknown value is reported and the default (info) kept.
void init_logging_from_env();
void set_log_component(const char* component);

// Text a peer chose (a client name, a path), made safe for one log line: control characters,
// backslashes and bytes outside printable ASCII become \xNN; at most `max_length` characters
// are kept (then "...").
std::string printable(std::string_view text, size_t max_length = 256);

void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace rgpu

#define RGPU_LOG_AT(lvl, ...)                                           \
  do {                                                                  \
    if (static_cast<int>(lvl) >= static_cast<int>(::rgpu::log_level())) \
      ::rgpu::log_message(lvl, __VA_ARGS__);                            \
  } while (0)
#define LOG_TRACE(...) RGPU_LOG_AT(::rgpu::LogLevel::Trace, __VA_ARGS__)
#define LOG_DEBUG(...) RGPU_LOG_AT(::rgpu::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) RGPU_LOG_AT(::rgpu::LogLevel::Info, __VA_ARGS__)
#define LOG_WARN(...) RGPU_LOG_AT(::rgpu::LogLevel::Warn, __VA_ARGS__)
#define LOG_ERROR(...) RGPU_LOG_AT(::rgpu::LogLevel::Error, __VA_ARGS__)
