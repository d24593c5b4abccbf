#include "tests/support/pgshift_process.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/process.h"

namespace pgshift::testing {

std::string PgshiftBinary() { return PGSHIFT_BINARY; }

PgshiftProcess::PgshiftProcess(int backend_port, const std::string& proxy_settings,
                               const std::string& backend_settings,
                               const std::string& extra_toml,
                               const std::function<void(pid_t)>& on_spawn)
    : dir_(MakeTempDir("pgshift-proxy")), port_(FreePort()), backend_port_(backend_port) {
  std::string config_path = dir_ + "/pgshift.toml";
  RewriteConfig(proxy_settings, backend_settings, extra_toml);
  std::string log_path = dir_ + "/pgshift.log";
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    std::string binary = PgshiftBinary();
    execl(binary.c_str(), binary.c_str(), "serve", "--config", config_path.c_str(),
          "--log-level", "debug", static_cast<char*>(nullptr));
    _exit(127);
  }
  if (on_spawn) on_spawn(pid_);
  if (!WaitForPort(port_, 20000)) {
    std::fprintf(stderr, "pgshift did not start listening; end of its log:\n%s\n", LogEnd().c_str());
    kill(pid_, SIGKILL);
    WaitForExit(pid_, 5000);
    pid_ = -1;
  }
}

PgshiftProcess::~PgshiftProcess() {
  // Every test that runs pgshift also checks it survived: a crash or a
  // sanitizer report fails the test that caused it.
  if (pid_ > 0) {
    int code = Stop();
    EXPECT_EQ(code, 0) << "pgshift did not exit cleanly; end of its log:\n" << LogEnd();
  }
  RemoveTree(dir_);
}

std::string PgshiftProcess::log() const { return ReadFile(dir_ + "/pgshift.log"); }

bool PgshiftProcess::AwaitLog(const std::string& text, int timeout_ms) const {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (log().find(text) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string PgshiftProcess::LogEnd() const {
  // A debug log runs to thousands of lines; a sanitizer report, when there
  // is one, is what explains the exit.
  std::string text = log();
  for (const char* marker : {"ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer"}) {
    size_t at = text.find(marker);
    if (at != std::string::npos) return text.substr(text.rfind('\n', at) + 1);
  }
  if (text.empty()) return "(the log is empty)";
  size_t start = text.size();
  for (int lines = 0; lines <= 40 && start != std::string::npos && start > 0; ++lines) {
    start = text.rfind('\n', start - 1);
  }
  return start == std::string::npos ? text : text.substr(start + 1);
}

std::string PgshiftProcess::ConfigText(const std::string& proxy_settings,
                                       const std::string& backend_settings,
                                       const std::string& extra_toml) const {
  // backend_settings may name the host itself.
  std::string host =
      backend_settings.find("host =") == std::string::npos ? "host = \"127.0.0.1\"\n" : "";
  return "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\nworkers = 2\n" +
         proxy_settings + "\n\n[backends.old]\n" + host + "port = " +
         std::to_string(backend_port_) + "\n" + backend_settings + "\n\n" + extra_toml + "\n";
}

void PgshiftProcess::RewriteConfig(const std::string& proxy_settings,
                                   const std::string& backend_settings,
                                   const std::string& extra_toml) {
  WriteRawConfig(ConfigText(proxy_settings, backend_settings, extra_toml));
}

void PgshiftProcess::WriteRawConfig(const std::string& text) {
  WriteFile(dir_ + "/pgshift.toml", text);
}

std::string PgshiftProcess::Reload(int timeout_ms) {
  auto count = [](const std::string& log) {
    size_t n = 0;
    for (const char* marker : {"event=config_reloaded", "event=config_rejected"}) {
      for (size_t at = log.find(marker); at != std::string::npos; at = log.find(marker, at + 1)) ++n;
    }
    return n;
  };
  size_t before = count(log());
  kill(pid_, SIGHUP);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string now = log();
    if (count(now) > before) {
      // The newest verdict, whole line.
      size_t reloaded = now.rfind("event=config_reloaded");
      size_t rejected = now.rfind("event=config_rejected");
      size_t at = reloaded == std::string::npos   ? rejected
                  : rejected == std::string::npos ? reloaded
                                                  : std::max(reloaded, rejected);
      size_t start = now.rfind('\n', at);
      size_t end = now.find('\n', at);
      return now.substr(start == std::string::npos ? 0 : start + 1,
                        end == std::string::npos ? std::string::npos : end - start - 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "";
}

std::string PgshiftProcess::ConnInfo(const std::string& extra) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) +
         " dbname=postgres user=postgres sslmode=disable connect_timeout=10 " + extra;
}

int PgshiftProcess::Stop(int timeout_ms) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int code = WaitForExit(pid_, timeout_ms);
  pid_ = -1;
  return code;
}

void PgshiftProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  WaitForExit(pid_, 20000);
  pid_ = -1;
}

int PgshiftProcess::AwaitExit(int timeout_ms) {
  if (pid_ <= 0) return -1;
  int code = WaitForExit(pid_, timeout_ms);
  pid_ = -1;
  return code;
}

}  // namespace pgshift::testing
