#include "proxy/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "common/json.h"
#include "common/strings.h"
#include "routing/config.h"

namespace pgshift::proxy {

namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<routing::LogFormat> g_format{routing::LogFormat::kText};
std::mutex g_mutex;

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARNING";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

// Quotes a value that would otherwise be ambiguous in key=value form.
void AppendValue(std::string& line, std::string_view value) {
  bool plain = !value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\n' || c == '\\') plain = false;
  }
  if (plain) {
    line.append(value);
    return;
  }
  line.push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') line.push_back('\\');
    if (c == '\n') {
      line.append("\\n");
      continue;
    }
    line.push_back(c);
  }
  line.push_back('"');
}

}  // namespace

void SetLogLevel(LogLevel level) { g_level = level; }
void SetLogFormat(routing::LogFormat format) { g_format = format; }
bool LogEnabled(LogLevel level) { return level >= g_level.load(std::memory_order_relaxed); }

void LogEvent(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm;
  gmtime_r(&t, &tm);
  char stamp[96];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  std::string line;
  if (g_format.load(std::memory_order_relaxed) == routing::LogFormat::kJson) {
    line = StrCat("{\"time\":", JsonString(stamp), ",\"level\":", JsonString(LevelName(level)),
                  ",\"event\":", JsonString(event));
    for (const auto& [key, value] : fields)
      line += StrCat(",", JsonString(key), ":", JsonString(value));
    line.push_back('}');
  } else {
    line = StrCat(std::string_view(stamp), " ", LevelName(level), " event=", event);
    for (const auto& [key, value] : fields) {
      line += StrCat(" ", key, "=");
      AppendValue(line, value);
    }
  }
  line.push_back('\n');
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace pgshift::proxy
