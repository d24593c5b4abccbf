#include "migration/table_pair.h"

#include <algorithm>

#include "common/json.h"
#include "common/strings.h"
#include "routing/mirror.h"

namespace pgshift::migration {

namespace {

struct Column {
  std::string name;
  std::string type;
  bool generated = false;
};

absl::StatusOr<std::vector<Column>> ReadColumns(PgClient& db, const std::string& table) {
  size_t dot = table.find('.');
  auto rows = db.Exec(
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '' "
      "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
      "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
      "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped "
      "ORDER BY a.attnum",
      {table.substr(0, dot), table.substr(dot + 1)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) {
    return absl::NotFoundError(StrCat("table ", table, " does not exist on backend ", db.name()));
  }
  std::vector<Column> columns;
  for (const Row& r : rows->rows) columns.push_back({*r[0], *r[1], *r[2] == "t"});
  return columns;
}

}  // namespace

std::string KeyText(const std::vector<std::string>& key) {
  if (key.size() == 1) return key[0];
  std::string out;
  for (const std::string& k : key) out = StrCat(out, out.empty() ? "(" : ",", k);
  return out + ")";
}

std::string TablePair::List(const std::vector<std::string>& names, std::string_view prefix) {
  std::string out;
  for (const std::string& n : names) out = StrCat(out, out.empty() ? "" : ", ", prefix, n);
  return out;
}

std::string TablePair::KeyParams(int first) const {
  std::string out;
  for (size_t i = 0; i < key_types.size(); ++i) {
    out = StrCat(out, i ? ", " : "", "$", first + static_cast<int>(i), "::", key_types[i]);
  }
  return StrCat("(", out, ")");
}

std::string TablePair::KeysJson(const std::vector<std::vector<std::string>>& keys) {
  std::string out = "[";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ",";
    out += "[";
    for (size_t k = 0; k < keys[i].size(); ++k) {
      if (k) out += ",";
      out += JsonString(keys[i][k]);
    }
    out += "]";
  }
  return out + "]";
}

std::string TablePair::KeysFromJson(int param, bool new_side, bool with_text) const {
  const std::vector<std::string>& types = new_side ? new_key_types : key_types;
  std::string columns;
  for (size_t i = 0; i < types.size(); ++i) {
    columns += StrCat(i ? ", " : "", "(pgshift_key->>", i, ")::", types[i]);
  }
  if (with_text) columns += StrCat(", pgshift_key->>", types.size());
  return StrCat("SELECT ", columns, " FROM pg_catalog.jsonb_array_elements($", param,
                "::pg_catalog.jsonb) pgshift_key");
}

std::string TablePair::RowHash(const std::vector<std::string>& columns) {
  return StrCat("md5(ROW(", List(columns), ")::text)");
}

absl::StatusOr<TablePair> ResolveTable(const routing::Config& config, std::string_view name,
                                       PgClient& old_db, PgClient& new_db, bool keyless_ok) {
  std::string qualified =
      name.find('.') == std::string_view::npos ? StrCat("public.", name) : std::string(name);
  auto table = std::find_if(config.tables.begin(), config.tables.end(),
                            [&](const routing::TableConfig& t) { return t.name == qualified; });
  if (table == config.tables.end()) {
    return absl::NotFoundError(StrCat("table ", qualified, " is not in the configuration's [[tables]]"));
  }
  if (table->key.empty() && !keyless_ok) {
    return absl::FailedPreconditionError(
        StrCat("table ", qualified, " has no key in the configuration; it is needed to copy and "
               "compare rows"));
  }
  auto old_columns = ReadColumns(old_db, table->name);
  if (!old_columns.ok()) return old_columns.status();
  auto new_columns = ReadColumns(new_db, table->new_name);
  if (!new_columns.ok()) return new_columns.status();

  TablePair pair;
  pair.config = &*table;
  pair.same_database = !config.new_backend.has_value();
  pair.new_is_authoritative = routing::ReadsFromNew(table->phase);
  pair.old_table = routing::QuoteQualified(table->name);
  pair.new_table = routing::QuoteQualified(table->new_name);
  for (const Column& c : *old_columns) {
    auto renamed = table->columns.find(c.name);
    std::string mapped = renamed == table->columns.end() ? c.name : renamed->second;
    auto counterpart = std::find_if(new_columns->begin(), new_columns->end(),
                                    [&](const Column& n) { return n.name == mapped; });
    if (!c.generated && counterpart == new_columns->end()) pair.dropped.push_back(c.name);
    if (c.generated || counterpart == new_columns->end() || counterpart->generated) continue;
    pair.old_columns.push_back(routing::QuoteIdent(c.name));
    pair.new_columns.push_back(routing::QuoteIdent(mapped));
    pair.old_types.push_back(c.type);
    pair.new_types.push_back(counterpart->type);
  }
  for (const std::string& k : table->key) {
    auto renamed = table->columns.find(k);
    std::string mapped = renamed == table->columns.end() ? k : renamed->second;
    auto column = std::find_if(old_columns->begin(), old_columns->end(),
                               [&](const Column& c) { return c.name == k; });
    bool paired = std::find(pair.new_columns.begin(), pair.new_columns.end(),
                            routing::QuoteIdent(mapped)) != pair.new_columns.end();
    if (column == old_columns->end() || !paired) {
      return absl::FailedPreconditionError(StrCat("key column ", k, " of ", table->name,
                                                  " has no counterpart in ", table->new_name));
    }
    pair.old_key.push_back(routing::QuoteIdent(k));
    pair.new_key.push_back(routing::QuoteIdent(mapped));
    pair.key_types.push_back(column->type);
    auto counterpart = std::find_if(new_columns->begin(), new_columns->end(),
                                    [&](const Column& c) { return c.name == mapped; });
    pair.new_key_types.push_back(counterpart->type);
  }
  return pair;
}

}  // namespace pgshift::migration
