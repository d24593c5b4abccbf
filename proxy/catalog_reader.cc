#include "proxy/catalog_reader.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/packet_buffer.h"

namespace pgshift::proxy {

namespace {

struct Wanted {
  const routing::TableConfig* table;
  std::string relation;  // the old or the new name
  bool is_new = false;
  // An old table in new-only, read only to check INSERTs without a column
  // list: it may be gone.
  bool optional = false;
};

// Columns an INSERT must fill, by table ("schema.name").
using Required = std::map<std::string, std::vector<std::string>>;

// EXPLAIN (never run) of an INSERT of `transforms`' values over `table`'s
// rows into the other side's table, on one database: their types must fit.
std::string PlanInto(const routing::TableConfig& t, const Wanted& w,
                     const std::vector<routing::ColumnTransform>& transforms,
                     const std::string& table) {
  std::string into, values;
  for (const routing::ColumnTransform& c : transforms) {
    into += StrCat(into.empty() ? "" : ", ", routing::QuoteIdent(c.column));
    values += StrCat(values.empty() ? "" : ", ", c.expression);
  }
  return StrCat("EXPLAIN INSERT INTO ", routing::QuoteQualified(w.is_new ? t.name : t.new_name),
                " (", into, ") SELECT ", values, " FROM ", table, " WHERE false");
}

// Whether the server computes `w`'s transforms (the expressions computing
// the other side's columns from its table's rows): "" when it does, else
// the server's reason (routing/column_transform.h).
awaitable<std::string> CheckTransforms(Stream& stream, PacketBuffer& buffer,
                                       const routing::Config& config, const Wanted& w) {
  const routing::TableConfig& t = *w.table;
  const std::vector<routing::ColumnTransform>& transforms =
      w.is_new ? t.old_columns : t.new_columns;
  if (transforms.empty()) co_return "";
  const std::string table = routing::QuoteQualified(w.relation);
  // All of it in one transaction rolled back, whose locks wait a bounded
  // time: a start or reload never hangs behind a table's lock queue.
  std::vector<std::string> steps = {"BEGIN", "SET LOCAL lock_timeout = '5s'",
                                    routing::TransformTypesSql(transforms, table)};
  std::string why;
  for (size_t i = 0; i < steps.size() && why.empty(); ++i) {
    const std::string sql = steps[i];
    auto done = co_await RunQuery(stream, buffer, sql);
    if (!done.ok()) {
      why = MessageOf(done.status());
    } else if (i == 2) {
      // The expressions' types known, the probe follows; on one database
      // the values are planned into the other table's columns too.
      if (done->rows.empty()) {
        why = "the expressions' types could not be read";
        break;
      }
      std::vector<std::string> names;
      for (const auto& type : done->rows[0]) names.push_back(type.value_or("text"));
      for (std::string& probe : routing::TransformProbeSql(transforms, table, names)) {
        steps.push_back(std::move(probe));
      }
      if (!config.new_backend) steps.push_back(PlanInto(t, w, transforms, table));
    }
  }
  auto rolled_back = co_await RunQuery(stream, buffer, "ROLLBACK");
  if (why.empty() && !rolled_back.ok()) why = MessageOf(rolled_back.status());
  co_return why;
}

// Reads the columns of `wanted` over one connection to `backend`.
awaitable<void> ReadFrom(const routing::Config& config, asio::ssl::context& tls,
                         std::string_view name, const routing::BackendConfig& backend,
                         const std::vector<Wanted>& wanted, CatalogReadResult& out,
                         Required& required) {
  if (wanted.empty()) co_return;
  auto fail = [&](const Wanted& w, std::string_view why, bool blocking) {
    out.problems.push_back({w.table->name,
                            StrCat("cannot read the columns of ", w.relation, " on backend ",
                                   name, ": ", why),
                            blocking});
  };
  auto opened = co_await OpenControlConnection(config, backend, name, tls);
  if (!opened.ok()) {
    // Missing settings only keep pgshift from looking; the rest is a fault.
    bool blocking = opened.status().code() != absl::StatusCode::kFailedPrecondition;
    for (const Wanted& w : wanted) fail(w, MessageOf(opened.status()), blocking);
    co_return;
  }
  Stream& stream = **opened;
  PacketBuffer buffer;
  for (const Wanted& w : wanted) {
    std::vector<std::string> generated, types;
    auto columns = co_await ReadTableColumns(stream, buffer, w.relation, &generated,
                                             w.is_new ? &required[w.relation] : nullptr,
                                             w.is_new ? nullptr : &types);
    if (columns.ok()) {
      std::string why = co_await CheckTransforms(stream, buffer, config, w);
      if (!why.empty()) {
        out.problems.push_back(
            {w.table->name,
             StrCat(w.is_new ? "old_columns" : "new_columns", " of ", w.table->name,
                    " cannot be computed from ", w.relation, " on backend ", name, ": ", why),
             true, true});
      }
      (w.is_new ? out.catalog.new_tables : out.catalog.old_tables)[w.relation] =
          *std::move(columns);
      if (!w.is_new) out.catalog.old_types[w.relation] = std::move(types);
      if (!generated.empty()) {
        (w.is_new ? out.catalog.new_generated : out.catalog.old_generated)[w.relation] =
            std::move(generated);
      }
    } else {
      fail(w, MessageOf(columns.status()), !w.optional);
    }
  }
  // Any overload marked volatile makes the name volatile: the parser alone
  // cannot tell which one a call resolves to.
  auto functions = co_await RunQuery(
      stream, buffer, "SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE provolatile = 'v'");
  if (functions.ok()) {
    for (const auto& row : functions->rows) {
      if (row[0]) out.catalog.volatile_functions.insert(*row[0]);
    }
  }
  stream.Close();
}

// A table with transforms: each computed column exists on its side and is
// not generated there, and each column new must have filled is, by a
// column of old (renames applied) or by new_columns.
void CheckCoverage(const routing::TableConfig& t, CatalogReadResult& out,
                   const Required& required) {
  if (t.new_columns.empty() && t.old_columns.empty()) return;
  const routing::Catalog& c = out.catalog;
  auto problem = [&](std::string why) { out.problems.push_back({t.name, why, true, true}); };
  auto has = [](const routing::Catalog::Tables& tables, const std::string& table,
                const std::string& column) {
    auto it = tables.find(table);
    return it != tables.end() &&
           std::find(it->second.begin(), it->second.end(), column) != it->second.end();
  };
  for (const auto& [transforms, tables, generated, relation] :
       {std::tuple{&t.new_columns, &c.new_tables, &c.new_generated, &t.new_name},
        std::tuple{&t.old_columns, &c.old_tables, &c.old_generated, &t.name}}) {
    if (!tables->contains(*relation)) continue;  // unreadable: reported already
    for (const routing::ColumnTransform& x : *transforms) {
      if (!has(*tables, *relation, x.column) || has(*generated, *relation, x.column)) {
        problem(StrCat(*relation, " has no column ", x.column, " that pgshift could write, which ",
                       transforms == &t.new_columns ? "new_columns" : "old_columns", " of ", t.name,
                       " computes"));
      }
    }
  }
  if (t.new_columns.empty()) return;  // as old's rows are, by name
  auto needed = required.find(t.new_name);
  auto old_columns = c.old_tables.find(t.name);
  if (needed == required.end() || old_columns == c.old_tables.end()) return;
  for (const std::string& column : needed->second) {
    if (routing::FindTransform(t.new_columns, column) != nullptr) continue;
    const bool copied = std::any_of(
        old_columns->second.begin(), old_columns->second.end(), [&](const std::string& o) {
          auto renamed = t.columns.find(o);
          return (renamed == t.columns.end() ? o : renamed->second) == column;
        });
    if (!copied) {
      problem(StrCat(t.new_name, ".", column, " is NOT NULL without a default, and no column of ",
                     t.name, " fills it: compute it in new_columns, or give it a default"));
    }
  }
}

// Both tables of every table past old-only: the old one in new-only only
// for INSERTs without a column list (routing/rewrite.cc).
awaitable<void> Read(const routing::Config& config, asio::ssl::context& tls,
                     CatalogReadResult& out) {
  const bool second_server = config.new_backend.has_value();
  std::vector<Wanted> on_old, on_new;
  for (const routing::TableConfig& t : config.tables) {
    if (t.phase == routing::Phase::kOldOnly) continue;
    (second_server ? on_new : on_old).push_back({&t, t.new_name, true});
    on_old.push_back({&t, t.name, false, t.phase == routing::Phase::kNewOnly});
  }
  Required required;
  co_await ReadFrom(config, tls, "old", config.old_backend, on_old, out, required);
  if (second_server) {
    co_await ReadFrom(config, tls, "new", *config.new_backend, on_new, out, required);
  }
  for (const routing::TableConfig& t : config.tables) {
    if (t.phase != routing::Phase::kOldOnly) CheckCoverage(t, out, required);
  }
}

}  // namespace

CatalogReadResult ReadCatalog(const routing::Config& config, asio::ssl::context& tls) {
  return RunToCompletion<CatalogReadResult>([&]() -> awaitable<CatalogReadResult> {
    CatalogReadResult result;
    co_await Read(config, tls, result);
    co_return result;
  });
}

std::string TransformProblems(const CatalogReadResult& read, const routing::Config* running,
                              const routing::Config* next) {
  auto unchanged = [&](const std::string& name) {
    if (running == nullptr || next == nullptr) return false;
    const routing::TableConfig* before = running->FindTable(name);
    const routing::TableConfig* after = next->FindTable(name);
    return before != nullptr && after != nullptr && before->phase == after->phase &&
           before->new_name == after->new_name && before->key == after->key &&
           before->columns == after->columns && before->new_columns == after->new_columns &&
           before->old_columns == after->old_columns;
  };
  std::string out;
  for (const CatalogReadResult::Problem& problem : read.problems) {
    if (problem.transform && !unchanged(problem.table)) {
      out += StrCat(out.empty() ? "" : "; ", problem.reason);
    }
  }
  return out;
}

std::optional<std::string> CannotMove(const CatalogReadResult& read,
                                      const routing::TableConfig& table) {
  for (const CatalogReadResult::Problem& problem : read.problems) {
    if (problem.blocking && problem.table == table.name) {
      return StrCat(table.name, " cannot move to ", routing::PhaseName(table.phase), ": ",
                    problem.reason);
    }
  }
  return std::nullopt;
}

}  // namespace pgshift::proxy
