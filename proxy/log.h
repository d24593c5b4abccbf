// One log line per event: time, level, event name, then key=value fields,
// so an operator can grep for a session, a table or a reason; or the same
// as one JSON object per line, for log pipelines.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace pgshift::routing {
enum class LogFormat;  // routing/config.h
}

namespace pgshift::proxy {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

void SetLogLevel(LogLevel level);
void SetLogFormat(routing::LogFormat format);
bool LogEnabled(LogLevel level);

using LogField = std::pair<std::string_view, std::string_view>;
void LogEvent(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);

}  // namespace pgshift::proxy
