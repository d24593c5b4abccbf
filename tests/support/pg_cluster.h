// A throwaway PostgreSQL cluster for integration tests: initdb into a temp
// directory, a free port, TLS on, a trust superuser and password users for
// each auth method; stopped and removed on destruction.
#pragma once

#include <string>

namespace pgshift::testing {

class PgCluster {
 public:
  // Users the cluster's pg_hba.conf holds to a method (password = name + "_pw"):
  static constexpr const char* kScramUser = "scram_user";  // scram-sha-256
  static constexpr const char* kMd5User = "md5_user";      // md5
  static constexpr const char* kTlsUser = "tls_user";      // trust, but only over TLS
  // Everyone else: trust. The superuser is "postgres".

  // `extra_conf` is appended to postgresql.conf.
  explicit PgCluster(std::string extra_conf = "");
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  bool ok() const { return ok_; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // libpq conninfo for a direct connection; `extra` is appended.
  std::string ConnInfo(const std::string& extra = "") const;
  // Stops the server at once (as a crash would), and starts it again (a
  // running server is left as it is).
  bool Stop();
  bool Restart();
  // Freezes the postmaster (SIGSTOP, by the PID in its postmaster.pid): a
  // new connection then hangs before its startup is answered, as with a
  // server that stopped answering; sessions already open go on. Resume
  // thaws it.
  bool Pause();
  bool Resume();

 private:
  bool Start();
  std::string AsPostgres(const std::string& command) const;
  int PostmasterPid() const;

  std::string extra_conf_;
  std::string dir_;
  int port_ = 0;
  bool ok_ = false;
};

}  // namespace pgshift::testing
