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
  bool has_default = false;  // a default or an identity
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
             ", a.attnotnull, a.atthasdef OR a.attidentity <> ''",
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
                       r[5] == "t", *r[6] == "t", *r[7] == "t"});
  return columns;
}

// Whether old computes `transforms` as one value of each row, the same in
// every session (routing/column_transform.h): OK, or its reason.
absl::Status ProbeTransforms(const routing::TableConfig& table, PgClient& old_db,
                             const std::string& old_table) {
  // In one transaction rolled back, whose locks wait a bounded time.
  if (absl::Status s = old_db.Run("BEGIN"); !s.ok()) return s;
  auto probe = [&]() -> absl::Status {
    if (absl::Status s = old_db.Run("SET LOCAL lock_timeout = '5s'"); !s.ok()) return s;
    auto types = old_db.Exec(routing::TransformTypesSql(table.new_columns, old_table));
    if (!types.ok()) return types.status();
    if (types->rows.empty()) return absl::InternalError("the expressions' types could not be read");
    std::vector<std::string> names;
    for (const auto& type : types->rows[0]) names.push_back(type.value_or("text"));
    for (const std::string& sql : routing::TransformProbeSql(table.new_columns, old_table, names)) {
      if (absl::Status s = old_db.Run(sql); !s.ok()) return s;
    }
    return absl::OkStatus();
  };
  absl::Status probed = probe();
  absl::Status rolled_back = old_db.Run("ROLLBACK");
  return probed.ok() ? rolled_back : probed;
}

// The new columns computed from old's row (new_columns): each pairs the
// new column with its expression over old's columns. Verify compares it
// cast to the new column's type where old knows that type (always on one
// database), so values compare as new holds them; backfill copies it
// uncast (old_copied), so that new's own rules put it into the column as
// they do for a mirrored write: assignment on one database, the type's
// input across servers.
absl::Status AddComputedColumns(const routing::TableConfig& table,
                                const std::vector<Column>& new_columns, PgClient& old_db,
                                TablePair& pair) {
  if (table.new_columns.empty()) return absl::OkStatus();
  if (pair.new_is_authoritative) {
    return absl::FailedPreconditionError(
        StrCat(table.name,
               ": new_columns are computed from old's rows, and old is not "
               "authoritative in phase ",
               routing::PhaseName(table.phase)));
  }
  if (absl::Status s = ProbeTransforms(table, old_db, pair.old_table); !s.ok()) {
    return absl::FailedPreconditionError(StrCat(table.name, ": new_columns cannot be computed on ",
                                                old_db.name(), ": ", MessageOf(s)));
  }
  for (const routing::ColumnTransform& t : table.new_columns) {
    auto column = std::find_if(new_columns.begin(), new_columns.end(),
                               [&](const Column& n) { return n.name == t.column; });
    if (column == new_columns.end() || column->generated) {
      return absl::FailedPreconditionError(
          StrCat(table.name, ": new_columns computes ", t.column, ", which ", table.new_name,
                 column == new_columns.end() ? " does not have" : " generates itself"));
    }
    bool cast = pair.same_database;
    if (!cast) {
      auto known = old_db.Exec("SELECT pg_catalog.to_regtype($1) IS NOT NULL", {column->type});
      if (!known.ok()) return known.status();
      cast = *known->rows[0][0] == "t";
    }
    pair.old_columns.push_back(cast ? StrCat("CAST(", t.expression, " AS ", column->type, ")")
                                    : t.expression);
    pair.old_copied.push_back(t.expression);
    pair.new_columns.push_back(routing::QuoteIdent(t.column));
    pair.old_types.push_back(cast ? column->type : "");
    pair.new_types.push_back(column->type);
    pair.computed.push_back(pair.old_columns.size() - 1);
  }
  // Uncast, their values travel as text.
  pair.binary_copy = false;
  return absl::OkStatus();
}

}  // namespace

std::string TablePair::OldSelect() const {
  std::string out;
  for (size_t i = 0; i < old_copied.size(); ++i) {
    out += StrCat(i ? ", " : "", old_copied[i]);
    if (IsComputed(i)) out += StrCat(" AS ", OldName(i));
  }
  return out;
}

std::string TablePair::OldName(size_t i) const {
  return IsComputed(i) ? StrCat("\"pgshift_computed_", i, "\"") : old_columns[i];
}

bool TablePair::IsComputed(size_t i) const {
  return std::find(computed.begin(), computed.end(), i) != computed.end();
}

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
    if (counterpart != new_columns->end() &&
        routing::FindTransform(table->new_columns, mapped) != nullptr) {
      counterpart = new_columns->end();  // computed, below
    }
    const bool transformed =
        std::any_of(table->new_columns.begin(), table->new_columns.end(),
                    [&](const routing::ColumnTransform& t) {
                      return std::binary_search(t.reads.begin(), t.reads.end(), c.name);
                    });
    if (!c.generated && counterpart == new_columns->end() && !transformed) {
      pair.dropped.push_back(c.name);
    }
    if (c.generated || counterpart == new_columns->end() || counterpart->generated) continue;
    pair.old_columns.push_back(routing::QuoteIdent(c.name));
    pair.old_copied.push_back(pair.old_columns.back());
    pair.new_columns.push_back(routing::QuoteIdent(mapped));
    pair.old_types.push_back(c.type);
    pair.new_types.push_back(counterpart->type);
    pair.binary_copy = pair.binary_copy && c.type == counterpart->type && c.binary_copyable &&
                       counterpart->binary_copyable;
  }
  if (absl::Status s = AddComputedColumns(*table, *new_columns, old_db, pair); !s.ok()) return s;
  for (const Column& c : *new_columns) {
    // Checked where new_columns could fill it (proxy/catalog_reader.cc
    // checks the same at start and reload).
    if (table->new_columns.empty() || pair.new_is_authoritative) break;
    if (!c.not_null || c.has_default || c.generated ||
        std::find(pair.new_columns.begin(), pair.new_columns.end(), routing::QuoteIdent(c.name)) !=
            pair.new_columns.end()) {
      continue;
    }
    return absl::FailedPreconditionError(
        StrCat(table->new_name, ".", c.name, " is NOT NULL without a default, and no column of ",
               table->name, " fills it: compute it in new_columns, or give it a default"));
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
