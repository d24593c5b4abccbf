// A blocking libpq connection for the migration commands (backfill,
// verify), which run outside the proxy's event loop.
#pragma once

#include <libpq-fe.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "routing/config.h"

namespace pgshift::migration {

// Rows as text; nullopt is NULL.
using Row = std::vector<std::optional<std::string>>;

struct QueryRows {
  std::vector<Row> rows;
  std::string tag;
};

class PgClient {
 public:
  // Connects to `backend` with its configured dbname and user (both
  // required) and password (or the [[users]] password of that user). The
  // session runs with TimeZone UTC, ISO dates and exact floats, so that
  // values compare as text across servers.
  static absl::StatusOr<PgClient> Connect(const routing::Config& config,
                                          const routing::BackendConfig& backend,
                                          std::string_view name, std::string_view application);

  PgClient(PgClient&& other) noexcept : conn_(other.conn_), name_(std::move(other.name_)) {
    other.conn_ = nullptr;
  }
  PgClient& operator=(PgClient&&) = delete;
  PgClient(const PgClient&) = delete;
  ~PgClient();

  // Runs one statement with text parameters (nullopt = NULL). A server
  // error comes back with its SQLSTATE and message, naming the backend.
  absl::StatusOr<QueryRows> Exec(const std::string& sql, const std::vector<std::optional<std::string>>& params = {});
  // The same, for statements whose rows do not matter.
  absl::Status Run(const std::string& sql, const std::vector<std::optional<std::string>>& params = {});

  const std::string& name() const { return name_; }
  // As server_version_num: 150004 for 15.4.
  int server_version() const { return PQserverVersion(conn_); }

  // Runs `copy_out` (a COPY ... TO STDOUT) here and `copy_in` (a COPY ...
  // FROM STDIN) on `to`, relaying the data as it comes, and returns how
  // many rows `to` took. A failure on either side ends both COPYs; the
  // callers' transactions then roll back.
  absl::StatusOr<int64_t> CopyTo(const std::string& copy_out, PgClient& to,
                                 const std::string& copy_in);

 private:
  PgClient(PGconn* conn, std::string name) : conn_(conn), name_(std::move(name)) {}
  // The status of a failed result (and clears it), naming the backend.
  absl::Status Failed(PGresult* r);
  // Reads results up to the end of the command; the last one's error, if any.
  absl::Status Finish();
  PGconn* conn_;
  std::string name_;
};

// The SQLSTATE of a server's error, carried by the status PgClient made of
// it (never read back from its text): "" for any other status, a status
// rewrapped with more words included, so that only the error itself is
// ever retried on its code.
inline constexpr char kSqlStatePayload[] = "pgshift/sqlstate";
std::string SqlStateOf(const absl::Status& status);

}  // namespace pgshift::migration
