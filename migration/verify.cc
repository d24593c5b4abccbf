#include "migration/verify.h"

#include <chrono>
#include <map>
#include <optional>
#include <thread>

#include "common/json.h"
#include "common/strings.h"
#include "migration/state_store.h"
#include "migration/table_pair.h"
#include "routing/state_schema.h"

namespace pgshift::migration {

namespace {

using Clock = std::chrono::steady_clock;
using Params = std::vector<std::optional<std::string>>;
using Key = std::vector<std::string>;

// One side of the comparison: a table, its paired columns and its key.
struct Side {
  PgClient* db;
  std::string table;
  std::vector<std::string> columns;
  std::vector<std::string> key;
};

class Verifier {
 public:
  Verifier(const VerifyOptions& options, const TablePair& pair, PgClient& old_db, PgClient& new_db)
      : options_(options), pair_(pair),
        old_{&old_db, pair.old_table, pair.old_columns, pair.old_key},
        new_{&new_db, pair.new_table, pair.new_columns, pair.new_key} {}

  absl::StatusOr<VerifyReport> Run() {
    report_.table = pair_.config->name;
    auto started = Clock::now();
    std::optional<Key> low;  // exclusive; none: from the start
    std::map<Key, char> suspects;  // key -> 'm' missing, 'e' extra, 'd' different
    while (true) {
      auto high = Boundary(low);  // inclusive; none: to the end
      if (!high.ok()) return high.status();
      auto compared = CompareRange(low, *high, suspects);
      if (!compared.ok()) return compared.status();
      report_.rows += *compared;
      ++report_.ranges;
      Throttle(started);
      if (!*high) break;
      low = **high;
    }
    // A write between reading old and reading new is not a difference:
    // read the suspects again a moment later, a batch of keys at a time.
    if (!suspects.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const size_t batch = std::max<size_t>(1, std::min<size_t>(1000, 60000 / old_.key.size()));
    std::vector<Key> keys;
    for (auto it = suspects.begin(); it != suspects.end();) {
      keys.clear();
      for (; it != suspects.end() && keys.size() < batch; ++it) keys.push_back(it->first);
      auto old_rows = HashesOf(old_, keys);
      if (!old_rows.ok()) return old_rows.status();
      auto new_rows = HashesOf(new_, keys);
      if (!new_rows.ok()) return new_rows.status();
      for (const Key& key : keys) {
        auto in_old = old_rows->find(key);
        auto in_new = new_rows->find(key);
        if (in_old == old_rows->end() && in_new == new_rows->end()) continue;
        if (in_new == new_rows->end()) {
          report_.missing.push_back(KeyText(key));
        } else if (in_old == old_rows->end()) {
          report_.extra.push_back(KeyText(key));
        } else if (in_old->second == in_new->second) {
          continue;
        } else {
          report_.different.push_back(KeyText(key));
        }
        differing_.push_back(key);
      }
    }
    if (options_.repair && !differing_.empty()) {
      if (absl::Status s = Repair(); !s.ok()) return s;
      report_.repaired = true;
    }
    report_.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    return report_;
  }

 private:
  std::string KeyList(const Side& side) const { return TablePair::List(side.key); }

  // The last key of the next range of `chunk` keys after `low`, from old;
  // none when fewer remain (the range runs to the end, on both sides).
  absl::StatusOr<std::optional<Key>> Boundary(const std::optional<Key>& low) {
    Params params;
    std::string where = Above(old_, low, params);
    // Named apart from the key columns, so that ORDER BY orders by value.
    std::string keys;
    for (size_t i = 0; i < old_.key.size(); ++i) {
      keys = StrCat(keys, i ? ", " : "", old_.key[i], "::text AS pgshift_key_", i);
    }
    auto r = old_.db->Exec(StrCat("SELECT ", keys, " FROM ", old_.table, where, " ORDER BY ",
                                  KeyList(old_), " OFFSET ", options_.chunk - 1, " LIMIT 1"),
                           params);
    if (!r.ok()) return r.status();
    if (r->rows.empty()) return std::optional<Key>();
    Key key;
    for (const auto& v : r->rows[0]) key.push_back(*v);
    return std::optional<Key>(key);
  }

  std::string Above(const Side& side, const std::optional<Key>& low, Params& params) const {
    if (!low) return "";
    for (const std::string& k : *low) params.emplace_back(k);
    return StrCat(" WHERE (", KeyList(side), ") > ", pair_.KeyParams(1));
  }

  std::string Range(const Side& side, const std::optional<Key>& low, const std::optional<Key>& high,
                    Params& params) const {
    std::string where = Above(side, low, params);
    if (!high) return where;
    int first = static_cast<int>(params.size()) + 1;
    for (const std::string& k : *high) params.emplace_back(k);
    return StrCat(where, where.empty() ? " WHERE " : " AND ", "(", KeyList(side), ") <= ",
                  pair_.KeyParams(first));
  }

  // count and checksum of a range on one side.
  absl::StatusOr<std::pair<std::string, std::string>> Checksum(const Side& side,
                                                               const std::optional<Key>& low,
                                                               const std::optional<Key>& high) {
    Params params;
    std::string where = Range(side, low, high, params);
    auto r = side.db->Exec(
        StrCat("SELECT count(*), coalesce(sum(('x' || substr(", TablePair::RowHash(side.columns),
               ", 1, 15))::bit(60)::bigint), 0) FROM ", side.table, where),
        params);
    if (!r.ok()) return r.status();
    return std::make_pair(*r->rows[0][0], *r->rows[0][1]);
  }

  absl::StatusOr<std::map<Key, std::string>> Hashes(const Side& side,
                                                    const std::optional<Key>& low,
                                                    const std::optional<Key>& high) {
    Params params;
    std::string where = Range(side, low, high, params);
    return HashesWhere(side, where, params);
  }

  // The row hashes of these keys on one side (a key it lacks is absent).
  absl::StatusOr<std::map<Key, std::string>> HashesOf(const Side& side,
                                                      const std::vector<Key>& keys) {
    Params params;
    std::string list;
    for (const Key& key : keys) {
      list = StrCat(list, list.empty() ? "" : ", ", pair_.KeyParams(static_cast<int>(params.size()) + 1));
      params.insert(params.end(), key.begin(), key.end());
    }
    return HashesWhere(side, StrCat(" WHERE (", KeyList(side), ") IN (", list, ")"), params);
  }

  absl::StatusOr<std::map<Key, std::string>> HashesWhere(const Side& side, const std::string& where,
                                                         const Params& params) {
    std::string keys;
    for (const std::string& k : side.key) keys = StrCat(keys, k, "::text, ");
    auto r = side.db->Exec(
        StrCat("SELECT ", keys, TablePair::RowHash(side.columns), " FROM ", side.table, where),
        params);
    if (!r.ok()) return r.status();
    std::map<Key, std::string> out;
    for (const Row& row : r->rows) {
      Key key;
      for (size_t i = 0; i < side.key.size(); ++i) key.push_back(*row[i]);
      out[key] = *row.back();
    }
    return out;
  }

  // Rows of old in the range; differing keys go to `suspects`.
  absl::StatusOr<int64_t> CompareRange(const std::optional<Key>& low,
                                       const std::optional<Key>& high,
                                       std::map<Key, char>& suspects) {
    auto a = Checksum(old_, low, high);
    if (!a.ok()) return a.status();
    auto b = Checksum(new_, low, high);
    if (!b.ok()) return b.status();
    int64_t rows = 0;
    ParseInt(a->first, rows);
    if (*a == *b) return rows;
    auto old_rows = Hashes(old_, low, high);
    if (!old_rows.ok()) return old_rows.status();
    auto new_rows = Hashes(new_, low, high);
    if (!new_rows.ok()) return new_rows.status();
    for (const auto& [key, hash] : *old_rows) {
      auto it = new_rows->find(key);
      if (it == new_rows->end()) {
        suspects[key] = 'm';
      } else if (it->second != hash) {
        suspects[key] = 'd';
      }
    }
    for (const auto& [key, hash] : *new_rows) {
      if (!old_rows->contains(key)) suspects[key] = 'e';
    }
    return rows;
  }

  // Copies each differing key again from the authoritative side: the
  // mirror's rows are deleted, and the authoritative rows, if any, inserted,
  // a batch of keys per statement, all in one transaction on the mirror.
  absl::Status Repair() {
    const Side& from = pair_.new_is_authoritative ? new_ : old_;
    const Side& to = pair_.new_is_authoritative ? old_ : new_;
    if (absl::Status s = to.db->Run("BEGIN"); !s.ok()) return s;
    auto fail = [&](absl::Status s) {
      to.db->Run("ROLLBACK").IgnoreError();
      return s;
    };
    const size_t width = std::max(to.columns.size(), to.key.size());
    const size_t batch = std::max<size_t>(1, std::min<size_t>(1000, 60000 / width));
    for (size_t at = 0; at < differing_.size(); at += batch) {
      Params keys;
      std::string list;
      for (size_t i = at; i < std::min(differing_.size(), at + batch); ++i) {
        list = StrCat(list, list.empty() ? "" : ", ", pair_.KeyParams(static_cast<int>(keys.size()) + 1));
        keys.insert(keys.end(), differing_[i].begin(), differing_[i].end());
      }
      auto rows = from.db->Exec(StrCat("SELECT ", TablePair::List(from.columns), " FROM ", from.table,
                                       " WHERE (", KeyList(from), ") IN (", list, ")"),
                                keys);
      if (!rows.ok()) return fail(rows.status());
      auto deleted = to.db->Exec(
          StrCat("DELETE FROM ", to.table, " WHERE (", KeyList(to), ") IN (", list, ")"), keys);
      if (!deleted.ok()) return fail(deleted.status());
      if (rows->rows.empty()) continue;
      Params values;
      std::string tuples;
      for (const Row& row : rows->rows) {
        std::string placeholders;
        for (size_t i = 0; i < row.size(); ++i) {
          placeholders = StrCat(placeholders, i ? ", " : "", "$", values.size() + i + 1);
        }
        tuples = StrCat(tuples, tuples.empty() ? "" : ", ", "(", placeholders, ")");
        values.insert(values.end(), row.begin(), row.end());
      }
      auto inserted = to.db->Exec(StrCat("INSERT INTO ", to.table, " (", TablePair::List(to.columns),
                                         ") VALUES ", tuples),
                                  values);
      if (!inserted.ok()) return fail(inserted.status());
    }
    if (absl::Status s = to.db->Run("COMMIT"); !s.ok()) return s;
    // The divergence log (mirror errors logged instead of failing the
    // client) holds what repair has now fixed. It is on the authoritative
    // side of the time: old, or new from new-primary on.
    std::vector<std::string> keys;
    for (const Key& k : differing_) keys.push_back(KeyText(k));
    std::string array = "{";
    for (size_t i = 0; i < keys.size(); ++i) {
      array = StrCat(array, i ? "," : "", JsonString(keys[i]));
    }
    array += "}";
    std::vector<PgClient*> databases{old_.db};
    if (new_.db != old_.db) databases.push_back(new_.db);
    for (PgClient* db : databases) {
      auto log = db->Exec(
          StrCat("SELECT to_regclass('", routing::kDivergenceTable, "') IS NOT NULL"));
      if (!log.ok() || *log->rows[0][0] != "t") continue;
      if (absl::Status s = db->Run(
              StrCat("DELETE FROM ", routing::kDivergenceTable,
                     " WHERE table_name = $1 AND key = ANY($2::text[])"),
              {pair_.config->name, array});
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  void Throttle(Clock::time_point started) {
    if (options_.rate <= 0) return;
    auto due = started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                             static_cast<double>(report_.rows) / options_.rate));
    if (due > Clock::now()) std::this_thread::sleep_until(due);
  }

  const VerifyOptions& options_;
  const TablePair& pair_;
  Side old_, new_;
  VerifyReport report_;
  std::vector<Key> differing_;
};

}  // namespace

absl::StatusOr<VerifyReport> Verify(const routing::Config& config, const std::string& table,
                                    const VerifyOptions& options) {
  auto old_db = PgClient::Connect(config, config.old_backend, "old", "pgshift verify");
  if (!old_db.ok()) return old_db.status();
  const routing::BackendConfig& new_backend =
      config.new_backend ? *config.new_backend : config.old_backend;
  auto new_db = PgClient::Connect(config, new_backend, config.new_backend ? "new" : "old",
                                  "pgshift verify");
  if (!new_db.ok()) return new_db.status();
  auto pair = ResolveTable(config, table, *old_db, *new_db);
  if (!pair.ok()) return pair.status();
  auto report = Verifier(options, *pair, *old_db, *new_db).Run();
  if (!report.ok()) return report.status();
  StateStore state(*old_db);
  if (absl::Status s = state.Ensure(); !s.ok()) return s;
  std::string detail = StrCat(
      "{\"rows\":", report->rows, ",\"ranges\":", report->ranges, ",\"missing\":",
      report->missing.size(), ",\"extra\":", report->extra.size(), ",\"different\":",
      report->different.size(), ",\"repaired\":", report->repaired ? "true" : "false", "}");
  if (absl::Status s = state.Record(pair->config->name, "verify", detail); !s.ok()) return s;
  return report;
}

void PrintReport(const VerifyReport& r, bool json, std::FILE* out) {
  if (json) {
    std::fprintf(out,
                 "{\"table\":%s,\"rows\":%lld,\"ranges\":%lld,\"missing\":%s,\"extra\":%s,"
                 "\"different\":%s,\"repaired\":%s,\"seconds\":%.3f}\n",
                 JsonString(r.table).c_str(), static_cast<long long>(r.rows),
                 static_cast<long long>(r.ranges), JsonArray(r.missing).c_str(),
                 JsonArray(r.extra).c_str(), JsonArray(r.different).c_str(),
                 r.repaired ? "true" : "false", r.seconds);
    return;
  }
  std::fprintf(out, "pgshift verify: %s: %lld rows in %lld ranges, %zu differences%s (%.1f s)\n",
               r.table.c_str(), static_cast<long long>(r.rows), static_cast<long long>(r.ranges),
               r.differences(), r.repaired ? ", repaired" : "", r.seconds);
  auto list = [&](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    std::string shown;
    for (size_t i = 0; i < keys.size() && i < 20; ++i) shown = StrCat(shown, i ? " " : "", keys[i]);
    std::fprintf(out, "  %s (%zu): %s%s\n", what, keys.size(), shown.c_str(),
                 keys.size() > 20 ? " ..." : "");
  };
  list("missing in new", r.missing);
  list("extra in new", r.extra);
  list("different", r.different);
}

}  // namespace pgshift::migration
