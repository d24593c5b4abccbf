#include "migration/pg_client.h"

#include <openssl/x509.h>

#include "absl/strings/cord.h"
#include "common/strings.h"

namespace pgshift::migration {

absl::StatusOr<PgClient> PgClient::Connect(const routing::Config& config,
                                           const routing::BackendConfig& backend,
                                           std::string_view name, std::string_view application) {
  if (!backend.dbname || !backend.user) {
    return absl::InvalidArgumentError(
        StrCat("backends.", name, " needs dbname and user for this command"));
  }
  std::string password;
  if (backend.password) {
    password = *backend.password;
  } else if (const routing::UserConfig* u = config.FindUser(*backend.user)) {
    password = u->password;
  }
  std::string port = StrCat(backend.endpoint.port);
  std::string sslmode(routing::SslModeName(backend.sslmode));
  // libpq 15 reads sslrootcert as a file name only: "system" is OpenSSL's
  // default CA file.
  std::string rootcert = backend.sslrootcert == "system" ? X509_get_default_cert_file()
                                                         : backend.sslrootcert;
  std::string app(application);
  const char* keys[] = {"host",     "port",    "dbname",           "user",
                        "password", "sslmode", "application_name", "options",
                        "connect_timeout", "sslrootcert", nullptr};
  std::string timeout = StrCat(static_cast<int>(config.proxy.connect_timeout_s));
  const char* values[] = {backend.endpoint.host.c_str(),
                          port.c_str(),
                          backend.dbname->c_str(),
                          backend.user->c_str(),
                          password.empty() ? nullptr : password.c_str(),
                          sslmode.c_str(),
                          app.c_str(),
                          "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 "
                          "-c bytea_output=hex -c IntervalStyle=postgres",
                          timeout.c_str(),
                          rootcert.empty() ? nullptr : rootcert.c_str(),
                          nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 0);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string why = conn ? PQerrorMessage(conn) : "out of memory";
    if (conn) PQfinish(conn);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return absl::UnavailableError(StrCat("cannot connect to backend ", name, " (",
                                         backend.endpoint.host, ":", backend.endpoint.port,
                                         "): ", why));
  }
  // Notices ("already exists, skipping") are not the operator's business.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  PgClient client(conn, std::string(name));
  // A command killed while its statement waits (on a lock, say) leaves a
  // backend that would go on waiting, holding the batch's row locks, until
  // it next writes to the socket: from PostgreSQL 14 it checks every
  // second whether the command is still there. Where the server cannot
  // (not Linux), the default stays.
  if (PQserverVersion(conn) >= 140000) {
    client.Run("SET client_connection_check_interval = 1000").IgnoreError();
  }
  return client;
}

PgClient::~PgClient() {
  if (conn_) PQfinish(conn_);
}

absl::StatusOr<QueryRows> PgClient::Exec(const std::string& sql,
                                         const std::vector<std::optional<std::string>>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  PGresult* r = PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  ExecStatusType status = PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return Failed(r);
  QueryRows out;
  out.tag = PQcmdStatus(r);
  for (int i = 0; i < PQntuples(r); ++i) {
    Row row;
    for (int j = 0; j < PQnfields(r); ++j) {
      if (PQgetisnull(r, i, j)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(r, i, j), PQgetlength(r, i, j)));
      }
    }
    out.rows.push_back(std::move(row));
  }
  PQclear(r);
  return out;
}

absl::Status PgClient::Failed(PGresult* r) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  std::string text = StrCat("backend ", name_, ": ", state ? state : "", " ",
                            message ? message : PQerrorMessage(conn_));
  absl::Status failed = absl::AbortedError(text);
  if (state) failed.SetPayload(kSqlStatePayload, absl::Cord(state));
  PQclear(r);  // `state` and `message` live in it
  return failed;
}

absl::Status PgClient::Finish() {
  absl::Status last;
  while (PGresult* r = PQgetResult(conn_)) {
    ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      PQclear(r);
    } else {
      last = Failed(r);
    }
  }
  return last;
}

absl::StatusOr<int64_t> PgClient::CopyTo(const std::string& copy_out, PgClient& to,
                                         const std::string& copy_in) {
  PGresult* r = PQexec(conn_, copy_out.c_str());
  if (PQresultStatus(r) != PGRES_COPY_OUT) return Failed(r);
  PQclear(r);
  r = PQexec(to.conn_, copy_in.c_str());
  absl::Status in_failed;
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    in_failed = to.Failed(r);
  } else {
    PQclear(r);
  }
  // Relay what old sends; after a failure on `to`, read the rest and drop it
  // (a batch at most), so that this connection stays usable.
  while (true) {
    char* data = nullptr;
    int n = PQgetCopyData(conn_, &data, 0);
    if (n < 0) break;
    if (in_failed.ok() && PQputCopyData(to.conn_, data, n) != 1) {
      in_failed = absl::AbortedError(StrCat("backend ", to.name_, ": ", PQerrorMessage(to.conn_)));
    }
    PQfreemem(data);
  }
  absl::Status out_done = Finish();
  if (!in_failed.ok()) return in_failed;
  const char* abort_reason = out_done.ok() ? nullptr : "the COPY out of the other side failed";
  if (PQputCopyEnd(to.conn_, abort_reason) != 1) {
    return absl::AbortedError(StrCat("backend ", to.name_, ": ", PQerrorMessage(to.conn_)));
  }
  r = PQgetResult(to.conn_);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    absl::Status failed = to.Failed(r);
    to.Finish().IgnoreError();
    return out_done.ok() ? failed : out_done;
  }
  int64_t rows = 0;
  ParseInt(PQcmdTuples(r), rows);
  PQclear(r);
  if (absl::Status s = to.Finish(); !s.ok()) return s;
  if (!out_done.ok()) return out_done;
  return rows;
}

absl::Status PgClient::Run(const std::string& sql,
                           const std::vector<std::optional<std::string>>& params) {
  return Exec(sql, params).status();
}

std::string SqlStateOf(const absl::Status& status) {
  auto state = status.GetPayload(kSqlStatePayload);  // absl::optional
  return state ? std::string(*state) : "";
}

}  // namespace pgshift::migration
