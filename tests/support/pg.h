// Small RAII wrappers over libpq for tests.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pgshift::testing {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// The fields of an error or notice that a client can see.
struct PgError {
  std::string severity, sqlstate, message, detail, hint, position;
  bool operator==(const PgError&) const = default;
};
PgError ErrorOf(const PGresult* result);

// A result's rows as text ("NULL" for null), and its column names.
using Rows = std::vector<std::vector<std::string>>;
Rows RowsOf(const PGresult* result);
std::vector<std::string> ColumnsOf(const PGresult* result);

class PgConn {
 public:
  explicit PgConn(const std::string& conninfo);
  ~PgConn();
  PgConn(PgConn&& other) noexcept : conn_(other.conn_) { other.conn_ = nullptr; }
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  bool ok() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }
  std::string error() const { return conn_ ? PQerrorMessage(conn_) : "no connection"; }
  PGconn* get() const { return conn_; }

  PgResult Exec(const std::string& sql);
  // True when the statement succeeded.
  bool Ok(const std::string& sql);
  // First column of the first row; nullopt on error or no rows.
  std::optional<std::string> Value(const std::string& sql);
  // Every notice received so far.
  const std::vector<PgError>& notices() const { return *notices_; }

 private:
  PGconn* conn_;
  std::unique_ptr<std::vector<PgError>> notices_ = std::make_unique<std::vector<PgError>>();
};

}  // namespace pgshift::testing
