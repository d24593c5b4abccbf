#include "proxy/instance_console.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "protocol/scram.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/coordinator_connection.h"
#include "proxy/deadline.h"
#include "proxy/packet_buffer.h"

namespace pgshift::proxy {

namespace {

// The console's login, as the file's first admin user.
absl::StatusOr<routing::BackendConfig> Console(const routing::Config& file) {
  if (!file.proxy.admin_listen) {
    return absl::FailedPreconditionError(
        StrCat(file.source, " sets no proxy.admin_listen to ask the running instance by"));
  }
  auto admin = std::find_if(file.users.begin(), file.users.end(),
                            [](const routing::UserConfig& u) { return u.admin; });
  if (admin == file.users.end()) {
    return absl::FailedPreconditionError(StrCat(
        file.source, " names no [[users]] with admin = true to ask the running instance as"));
  }
  routing::BackendConfig console;
  console.endpoint = *file.proxy.admin_listen;
  console.dbname = "pgshift";
  console.user = admin->name;
  console.sslmode = routing::SslMode::kPrefer;
  if (const char* password = std::getenv("PGPASSWORD"); password != nullptr) {
    console.password = password;
  } else if (protocol::ScramVerifier::LooksLikeVerifier(admin->password)) {
    return absl::FailedPreconditionError(
        StrCat("the password of admin user \"", admin->name, "\" in ", file.source,
               " is a SCRAM verifier, which cannot log in: set PGPASSWORD to the password"));
  }
  return console;
}

// The index of `name` among a result's columns.
absl::StatusOr<size_t> Column(const QueryResult& result, std::string_view name) {
  auto it = std::find(result.columns.begin(), result.columns.end(), name);
  if (it == result.columns.end()) {
    return absl::FailedPreconditionError(StrCat("the running instance answers without a column \"",
                                                name,
                                                "\": is it an older pgshift than this command?"));
  }
  return static_cast<size_t>(it - result.columns.begin());
}

}  // namespace

routing::QueryFingerprints::Row ShapeOf(const std::vector<std::optional<std::string>>& row,
                                        size_t query, size_t tables, bool writes) {
  routing::QueryFingerprints::Row shape;
  shape.fingerprint = Text(row[0]);
  shape.normalized = Text(row[query]);
  shape.tables = absl::StrSplit(Text(row[tables]), ", ", absl::SkipEmpty());
  shape.writes = writes;
  return shape;
}

absl::StatusOr<InstanceView> AskInstance(const routing::Config& file, asio::ssl::context& tls,
                                         bool shapes) {
  auto console = Console(file);
  if (!console.ok()) return console.status();
  using Result = absl::StatusOr<InstanceView>;
  return RunToCompletion<Result>([&]() -> awaitable<Result> {
    auto opened = co_await OpenControlConnection(file, *console, "admin console", tls);
    if (!opened.ok()) co_return opened.status();
    PacketBuffer buffer;
    Deadline deadline(**opened, file.proxy.connect_timeout_s);
    InstanceView view;
    view.address = StrCat(console->endpoint.host, ":", console->endpoint.port);
    auto tables = co_await RunQuery(**opened, buffer, "SHOW TABLES");
    if (!tables.ok()) co_return tables.status();
    auto compared = Column(*tables, "phase_shadow_compared");
    auto persistent = Column(*tables, "phase_shadow_persistent");
    if (!compared.ok() || !persistent.ok()) {
      co_return compared.ok() ? persistent.status() : compared.status();
    }
    for (const auto& r : tables->rows) {
      if (auto phase = routing::PhaseFromName(Text(r[2]))) view.phases[Text(r[0])] = *phase;
      view.evidence[Text(r[0])] = {CountOf(r[*compared]), CountOf(r[*persistent]), 0};
    }
    if (shapes) {
      // fingerprint, tables, kind, executions, refused, last_seen, query
      auto queries = co_await RunQuery(**opened, buffer, "SHOW QUERIES");
      if (!queries.ok()) co_return queries.status();
      for (const auto& r : queries->rows) {
        routing::QueryFingerprints::Row shape = ShapeOf(r, 6, 1, Text(r[2]) == "write");
        shape.executions = CountOf(r[3]);
        shape.refused = CountOf(r[4]);
        absl::Time seen;
        std::string error;
        if (absl::ParseTime("%Y-%m-%d %H:%M:%SZ", Text(r[5]), absl::UTCTimeZone(), &seen, &error)) {
          shape.last_seen_ms = absl::ToUnixMillis(seen);
        }
        view.shapes.push_back(std::move(shape));
      }
    }
    (*opened)->Close();
    co_return view;
  });
}

}  // namespace pgshift::proxy
