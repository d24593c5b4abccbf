#include "migration/check_database.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/strings.h"
#include "migration/pg_client.h"
#include "migration/round_trip.h"
#include "migration/table_pair.h"
#include "routing/hidden_writes.h"
#include "routing/key_sequence.h"

namespace pgshift::migration {

namespace {

struct Line {
  std::string check;
  bool ok = true;
  std::string detail;
};

// A unique index (or primary key) of `table` on exactly the key's columns
// (INCLUDE columns aside), valid, not deferred, without a predicate or an
// expression: what ON CONFLICT (key) needs.
absl::StatusOr<bool> KeyIsUnique(PgClient& db, const std::string& table,
                                 const std::vector<std::string>& key) {
  auto r = db.Exec(
      "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = "
      "$1::pg_catalog.regclass AND i.indisunique AND i.indimmediate AND i.indisvalid AND "
      "i.indpred IS NULL AND i.indexprs IS NULL AND (SELECT "
      "pg_catalog.array_agg(a.attname::text ORDER BY a.attname) FROM "
      "pg_catalog.generate_series(0, i.indnkeyatts - 1) k JOIN pg_catalog.pg_attribute a ON "
      "a.attrelid = i.indrelid AND a.attnum = i.indkey[k]) = (SELECT "
      "pg_catalog.array_agg(k ORDER BY k) FROM pg_catalog.jsonb_array_elements_text("
      "$2::pg_catalog.jsonb) k))",
      {table, JsonArray(key)});
  if (!r.ok()) return r.status();
  return *r->rows[0][0] == "t";
}

absl::StatusOr<std::vector<routing::HiddenWritePath>> HiddenWrites(const routing::Config& config,
                                                                   PgClient& db,
                                                                   const std::string& table,
                                                                   bool on_new) {
  auto r = db.Exec(routing::HiddenWritePathsSql(table));
  if (!r.ok()) return r.status();
  return routing::HiddenWritePathsOf(config, r->rows, on_new);
}

std::string NextStep(routing::Phase phase) {
  using routing::Phase;
  switch (phase) {
    case Phase::kOldOnly:
      return "dual-write next: backfill, then verify, after the move (no hidden writes, a unique "
             "key on new)";
    case Phase::kDualWrite:
      return "shadow-read next: a verify with zero differences recorded since dual-write "
             "(pgshift verify --repair until it reports none)";
    case Phase::kShadowRead:
      return "new-primary next: min_shadow_compared shadow reads, at most "
             "max_shadow_mismatch_rate mismatched; new's key sequence past its keys";
    case Phase::kNewPrimary:
      return "new-only next: old no longer written; old's key sequence past new's keys if you "
             "may come back";
    case Phase::kNewOnly: break;
  }
  return "the last phase";
}

// What new-primary would write back to old, told before dual-write.
Line RoundTripLine(const routing::TableConfig& t, const TablePair& pair, PgClient& old_db) {
  const std::string check = "round trip";
  auto trip = CheckRoundTrip(t, pair, old_db);
  if (!trip.ok()) {
    return {check, false,
            StrCat("old_columns cannot be checked on old: ", MessageOf(trip.status()))};
  }
  std::vector<std::string> problems;
  if (!trip->one_way.empty()) {
    problems.push_back(StrCat(absl::StrJoin(trip->one_way, ", "),
                              " read by new_columns, neither copied to new nor computed back by "
                              "old_columns: new-primary could not write ",
                              trip->one_way.size() == 1 ? "it" : "them", " back to old"));
  }
  if (trip->differing > 0) {
    problems.push_back(StrCat(trip->differing, " of ", trip->sampled,
                              " sampled rows do not come back through old_columns (",
                              trip->examples, "): new-primary would write those values to old"));
  }
  if (!problems.empty()) return {check, false, absl::StrJoin(problems, "; ")};
  if (t.old_columns.empty())
    return {check, true, "every column new_columns reads is copied to new"};
  std::vector<std::string> derived;
  for (const routing::ColumnTransform& d : t.old_columns) derived.push_back(d.column);
  return {check, true,
          StrCat("down(up(row)) = row for ", absl::StrJoin(derived, ", "), " on ", trip->sampled,
                 " sampled rows")};
}

std::vector<Line> CheckTable(const routing::Config& config, const routing::TableConfig& t,
                             PgClient& old_db, PgClient& new_db) {
  std::vector<Line> lines;
  auto pair = ResolveTable(config, t.name, old_db, new_db, true);
  if (!pair.ok()) {
    lines.push_back({"tables", false, std::string(MessageOf(pair.status()))});
    return lines;
  }
  lines.push_back({"tables", true, StrCat(t.name, " on old, ", t.new_name, " on new")});
  if (t.key.empty()) {
    lines.push_back({"key", true, "none: INSERTs mirrored, verify compares whole rows"});
  } else {
    std::vector<std::string> key;
    for (const std::string& k : t.key) {
      auto renamed = t.columns.find(k);
      key.push_back(renamed == t.columns.end() ? k : renamed->second);
    }
    auto unique = KeyIsUnique(new_db, pair->new_table, key);
    if (!unique.ok()) {
      lines.push_back({"key", false, std::string(MessageOf(unique.status()))});
    } else {
      lines.push_back({"key", *unique,
                       *unique ? "unique on new"
                               : StrCat("no unique index on (", absl::StrJoin(key, ", "), ") in ",
                                        t.new_name, ": the mirror's upsert needs one")});
    }
  }
  std::string columns = StrCat(pair->old_columns.size() - pair->computed.size(), " paired");
  if (!t.new_columns.empty()) {
    std::vector<std::string> computed;
    for (const routing::ColumnTransform& c : t.new_columns) computed.push_back(c.column);
    columns += StrCat("; computed on new (new_columns): ", absl::StrJoin(computed, ", "));
  }
  if (!pair->dropped.empty()) {
    columns += StrCat("; dropped (old only, not copied): ", absl::StrJoin(pair->dropped, ", "));
  }
  lines.push_back({"columns", true, columns});
  std::string types;
  for (size_t i = 0; i < pair->old_types.size(); ++i) {
    if (pair->old_types[i] == pair->new_types[i] || pair->IsComputed(i)) continue;
    types += StrCat(types.empty() ? "" : "; ", pair->old_columns[i], " ", pair->old_types[i],
                    " -> ", pair->new_columns[i], " ", pair->new_types[i]);
  }
  lines.push_back({"types", true, types.empty() ? "the same" : StrCat("differ: ", types)});
  if (!t.new_columns.empty() || !t.old_columns.empty()) {
    lines.push_back(RoundTripLine(t, *pair, old_db));
  }
  for (bool on_new : {false, true}) {
    if (on_new && !routing::ReadsFromNew(t.phase) && t.phase != routing::Phase::kShadowRead) break;
    auto paths =
        HiddenWrites(config, on_new ? new_db : old_db, on_new ? t.new_name : t.name, on_new);
    const std::string check = on_new ? "hidden writes (new)" : "hidden writes (old)";
    if (!paths.ok()) {
      lines.push_back({check, false, std::string(MessageOf(paths.status()))});
    } else {
      // They matter once writes are mirrored.
      const bool matters = t.phase != routing::Phase::kNewOnly;
      lines.push_back({check, paths->empty() || !matters,
                       paths->empty() ? "none" : routing::DescribeHiddenWritePaths(*paths)});
    }
  }
  // The side that takes writes over at the next step hands out keys from
  // its own sequence.
  if (t.phase == routing::Phase::kShadowRead || t.phase == routing::Phase::kNewPrimary) {
    const bool on_new = t.phase == routing::Phase::kShadowRead;
    if (auto check = routing::KeySequenceCheckFor(t, on_new)) {
      auto row = (on_new ? new_db : old_db).Exec(check->sql);
      std::string why =
          row.ok() ? routing::KeySequenceBehind(*check, row->rows.at(0), on_new ? "new" : "old")
                   : std::string(MessageOf(row.status()));
      lines.push_back({"key sequence", why.empty(), why.empty() ? "past the keys" : why});
    }
  }
  if (t.phase == routing::Phase::kShadowRead &&
      (!t.new_columns.empty() || !t.old_columns.empty())) {
    // routing/config.cc refuses the step; say so before the operator tries.
    lines.push_back({"next", true,
                     "new-primary is not available yet to a table with new_columns or "
                     "old_columns: verify does not yet read new's rows through old_columns"});
  } else {
    lines.push_back({"next", true, NextStep(t.phase)});
  }
  return lines;
}

}  // namespace

absl::StatusOr<bool> CheckAgainstDatabase(const routing::Config& config, std::FILE* out) {
  auto old_db = PgClient::Connect(config, config.old_backend, "old", "pgshift check-config");
  if (!old_db.ok()) return old_db.status();
  std::optional<PgClient> second;
  if (config.new_backend) {
    auto connected = PgClient::Connect(config, *config.new_backend, "new", "pgshift check-config");
    if (!connected.ok()) return connected.status();
    second.emplace(std::move(*connected));
  }
  PgClient& new_db = second ? *second : *old_db;
  bool all_ok = true;
  for (const routing::TableConfig& t : config.tables) {
    std::fprintf(out, "\n%s (%s)\n", t.name.c_str(),
                 std::string(routing::PhaseName(t.phase)).c_str());
    for (const Line& line : CheckTable(config, t, *old_db, new_db)) {
      all_ok = all_ok && line.ok;
      std::fprintf(out, "  %-4s  %-19s  %s\n", line.ok ? "ok" : "FAIL", line.check.c_str(),
                   line.detail.c_str());
    }
  }
  return all_ok;
}

}  // namespace pgshift::migration
