#include "tests/support/pg.h"

namespace pgshift::testing {

namespace {

std::string Field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v ? v : "";
}

}  // namespace

PgError ErrorOf(const PGresult* r) {
  return PgError{Field(r, PG_DIAG_SEVERITY), Field(r, PG_DIAG_SQLSTATE),
                 Field(r, PG_DIAG_MESSAGE_PRIMARY), Field(r, PG_DIAG_MESSAGE_DETAIL),
                 Field(r, PG_DIAG_MESSAGE_HINT), Field(r, PG_DIAG_STATEMENT_POSITION)};
}

PgConn::PgConn(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
  PQsetNoticeReceiver(
      conn_,
      [](void* arg, const PGresult* r) {
        static_cast<std::vector<PgError>*>(arg)->push_back(ErrorOf(r));
      },
      notices_.get());
}

PgConn::~PgConn() {
  if (conn_) PQfinish(conn_);
}

PgResult PgConn::Exec(const std::string& sql) { return PgResult(PQexec(conn_, sql.c_str())); }

bool PgConn::Ok(const std::string& sql) {
  PgResult r = Exec(sql);
  auto status = PQresultStatus(r.get());
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

std::optional<std::string> PgConn::Value(const std::string& sql) {
  PgResult r = Exec(sql);
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) < 1) return std::nullopt;
  if (PQgetisnull(r.get(), 0, 0)) return std::nullopt;
  return std::string(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0));
}

Rows RowsOf(const PGresult* result) {
  Rows rows;
  for (int i = 0; i < PQntuples(result); ++i) {
    std::vector<std::string> row;
    for (int j = 0; j < PQnfields(result); ++j) {
      row.push_back(PQgetisnull(result, i, j) ? "NULL" : PQgetvalue(result, i, j));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<std::string> ColumnsOf(const PGresult* result) {
  std::vector<std::string> names;
  for (int j = 0; j < PQnfields(result); ++j) names.push_back(PQfname(result, j));
  return names;
}

}  // namespace pgshift::testing
