// pgshift's own queries on a backend connection (catalog reads now; mirror
// and divergence writes later), in the simple query protocol.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/strings.h"
#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/stream.h"

namespace pgshift::proxy {

// A count in a text result; 0 when NULL, negative or not a number.
inline uint64_t CountOf(const std::optional<std::string>& text) {
  int64_t n = 0;
  return text && ParseInt(*text, n) && n > 0 ? static_cast<uint64_t>(n) : 0;
}

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;  // text format; nullopt = NULL
  std::string tag;                                            // CommandComplete, e.g. "SELECT 3"
};

// Runs `sql` (one statement) on an idle backend connection and reads up to
// its ReadyForQuery, so the connection is ready again afterwards. A server
// error comes back as a status carrying its SQLSTATE and message; a broken
// connection as Unavailable. `notifications`, when given, counts the
// NotificationResponses that came meanwhile (a LISTENing connection's).
awaitable<absl::StatusOr<QueryResult>> RunQuery(Stream& backend, PacketBuffer& buffer,
                                                std::string_view sql, int* notifications = nullptr);

// The columns of `table` ("schema.name", each part as PostgreSQL stores it)
// in attribute order; NotFound when there is no such table. `generated`,
// if given, gets the generated (stored) ones among them; `required` the
// ones an INSERT must fill (NOT NULL, without a default or identity);
// `types` each column's type (format_type), in the same order.
awaitable<absl::StatusOr<std::vector<std::string>>> ReadTableColumns(
    Stream& backend, PacketBuffer& buffer, std::string_view table,
    std::vector<std::string>* generated = nullptr, std::vector<std::string>* required = nullptr,
    std::vector<std::string>* types = nullptr);

}  // namespace pgshift::proxy
