#include "tests/support/pg_cluster.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tests/support/pg.h"
#include "tests/support/process.h"

namespace pgshift::testing {

namespace {

constexpr const char* kBin = "/usr/lib/postgresql/15/bin";

}  // namespace

PgCluster::PgCluster(std::string extra_conf)
    : extra_conf_(std::move(extra_conf)), dir_(MakeTempDir("pgshift-pg")), port_(FreePort()) {
  ok_ = Start();
  if (!ok_) std::fprintf(stderr, "PgCluster failed to start; log:\n%s\n", ReadFile(dir_ + "/log").c_str());
}

PgCluster::~PgCluster() {
  Stop();
  RemoveTree(dir_);
}

bool PgCluster::Stop() {
  return RunCommand(AsPostgres(std::string(kBin) + "/pg_ctl -D " + dir_ +
                               "/data -m immediate -w stop")) == 0;
}

bool PgCluster::Restart() {
  if (RunCommand(AsPostgres(std::string(kBin) + "/pg_ctl -D " + dir_ + "/data status")) == 0) {
    return true;  // running already
  }
  return RunCommand(AsPostgres(std::string(kBin) + "/pg_ctl -D " + dir_ + "/data -l " + dir_ +
                               "/log -w -t 60 start")) == 0;
}

int PgCluster::PostmasterPid() const {
  std::string pid = ReadFile(dir_ + "/data/postmaster.pid");
  return pid.empty() ? 0 : std::atoi(pid.c_str());
}

bool PgCluster::Pause() {
  int pid = PostmasterPid();
  return pid > 0 && kill(pid, SIGSTOP) == 0;
}

bool PgCluster::Resume() {
  int pid = PostmasterPid();
  return pid > 0 && kill(pid, SIGCONT) == 0;
}

// initdb and postgres refuse to run as root.
std::string PgCluster::AsPostgres(const std::string& command) const {
  return geteuid() == 0 ? "runuser -u postgres -- " + command : command;
}

std::string PgCluster::ConnInfo(const std::string& extra) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) +
         " dbname=postgres user=postgres connect_timeout=10 " + extra;
}

bool PgCluster::Start() {
  if (dir_.empty()) return false;
  std::string log = dir_ + "/log";
  if (geteuid() == 0) RunCommand("chown postgres " + dir_);
  if (RunCommand(AsPostgres(std::string(kBin) + "/initdb -D " + dir_ +
                            "/data -U postgres --auth=trust --no-sync -E UTF8 --locale=C"),
                 log) != 0) {
    return false;
  }
  // TLS material for the backend side.
  std::string cert = dir_ + "/data/server.crt", key = dir_ + "/data/server.key";
  if (RunCommand(AsPostgres("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                            "-keyout " + key + " -out " + cert),
                 log) != 0) {
    return false;
  }
  RunCommand(AsPostgres("chmod 600 " + key));
  std::string conf = ReadFile(dir_ + "/data/postgresql.conf");
  conf += "\nport = " + std::to_string(port_) +
          "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '" + dir_ +
          "'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300"
          "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" + extra_conf_ +
          "\n";
  WriteFile(dir_ + "/data/postgresql.conf", conf);
  WriteFile(dir_ + "/data/pg_hba.conf",
            "local all all trust\n"
            "host all scram_user 127.0.0.1/32 scram-sha-256\n"
            "host all md5_user 127.0.0.1/32 md5\n"
            "host all clear_user 127.0.0.1/32 password\n"
            "hostssl all tls_user 127.0.0.1/32 trust\n"
            "host all tls_user 127.0.0.1/32 reject\n"
            "host all all 127.0.0.1/32 trust\n");
  if (geteuid() == 0) RunCommand("chown -R postgres " + dir_);
  if (RunCommand(AsPostgres(std::string(kBin) + "/pg_ctl -D " + dir_ + "/data -l " + log +
                            " -w -t 60 start"),
                 log) != 0) {
    return false;
  }
  PgConn admin(ConnInfo());
  if (!admin.ok()) return false;
  return admin.Ok("CREATE ROLE scram_user LOGIN SUPERUSER PASSWORD 'scram_user_pw'") &&
         admin.Ok("SET password_encryption = 'md5'") &&
         admin.Ok("CREATE ROLE md5_user LOGIN SUPERUSER PASSWORD 'md5_user_pw'") &&
         admin.Ok("CREATE ROLE tls_user LOGIN SUPERUSER") &&
         admin.Ok("CREATE ROLE clear_user LOGIN SUPERUSER PASSWORD 'clear_user_pw'");
}

}  // namespace pgshift::testing
