// pgshift: a PostgreSQL wire-protocol proxy for table migrations.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "common/strings.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "routing/config.h"

namespace {

constexpr std::string_view kUsage = R"(pgshift: a PostgreSQL proxy that moves tables without downtime

Usage:
  pgshift serve --config FILE [--log-level debug|info|warning|error]
      Run the proxy.
  pgshift check-config --config FILE
      Validate a configuration file; exits 1 and lists every problem.
  pgshift --help
      This text.

Signals (serve): SIGHUP reads the configuration file again; a valid file
whose phase steps are allowed applies to transactions that start after it,
anything else is rejected with a log line and the running configuration
stays. SIGTERM or SIGINT stops accepting clients, lets sessions finish their
transactions for up to proxy.shutdown_timeout seconds, then exits 0.
)";

struct Options {
  std::string command;
  std::string config;
  std::string log_level = "info";
};

bool ParseOptions(int argc, char** argv, Options& o) {
  if (argc < 2) return false;
  o.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (arg == "--config") {
      if (!value(o.config)) return false;
    } else if (arg == "--log-level") {
      if (!value(o.log_level)) return false;
    } else {
      std::fprintf(stderr, "pgshift: unknown option \"%s\"\n", argv[i]);
      return false;
    }
  }
  return true;
}

bool SetLevel(std::string_view name) {
  using pgshift::proxy::LogLevel;
  if (name == "debug") pgshift::proxy::SetLogLevel(LogLevel::kDebug);
  else if (name == "info") pgshift::proxy::SetLogLevel(LogLevel::kInfo);
  else if (name == "warning") pgshift::proxy::SetLogLevel(LogLevel::kWarning);
  else if (name == "error") pgshift::proxy::SetLogLevel(LogLevel::kError);
  else return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
                    std::strcmp(argv[1], "help") == 0)) {
    std::fputs(kUsage.data(), stdout);
    return 0;
  }
  if (!ParseOptions(argc, argv, options) ||
      (options.command != "serve" && options.command != "check-config")) {
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  if (options.config.empty()) {
    std::fprintf(stderr, "pgshift %s: --config FILE is required\n", options.command.c_str());
    return 2;
  }
  if (!SetLevel(options.log_level)) {
    std::fprintf(stderr, "pgshift: --log-level must be debug, info, warning or error\n");
    return 2;
  }
  auto config = pgshift::routing::LoadConfigFile(options.config);
  if (!config.ok()) {
    std::fprintf(stderr, "pgshift: invalid configuration:\n%s\n",
                 std::string(pgshift::MessageOf(config.status())).c_str());
    return 1;
  }
  if (options.command == "check-config") {
    std::printf("%s: configuration is valid\n", options.config.c_str());
    return 0;
  }
  pgshift::proxy::Server server(options.config, *config);
  return server.Run();
}
