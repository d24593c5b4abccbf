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
  // How the column's values sort: provider, collate, ctype and locale of
  // its collation (the database's for the default one); empty when its
  // type has no collation.
  std::string collation;
  std::string collation_oid;
  bool binary_copyable = false;  // kBinaryCopyable
  bool not_null = false;
};

// The collation's settings as catalog rows of any version name them (read
// through to_jsonb, so a field a version lacks is only absent).
constexpr const char* kCollationOfColumn =
    "CASE WHEN a.attcollation = 0 THEN '' "
    "WHEN a.attcollation = 100 THEN (SELECT pg_catalog.concat_ws(':', "
    "COALESCE(j->>'datlocprovider', 'c'), j->>'datcollate', j->>'datctype', j->>'daticulocale', "
    "j->>'datlocale') FROM pg_catalog.pg_database d, pg_catalog.to_jsonb(d) j "
    "WHERE d.datname = pg_catalog.current_database()) "
    "ELSE (SELECT pg_catalog.concat_ws(':', j->>'collprovider', j->>'collcollate', "
    "j->>'collctype', j->>'colliculocale', j->>'colllocale') FROM pg_catalog.pg_collation o, "
    "pg_catalog.to_jsonb(o) j WHERE o.oid = a.attcollation) END";

// A type of PostgreSQL's own whose binary form means the same on another
// server: not the reg* types (object oids, which differ there, also as
// array elements), and only with binary send and receive functions.
constexpr const char* kBinaryCopyable =
    "(SELECT t.oid < 16384 AND t.typsend <> 0 AND t.typreceive <> 0 AND "
    "coalesce(e.typname, t.typname) NOT LIKE 'reg%' FROM pg_catalog.pg_type t LEFT JOIN "
    "pg_catalog.pg_type e ON t.typelem <> 0 AND e.oid = t.typelem WHERE t.oid = a.atttypid)";

absl::StatusOr<std::vector<Column>> ReadColumns(PgClient& db, const std::string& table) {
  size_t dot = table.find('.');
  auto rows = db.Exec(
      StrCat("SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', ",
             kCollationOfColumn, ", a.attcollation::pg_catalog.text, ", kBinaryCopyable,
             ", a.attnotnull",
             " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
             "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
             "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped "
             "ORDER BY a.attnum"),
      {table.substr(0, dot), table.substr(dot + 1)});
  if (!rows.ok()) return rows.status();
  if (rows->rows.empty()) {
    return absl::NotFoundError(StrCat("table ", table, " does not exist on backend ", db.name()));
  }
  std::vector<Column> columns;
  for (const Row& r : rows->rows)
    columns.push_back({*r[0], *r[1], *r[2] == "t", r[3].value_or(""), r[4].value_or(""),
                       r[5] == "t", *r[6] == "t"});
  return columns;
}

}  // namespace

std::string KeySortNote(const TablePair& pair) {
  if (pair.key_sort_differs.empty()) return "";
  std::string columns;
  for (const std::string& c : pair.key_sort_differs) {
    columns = StrCat(columns, columns.empty() ? "" : "; ", c);
  }
  return StrCat(pair.config->name, ": the key sorts otherwise on the two sides: ", columns,
                "; its ranges are taken in byte order (COLLATE \"C\") on both, which an index "
                "in another collation cannot serve");
}

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
  // Binary COPY carries type oids inside arrays and records, and its
  // formats may change between major versions.
  pair.binary_copy = old_db.server_version() / 10000 == new_db.server_version() / 10000;
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
    pair.binary_copy = pair.binary_copy && c.type == counterpart->type && c.binary_copyable &&
                       counterpart->binary_copyable;
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
    if (!column->not_null) {
      // A NULL equals no key: such a row could be neither found nor
      // checkpointed, and the sweep would take it for a deleted one.
      return absl::FailedPreconditionError(
          StrCat("key column ", k, " of ", table->name,
                 " allows NULL: a key must name every row; make it NOT NULL, or configure "
                 "another key"));
    }
    pair.old_key.push_back(routing::QuoteIdent(k));
    pair.new_key.push_back(routing::QuoteIdent(mapped));
    pair.key_types.push_back(column->type);
    auto counterpart = std::find_if(new_columns->begin(), new_columns->end(),
                                    [&](const Column& c) { return c.name == mapped; });
    pair.new_key_types.push_back(counterpart->type);
    // On one database two collation objects alike still clash when
    // compared (42P22): there the collation itself must be the same.
    const bool differs =
        column->collation != counterpart->collation ||
        (pair.same_database && column->collation_oid != counterpart->collation_oid);
    if (differs) {
      auto named = [](const std::string& c) { return c.empty() ? std::string("none") : c; };
      pair.key_sort_differs.push_back(StrCat(k, " (old ", named(column->collation), ", new ",
                                             named(counterpart->collation), ")"));
    }
  }
  // Ranges of keys mean the same on both sides only in one order: where
  // the collations differ, byte order ("C") on both.
  for (size_t i = 0; i < pair.old_key.size(); ++i) {
    const bool in_bytes = !pair.key_sort_differs.empty();
    auto collatable = [&](const std::vector<Column>& columns, const std::string& quoted) {
      return std::any_of(columns.begin(), columns.end(), [&](const Column& c) {
        return routing::QuoteIdent(c.name) == quoted && !c.collation.empty();
      });
    };
    pair.old_key_order.push_back(in_bytes && collatable(*old_columns, pair.old_key[i])
                                     ? StrCat(pair.old_key[i], " COLLATE \"C\"")
                                     : pair.old_key[i]);
    pair.new_key_order.push_back(in_bytes && collatable(*new_columns, pair.new_key[i])
                                     ? StrCat(pair.new_key[i], " COLLATE \"C\"")
                                     : pair.new_key[i]);
  }
  return pair;
}

}  // namespace pgshift::migration
