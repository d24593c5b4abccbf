#include "tests/support/pgshift_process.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include <gtest/gtest.h>

#include "tests/support/process.h"

namespace pgshift::testing {

std::string PgshiftBinary() { return PGSHIFT_BINARY; }

PgshiftProcess::PgshiftProcess(int backend_port, const std::string& proxy_settings,
                               const std::string& backend_settings,
                               const std::string& extra_toml)
    : dir_(MakeTempDir("pgshift-proxy")), port_(FreePort()) {
  std::string config = "[proxy]\nlisten = \"127.0.0.1:" + std::to_string(port_) +
                       "\"\nworkers = 2\n" + proxy_settings +
                       "\n\n[backends.old]\nhost = \"127.0.0.1\"\nport = " +
                       std::to_string(backend_port) + "\n" + backend_settings + "\n\n" +
                       extra_toml + "\n";
  std::string config_path = dir_ + "/pgshift.toml";
  WriteFile(config_path, config);
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
  if (!WaitForPort(port_, 20000)) {
    std::fprintf(stderr, "pgshift did not start listening; log:\n%s\n", log().c_str());
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
    EXPECT_EQ(code, 0) << "pgshift did not exit cleanly; log:\n" << log();
  }
  RemoveTree(dir_);
}

std::string PgshiftProcess::log() const { return ReadFile(dir_ + "/pgshift.log"); }

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

}  // namespace pgshift::testing
