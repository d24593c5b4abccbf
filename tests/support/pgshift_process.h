// pgshift itself, run as a child process with a generated configuration.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

namespace pgshift::testing {

class PgshiftProcess {
 public:
  // `extra_toml` is appended to a config that listens on a free port and
  // points backends.old at 127.0.0.1:`backend_port`; `proxy_settings` goes
  // into [proxy]; `backend_settings` into [backends.old] (with a host of
  // its own, if it names one).
  // `on_spawn` runs with the child's pid as soon as it is started, before
  // pgshift listens.
  PgshiftProcess(int backend_port, const std::string& proxy_settings = "",
                 const std::string& backend_settings = "", const std::string& extra_toml = "",
                 const std::function<void(pid_t)>& on_spawn = nullptr);
  ~PgshiftProcess();

  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string log() const;
  // Whether `text` is in the log within `timeout_ms` (a line may be written
  // just after what the test saw happen).
  bool AwaitLog(const std::string& text, int timeout_ms = 5000) const;
  // The part of the log that explains an exit: a sanitizer report if there
  // is one, else the last 40 lines.
  std::string LogEnd() const;
  // libpq conninfo through pgshift; `extra` is appended.
  std::string ConnInfo(const std::string& extra = "") const;

  // SIGTERM, then waits; returns the exit code (-1 on timeout).
  int Stop(int timeout_ms = 20000);
  // SIGKILL, as a crash would end it; waits for the exit.
  void Kill();
  // Waits for the process to exit on its own (after a signal the test sent).
  int AwaitExit(int timeout_ms = 20000);

  // Replaces the configuration file (same listen port and backend port).
  void RewriteConfig(const std::string& proxy_settings, const std::string& backend_settings,
                     const std::string& extra_toml);
  // Replaces the configuration file with exactly `text`.
  void WriteRawConfig(const std::string& text);
  // SIGHUP, then waits until the log has one more line containing
  // "config_reloaded" or "config_rejected"; returns that line.
  std::string Reload(int timeout_ms = 10000);

 private:
  std::string ConfigText(const std::string& proxy_settings, const std::string& backend_settings,
                         const std::string& extra_toml) const;

  std::string dir_;
  int port_ = 0;
  int backend_port_ = 0;
  pid_t pid_ = -1;
};

// The absolute path of the pgshift binary under test.
std::string PgshiftBinary();

}  // namespace pgshift::testing
