#include "proxy/backend_query.h"

#include "common/strings.h"
#include "protocol/message_type.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/query.h"
#include "protocol/messages/row_description.h"
#include "proxy/message_io.h"

namespace pgshift::proxy {

awaitable<absl::StatusOr<QueryResult>> RunQuery(Stream& backend, PacketBuffer& buffer,
                                                std::string_view sql, int* notifications) {
  std::string out;
  protocol::Query{std::string(sql)}.Encode(out);
  error_code ec;
  co_await backend.Write(asio::buffer(out), ec);
  if (ec) co_return absl::UnavailableError(StrCat("backend write failed: ", ec.message()));

  QueryResult result;
  absl::Status error = absl::OkStatus();
  while (true) {
    auto message = co_await ReadWholeMessage(backend, buffer, protocol::kBackendTypes, ec,
                                             protocol::kDefaultMaxMessageSize);
    if (ec) co_return absl::UnavailableError(StrCat("backend read failed: ", ec.message()));
    if (!message.ok()) co_return message.status();
    std::string_view payload = std::string_view(*message).substr(protocol::kHeaderSize);
    switch ((*message)[0]) {
      case protocol::backend::kRowDescription: {
        auto desc = protocol::RowDescription::Decode(payload);
        if (!desc.ok()) co_return desc.status();
        for (auto& f : desc->fields) result.columns.push_back(std::move(f.name));
        break;
      }
      case protocol::backend::kDataRow: {
        auto row = protocol::DataRow::Decode(payload);
        if (!row.ok()) co_return row.status();
        result.rows.push_back(std::move(row->values));
        break;
      }
      case protocol::backend::kCommandComplete: {
        auto done = protocol::CommandComplete::Decode(payload);
        if (done.ok()) result.tag = done->tag;
        break;
      }
      case protocol::backend::kErrorResponse: {
        // Remembered, not returned: the ReadyForQuery that follows must be
        // read for the connection to stay usable.
        auto e = protocol::ErrorResponse::Decode(payload);
        error = absl::FailedPreconditionError(
            e.ok() ? StrCat(e->sqlstate(), " ", e->message()) : std::string("malformed error"));
        break;
      }
      case protocol::backend::kReadyForQuery:
        if (!error.ok()) co_return error;
        co_return result;
      case protocol::backend::kNotificationResponse:
        if (notifications != nullptr) ++*notifications;
        break;
      default:  // notices, ParameterStatus: not ours to act on
        break;
    }
  }
}

awaitable<absl::StatusOr<std::vector<std::string>>> ReadTableColumns(
    Stream& backend, PacketBuffer& buffer, std::string_view table,
    std::vector<std::string>* generated, std::vector<std::string>* required,
    std::vector<std::string>* types) {
  size_t dot = table.find('.');
  std::string_view schema = dot == std::string_view::npos ? "public" : table.substr(0, dot);
  std::string_view name = dot == std::string_view::npos ? table : table.substr(dot + 1);
  std::string sql = StrCat(
      "SELECT a.attname, a.attgenerated <> '', a.attnotnull AND NOT a.atthasdef AND "
      "a.attidentity = '' AND a.attgenerated = '', pg_catalog.format_type(a.atttypid, "
      "a.atttypmod) FROM pg_catalog.pg_attribute a "
      "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = ",
      QuoteLiteral(schema), " AND c.relname = ", QuoteLiteral(name),
      " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum");
  auto result = co_await RunQuery(backend, buffer, sql);
  if (!result.ok()) co_return result.status();
  if (result->rows.empty()) {
    co_return absl::NotFoundError(StrCat("table \"", table, "\" does not exist"));
  }
  std::vector<std::string> columns;
  for (const auto& row : result->rows) {
    columns.push_back(row[0].value_or(""));
    if (generated != nullptr && row[1] == "t") generated->push_back(columns.back());
    if (required != nullptr && row[2] == "t") required->push_back(columns.back());
    if (types != nullptr) types->push_back(row[3].value_or(""));
  }
  co_return columns;
}

}  // namespace pgshift::proxy
